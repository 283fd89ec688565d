// TIC's shared browser code: theme, navigation, confirmations, copy, local times, API forms, task progress,
// table sort/filter/paging/bulk select, and the live task indicator. No build step; exposed as window.TIC.
(function () {
  "use strict";
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const TIC = (window.TIC = window.TIC || {});
  document.documentElement.classList.add("js");

  // --- JSON API helper: CSRF header on writes, {code, message, fields} errors as thrown objects. ---
  async function api(method, url, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET" && method !== "HEAD") headers["X-CSRF-Token"] = csrf;
    const resp = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
    let data = null;
    const text = await resp.text();
    if (text) { try { data = JSON.parse(text); } catch (e) { data = { message: text.slice(0, 300) }; } }
    if (!resp.ok) {
      const err = new Error((data && data.message) || `Request failed (${resp.status})`);
      err.status = resp.status; err.code = data && data.code; err.fields = (data && data.fields) || {};
      throw err;
    }
    return data;
  }
  TIC.api = api;

  // --- Theme ---
  const root = document.documentElement;
  document.getElementById("theme-toggle")?.addEventListener("click", () => {
    const dark = root.dataset.theme === "dark" ||
      (root.dataset.theme === "auto" && matchMedia("(prefers-color-scheme: dark)").matches);
    root.dataset.theme = dark ? "light" : "dark";
    try { localStorage.setItem("tic-theme", root.dataset.theme); } catch (e) { /* private mode: theme is per page */ }
  });

  // --- Phone navigation ---
  const navToggle = document.getElementById("nav-toggle");
  const nav = document.getElementById("main-nav");
  navToggle?.addEventListener("click", () => {
    const open = navToggle.getAttribute("aria-expanded") !== "true";
    navToggle.setAttribute("aria-expanded", String(open));
    nav?.classList.toggle("open", open);
  });

  // --- Flash messages can be dismissed ---
  document.addEventListener("click", (ev) => {
    const btn = ev.target.closest?.("[data-dismiss]");
    if (btn) btn.parentElement?.remove();
  });

  // --- Images from providers (logos, programme art) disappear instead of showing a broken icon. ---
  document.addEventListener("error", (ev) => {
    if (ev.target instanceof HTMLImageElement && ev.target.dataset.hideBroken !== undefined) ev.target.hidden = true;
  }, true);

  // --- Confirmations for destructive actions: a real dialog, keyboard friendly, with confirm() as fallback. ---
  const dialog = document.getElementById("confirm-dialog");
  function askConfirm(message, okLabel) {
    if (!dialog || typeof dialog.showModal !== "function") return Promise.resolve(window.confirm(message));
    dialog.querySelector("#confirm-message").textContent = message;
    dialog.querySelector("#confirm-ok").textContent = okLabel || "Yes, do it";
    dialog.returnValue = "";
    dialog.showModal();
    dialog.querySelector('button[value="cancel"]').focus();
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    });
  }
  TIC.confirm = askConfirm;
  document.addEventListener("submit", (ev) => {
    const form = ev.target;
    const msg = form.dataset?.confirm;
    if (!msg || form.dataset.confirmed === "1") return;
    ev.preventDefault();
    const submitter = ev.submitter;
    askConfirm(msg, form.dataset.confirmLabel).then((ok) => {
      if (!ok) return;
      form.dataset.confirmed = "1";
      if (form.dataset.api) { form.dispatchEvent(new Event("submit", { cancelable: true, bubbles: true })); }
      else if (typeof form.requestSubmit === "function") form.requestSubmit(submitter || undefined);
      else form.submit();
      delete form.dataset.confirmed;
    });
  }, true);

  // --- Copy buttons: data-copy="#id" copies an input's value or an element's text. ---
  function copyText(text, source) {
    if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
    // Plain-HTTP installs have no async clipboard: select the text and use the legacy command.
    return new Promise((resolve, reject) => {
      let el = source;
      let temp = null;
      if (!el || !("select" in el)) {
        temp = document.createElement("textarea");
        temp.value = text; temp.setAttribute("readonly", ""); temp.style.position = "fixed"; temp.style.opacity = "0";
        document.body.appendChild(temp); el = temp;
      }
      el.select();
      const ok = document.execCommand && document.execCommand("copy");
      if (temp) temp.remove();
      ok ? resolve() : reject(new Error("copy failed"));
    });
  }
  document.addEventListener("click", (ev) => {
    const btn = ev.target.closest?.("[data-copy]");
    if (!btn) return;
    const src = document.querySelector(btn.dataset.copy);
    const text = src ? ("value" in src && src.tagName !== "BUTTON" ? src.value : src.textContent) : "";
    const label = btn.dataset.label || btn.textContent;
    btn.dataset.label = label;
    copyText(text.trim(), src).then(
      () => { btn.textContent = "Copied ✓"; },
      () => { btn.textContent = "Select and copy by hand"; src?.select?.(); }
    ).finally(() => setTimeout(() => { btn.textContent = label; }, 2000));
  });

  // --- Local times: markup carries UTC instants; show them in the browser's zone and the user's 12/24 h. ---
  function hour12() { return document.body.dataset.timeFormat === "12h"; }
  function fmt(d, kind) {
    const h12 = hour12();
    switch (kind) {
      case "time": return d.toLocaleTimeString([], { hour: "numeric", minute: "2-digit", hour12: h12 });
      case "date": return d.toLocaleDateString([], { weekday: "short", day: "numeric", month: "short" });
      case "day": return d.toLocaleDateString([], { weekday: "long", day: "numeric", month: "long" });
      case "relative": return relative(d);
      default: return d.toLocaleString([], { weekday: "short", day: "numeric", month: "short", hour: "numeric", minute: "2-digit", hour12: h12 });
    }
  }
  function relative(d) {
    const diff = (d.getTime() - Date.now()) / 1000;
    const abs = Math.abs(diff);
    const rtf = new Intl.RelativeTimeFormat([], { numeric: "auto" });
    if (abs < 60) return rtf.format(Math.round(diff), "second");
    if (abs < 3600) return rtf.format(Math.round(diff / 60), "minute");
    if (abs < 86400) return rtf.format(Math.round(diff / 3600), "hour");
    return rtf.format(Math.round(diff / 86400), "day");
  }
  TIC.formatTime = fmt;
  function localiseTimes(scope) {
    (scope || document).querySelectorAll("time[datetime]").forEach((el) => {
      const iso = el.getAttribute("datetime");
      if (!iso) return;
      const d = new Date(iso);
      if (isNaN(d)) return;
      el.textContent = fmt(d, el.dataset.format);
      if (!el.title) el.title = d.toLocaleString([], { dateStyle: "full", timeStyle: "long", hour12: hour12() });
    });
    (scope || document).querySelectorAll("[data-time-range]").forEach((el) => {
      const [a, b] = el.dataset.timeRange.split("/").map((s) => new Date(s));
      if (isNaN(a) || isNaN(b)) return;
      el.textContent = `${fmt(a, "date")} ${fmt(a, "time")} – ${fmt(b, "time")}`;
    });
  }
  TIC.localiseTimes = localiseTimes;
  localiseTimes(document);

  // --- htmx: CSRF on every request, enhancements on swapped content ---
  document.body.addEventListener("htmx:configRequest", (ev) => { if (csrf) ev.detail.headers["X-CSRF-Token"] = csrf; });
  document.body.addEventListener("htmx:load", (ev) => { localiseTimes(ev.target); enhanceTables(ev.target); startProgress(ev.target); });

  // --- Field errors next to fields (server-side validation answers from the JSON API) ---
  function clearErrors(form) {
    form.querySelectorAll(".field-error[data-api-error]").forEach((el) => el.remove());
    form.querySelectorAll('[aria-invalid="true"]').forEach((el) => { el.removeAttribute("aria-invalid"); el.removeAttribute("aria-describedby"); });
    const alert = form.querySelector(".form-alert");
    if (alert) { alert.hidden = true; alert.textContent = ""; }
  }
  function showErrors(form, err) {
    let firstBad = null;
    const unmatched = [];
    Object.entries(err.fields || {}).forEach(([key, msg]) => {
      const name = key.split(".").pop();
      const input = form.querySelector(`[name="${CSS.escape(key)}"]`) || form.querySelector(`[name="${CSS.escape(name)}"]`);
      if (!input || input.type === "hidden") { unmatched.push(`${name}: ${msg}`); return; }
      const p = document.createElement("p");
      p.className = "field-error"; p.dataset.apiError = "1"; p.id = `${input.id || input.name}-error`;
      p.textContent = String(msg);
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", p.id);
      (input.closest(".field") || input.parentElement).appendChild(p);
      firstBad = firstBad || input;
    });
    let alert = form.querySelector(".form-alert");
    if (!alert) { alert = document.createElement("div"); alert.className = "form-alert"; alert.setAttribute("role", "alert"); form.prepend(alert); }
    alert.hidden = false;
    alert.textContent = err.message + (unmatched.length ? ` (${unmatched.join("; ")})` : "");
    (firstBad || alert).focus?.();
  }
  TIC.showErrors = showErrors;
  TIC.clearErrors = clearErrors;

  // Form values as JSON: empty optional fields are left out, data-type="int"/"bool"/"list" converts.
  function formJson(form) {
    const out = {};
    form.querySelectorAll("input[name], select[name], textarea[name]").forEach((el) => {
      if (el.disabled || el.name === "csrf_token" || el.closest("[hidden]") || el.dataset.skip !== undefined) return;
      const type = el.dataset.type;
      if (el.type === "checkbox") {
        if (type === "list") { (out[el.name] = out[el.name] || []); if (el.checked) out[el.name].push(el.value); }
        else out[el.name] = el.checked;
        return;
      }
      if (el.type === "radio" && !el.checked) return;
      const v = el.value.trim();
      if (v === "" && !el.required) return;
      out[el.name] = type === "int" ? Number(v) : v;
    });
    return out;
  }
  TIC.formJson = formJson;

  // --- API forms: <form data-api="/tic-api/x" data-method="POST">; nothing typed is lost on an error. ---
  document.addEventListener("submit", async (ev) => {
    const form = ev.target;
    if (!form.dataset?.api || ev.defaultPrevented) return;
    ev.preventDefault();
    const button = form.querySelector('[type="submit"]');
    clearErrors(form);
    button && (button.disabled = true);
    try {
      const body = formJson(form);
      const result = await api(form.dataset.method || "POST", form.dataset.api, body);
      form.dispatchEvent(new CustomEvent("tic:api-success", { detail: { result, body }, bubbles: true }));
    } catch (err) {
      showErrors(form, err);
      form.dispatchEvent(new CustomEvent("tic:api-error", { detail: { error: err }, bubbles: true }));
    } finally {
      button && (button.disabled = false);
    }
  });

  // --- Task progress: <div data-task-progress="ID"> follows /tic-api/tasks/ID until it ends. ---
  const FINISHED = ["succeeded", "failed", "interrupted", "cancelled"];
  function renderProgress(el, task) {
    const bar = el.querySelector(".progress-bar > span");
    const label = el.querySelector(".progress-label");
    const pct = Math.max(0, Math.min(100, Number(task.progress) || 0));
    if (bar) bar.style.width = `${task.status === "succeeded" ? 100 : pct}%`;
    el.querySelector(".progress-bar")?.setAttribute("aria-valuenow", String(pct));
    if (label) {
      label.textContent = task.status === "failed" ? `Failed: ${task.error || task.message || "unknown error"}`
        : task.status === "succeeded" ? (task.message || "Done")
        : `${task.status === "queued" ? "Waiting in the queue" : `${pct}%`} ${task.message || ""}`.trim();
      label.classList.toggle("error-text", task.status === "failed");
    }
  }
  function followTask(el) {
    if (el.dataset.following) return;
    el.dataset.following = "1";
    const id = el.dataset.taskProgress;
    const tick = async () => {
      try {
        const task = await api("GET", `/tic-api/tasks/${id}`);
        renderProgress(el, task);
        if (FINISHED.includes(task.status)) {
          el.dispatchEvent(new CustomEvent("tic:task-finished", { detail: task, bubbles: true }));
          return;
        }
        setTimeout(tick, 700);
      } catch (err) {
        setTimeout(tick, 3000);
      }
    };
    tick();
  }
  function progressElement(taskId, title) {
    const el = document.createElement("div");
    el.className = "progress";
    el.dataset.taskProgress = String(taskId);
    el.innerHTML = '<div class="progress-bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="0"><span style="width:0"></span></div><span class="progress-label" aria-live="polite">Waiting in the queue</span>';
    el.querySelector(".progress-bar").setAttribute("aria-label", title || "Progress");
    return el;
  }
  TIC.followTask = (container, taskId, title) => {
    const el = progressElement(taskId, title);
    container.replaceChildren(el);
    followTask(el);
    return new Promise((resolve) => el.addEventListener("tic:task-finished", (ev) => resolve(ev.detail), { once: true }));
  };
  function startProgress(scope) { (scope || document).querySelectorAll("[data-task-progress]").forEach(followTask); }
  startProgress(document);

  // --- Tables: <table data-table> gets sorting, filtering, paging; data-bulk adds select-all and a bulk bar. ---
  // Sort, filter and page are kept per table id, so a live re-render of the same table (tasks, DVR) keeps them.
  const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
  const tableState = new Map();
  const rowTexts = new WeakMap();
  function cellValue(row, idx) {
    const cell = row.cells[idx];
    if (!cell) return "";
    return (cell.dataset.sort ?? cell.textContent).trim();
  }
  function compareValues(x, y) {
    const nx = Number(x), ny = Number(y);
    if (!isNaN(nx) && !isNaN(ny)) return nx - ny;
    return collator.compare(x, y);
  }
  // What the filter searches: the row's visible text, without the option lists of selects or button labels.
  function rowText(row) {
    if (row.dataset.filterText !== undefined) return row.dataset.filterText.toLowerCase();
    let text = rowTexts.get(row);
    if (text === undefined) {
      const parts = [];
      const skip = "select, button, script, style, template, [data-no-filter]";
      const walker = document.createTreeWalker(row, NodeFilter.SHOW_TEXT, {
        acceptNode: (n) => (n.parentElement?.closest(skip) ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT),
      });
      while (walker.nextNode()) parts.push(walker.currentNode.nodeValue);
      text = parts.join(" ").replace(/\s+/g, " ").toLowerCase();
      rowTexts.set(row, text);
    }
    return text;
  }
  function enhanceTable(table) {
    if (table.dataset.enhanced) return;
    const body = table.tBodies[0];
    if (!body) return;
    table.dataset.enhanced = "1";
    const base = table.id || `t${Math.random().toString(36).slice(2)}`;
    const state = tableState.get(base) || { sort: -1, asc: true, query: "", page: 0 };
    tableState.set(base, state);
    const pageSize = Number(table.dataset.pageSize || 0);
    const rows = () => Array.from(body.rows);
    const tools = document.createElement("div");
    tools.className = "table-tools";
    const wrap = table.closest(".table-wrap") || table;
    const labelledBy = table.getAttribute("aria-labelledby");
    const name = (table.getAttribute("aria-label") || (labelledBy && document.getElementById(labelledBy)?.textContent) ||
      table.caption?.textContent || "").trim().toLowerCase();
    if (table.dataset.filter !== undefined) {
      const text = table.dataset.filterLabel || (name ? `Filter ${name}` : "Filter rows");
      const label = Object.assign(document.createElement("label"), { className: "sr-only", htmlFor: `${base}-filter`, textContent: text });
      const input = Object.assign(document.createElement("input"), { type: "search", id: `${base}-filter`, placeholder: table.dataset.filter || "Filter…", value: state.query, autocomplete: "off" });
      if (table.id) input.setAttribute("aria-controls", table.id);
      input.addEventListener("input", () => { state.query = input.value; state.page = 0; apply(); });
      // Enter in a filter box inside a form must not submit that form.
      input.addEventListener("keydown", (e) => { if (e.key === "Enter") e.preventDefault(); });
      tools.append(label, input);
    }
    const count = Object.assign(document.createElement("span"), { className: "muted small", id: `${base}-count` });
    count.setAttribute("role", "status");
    tools.appendChild(count);
    wrap.parentElement.insertBefore(tools, wrap);
    const pager = document.createElement("nav");
    pager.className = "pager";
    pager.setAttribute("aria-label", name ? `Pages of ${name}` : "Table pages");
    if (pageSize) wrap.after(pager);
    function pageButton(text, id, disabled, delta) {
      const b = Object.assign(document.createElement("button"), { type: "button", textContent: text, className: "small", id: `${base}-${id}`, disabled });
      b.addEventListener("click", () => {
        state.page += delta; apply();
        // Keep the keyboard where it was: the pager is rebuilt, so focus the same button again (or its twin).
        (document.getElementById(b.id)?.disabled ? pager.querySelector("button:not(:disabled)") : document.getElementById(b.id))?.focus();
      });
      return b;
    }
    function apply() {
      const query = state.query.trim().toLowerCase();
      const matching = rows().filter((r) => !query || rowText(r).includes(query));
      const pages = pageSize ? Math.max(1, Math.ceil(matching.length / pageSize)) : 1;
      state.page = Math.max(0, Math.min(state.page, pages - 1));
      rows().forEach((r) => { r.hidden = true; });
      matching.forEach((r, i) => { r.hidden = pageSize ? Math.floor(i / pageSize) !== state.page : false; });
      count.textContent = matching.length === rows().length ? `${rows().length} rows` : `${matching.length} of ${rows().length} rows`;
      if (!pageSize) return;
      pager.replaceChildren();
      if (pages > 1) {
        const info = Object.assign(document.createElement("span"), { className: "current", textContent: `Page ${state.page + 1} of ${pages}` });
        pager.append(pageButton("← Previous", "prev", state.page === 0, -1), info, pageButton("Next →", "next", state.page >= pages - 1, 1));
      }
    }
    function sortRows() {
      if (state.sort < 0) return;
      const dir = state.asc ? 1 : -1;
      rows().sort((a, b) => {
        const x = cellValue(a, state.sort), y = cellValue(b, state.sort);
        // Empty cells go last whichever way the column is sorted.
        if (x === "" || y === "") return (x === "") - (y === "");
        return compareValues(x, y) * dir;
      }).forEach((r) => body.appendChild(r));
    }
    const headers = Array.from(table.tHead?.querySelectorAll("th[data-sortable]") || []);
    headers.forEach((th) => {
      const idx = th.cellIndex;
      const btn = Object.assign(document.createElement("button"), { type: "button", className: "sort", id: `${base}-sort-${idx}` });
      btn.append(...th.childNodes);
      th.replaceChildren(btn);
      th.setAttribute("aria-sort", state.sort === idx ? (state.asc ? "ascending" : "descending") : "none");
      btn.addEventListener("click", () => {
        state.asc = state.sort === idx ? !state.asc : true;
        state.sort = idx;
        headers.forEach((o) => o.setAttribute("aria-sort", "none"));
        th.setAttribute("aria-sort", state.asc ? "ascending" : "descending");
        sortRows();
        apply();
      });
    });
    if (table.dataset.bulk !== undefined) {
      const all = table.querySelector("thead input[data-select-all]");
      const bar = document.querySelector(table.dataset.bulk) || null;
      const boxes = () => Array.from(body.querySelectorAll("input[type=checkbox][data-select]"));
      const update = () => {
        const n = boxes().filter((b) => b.checked).length;
        if (all) { all.checked = n > 0 && n === boxes().length; all.indeterminate = n > 0 && n < boxes().length; }
        if (bar) {
          bar.hidden = n === 0 && bar.dataset.alwaysShow === undefined;
          const c = bar.querySelector("[data-selected-count]");
          if (c) c.textContent = String(n);
          bar.querySelectorAll("button[data-needs-selection]").forEach((b) => { b.disabled = n === 0; });
        }
        table.dispatchEvent(new CustomEvent("tic:selection", { detail: { count: n }, bubbles: true }));
      };
      all?.addEventListener("change", () => {
        // Select-all acts on the rows the filter shows, which is what the user sees.
        boxes().forEach((b) => { if (!b.closest("tr").hidden || !all.checked) b.checked = all.checked; });
        update();
      });
      body.addEventListener("change", (e) => { if (e.target.matches("input[data-select]")) update(); });
      update();
    }
    sortRows();
    apply();
  }
  function enhanceTables(scope) {
    const root = scope || document;
    if (root.matches?.("table[data-table]")) enhanceTable(root);
    root.querySelectorAll("table[data-table]").forEach(enhanceTable);
  }
  TIC.enhanceTables = enhanceTables;
  enhanceTables(document);

  // --- Live regions re-rendered by the server (tasks, DVR): swap the HTML, enhance it, keep the keyboard focus. ---
  function swap(container, html) {
    const active = document.activeElement;
    const focusId = active && active !== document.body && container.contains(active) ? active.id : "";
    const caret = focusId && typeof active.selectionStart === "number" ? [active.selectionStart, active.selectionEnd] : null;
    container.innerHTML = html;
    localiseTimes(container);
    enhanceTables(container);
    const again = focusId ? document.getElementById(focusId) : null;
    if (again) {
      again.focus({ preventScroll: true });
      if (caret && again.setSelectionRange) { try { again.setSelectionRange(caret[0], caret[1]); } catch (e) { /* not a text field */ } }
    }
  }
  TIC.swap = swap;

  // --- Live task indicator in the header, and the /tasks tables ---
  const indicator = document.getElementById("task-indicator");
  const tables = document.getElementById("task-tables");
  if (!indicator && !tables) return;
  let since = tables ? Number(tables.dataset.version || 0) : 0;
  async function poll() {
    try {
      const data = await api("GET", `/tic-api/tasks?limit=50&wait=25&since=${since}`);
      since = data.version;
      if (indicator) {
        const cur = data.current;
        indicator.textContent = cur ? `${cur.name}: ${cur.progress}% ${cur.message || ""}` :
          (data.paused ? "Queue paused" : (data.queue.length ? `${data.queue.length} queued` : indicator.dataset.idle));
      }
      if (tables) {
        // The history's filter and page live in the query string, so the refresh asks for the same page.
        const html = await (await fetch(`/tasks/partial${location.search}`)).text();
        swap(tables, html);
      }
      document.dispatchEvent(new CustomEvent("tic:tasks", { detail: data }));
      setTimeout(poll, 250);
    } catch (e) {
      setTimeout(poll, 5000);
    }
  }
  poll();
})();
