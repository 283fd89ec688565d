// Small progressive enhancements: theme, confirmations, copy buttons, local times, live task status.
(function () {
  "use strict";
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content;

  const root = document.documentElement;
  const savedTheme = localStorage.getItem("tic-theme");
  if (savedTheme) root.dataset.theme = savedTheme;
  document.getElementById("theme-toggle")?.addEventListener("click", () => {
    const dark = root.dataset.theme === "dark" ||
      (root.dataset.theme === "auto" && matchMedia("(prefers-color-scheme: dark)").matches);
    root.dataset.theme = dark ? "light" : "dark";
    localStorage.setItem("tic-theme", root.dataset.theme);
  });

  document.addEventListener("submit", (ev) => {
    const msg = ev.target.dataset?.confirm;
    if (msg && !window.confirm(msg)) ev.preventDefault();
  });

  document.addEventListener("click", (ev) => {
    const sel = ev.target.dataset?.copy;
    if (!sel) return;
    const text = document.querySelector(sel)?.textContent || "";
    navigator.clipboard?.writeText(text).then(() => { ev.target.textContent = "Copied"; });
  });

  // Times are UTC in the markup; show them in the browser's zone.
  function localiseTimes(scope) {
    const hour12 = document.body.dataset.timeFormat === "12h";
    scope.querySelectorAll("time[datetime]").forEach((el) => {
      const iso = el.getAttribute("datetime");
      if (!iso) return;
      const d = new Date(iso);
      if (!isNaN(d)) { el.textContent = d.toLocaleString([], { hour12, dateStyle: "short", timeStyle: "medium" }); el.title = iso; }
    });
  }
  localiseTimes(document);

  if (csrf) {
    document.body.addEventListener("htmx:configRequest", (ev) => { ev.detail.headers["X-CSRF-Token"] = csrf; });
  }

  // Long-poll the task queue: update the header indicator and, on /tasks, the tables.
  const indicator = document.getElementById("task-indicator");
  const tables = document.getElementById("task-tables");
  if (!indicator && !tables) return;
  let since = tables ? Number(tables.dataset.version || 0) : 0;
  async function poll() {
    try {
      const r = await fetch(`/tic-api/tasks?limit=50&wait=25&since=${since}`, { headers: { Accept: "application/json" } });
      if (!r.ok) throw new Error(String(r.status));
      const data = await r.json();
      since = data.version;
      if (indicator) {
        const cur = data.current;
        indicator.textContent = cur ? `${cur.name}: ${cur.progress}% ${cur.message || ""}` :
          (data.paused ? "Queue paused" : (data.queue.length ? `${data.queue.length} queued` : indicator.dataset.idle));
      }
      if (tables) {
        const html = await (await fetch("/tasks/partial")).text();
        tables.innerHTML = html;
        localiseTimes(tables);
      }
      setTimeout(poll, 250);
    } catch (e) {
      setTimeout(poll, 5000);
    }
  }
  poll();
})();
