// The /dvr page: live updates through the recordings long poll, actions, the HLS player and the rule editor.
(function () {
  "use strict";
  const root = document.getElementById("dvr");
  if (!root) return;
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
  const streamKey = root.dataset.streamKey || "";

  async function api(method, url, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET") headers["X-CSRF-Token"] = csrf;
    const resp = await fetch(url, { method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await resp.text();
    let data = null;
    if (text) { try { data = JSON.parse(text); } catch (e) { data = { message: text.slice(0, 300) }; } }
    if (!resp.ok) {
      const err = new Error((data && data.message) || `Request failed (${resp.status})`);
      err.fields = (data && data.fields) || {};
      throw err;
    }
    return data;
  }

  function localise(scope) {
    const hour12 = document.body.dataset.timeFormat === "12h";
    scope.querySelectorAll("time[datetime]").forEach((el) => {
      const d = new Date(el.getAttribute("datetime"));
      if (!isNaN(d)) { el.textContent = d.toLocaleString([], { hour12, dateStyle: "short", timeStyle: "short" }); el.title = el.getAttribute("datetime"); }
    });
  }
  localise(root);

  // --- Live: wait for a change, then fetch the re-rendered sections. ---
  const live = document.getElementById("dvr-live");
  let since = Number(live.querySelector("[data-version]")?.dataset.version || 0);
  async function refresh() {
    const html = await (await fetch("/dvr/partial", { credentials: "same-origin" })).text();
    // TIC.swap re-applies the shared table component (keeping each table's sort, filter and page) and focus.
    if (window.TIC?.swap) window.TIC.swap(live, html);
    else live.innerHTML = html;
    localise(live);
  }
  async function poll() {
    try {
      const r = await api("GET", `/tic-api/recordings/poll?since=${since}&timeout=25`);
      if (r.changed) await refresh();
      since = r.version;
      setTimeout(poll, 100);
    } catch (e) {
      setTimeout(poll, 5000);
    }
  }
  poll();

  // --- Recording actions ---
  root.addEventListener("click", async (ev) => {
    const btn = ev.target.closest("[data-action]");
    if (!btn) return;
    if (btn.dataset.confirm && !window.confirm(btn.dataset.confirm)) return;
    btn.disabled = true;
    const id = btn.dataset.id;
    try {
      if (btn.dataset.action === "delete") await api("DELETE", `/tic-api/recordings/${id}`);
      else await api("POST", `/tic-api/recordings/${id}/${btn.dataset.action}`);
    } catch (e) {
      window.alert(e.message);
      btn.disabled = false;
    }
  });

  // --- Playback: hls.js where it works, native HLS (Safari) otherwise. ---
  const dialog = document.getElementById("dvr-player");
  const video = document.getElementById("dvr-video");
  const note = document.getElementById("dvr-player-note");
  let hls = null;
  function stop() {
    if (hls) { hls.destroy(); hls = null; }
    video.removeAttribute("src");
    video.load();
  }
  dialog?.addEventListener("close", stop);
  root.addEventListener("click", (ev) => { if (ev.target.closest("[data-close-player]")) dialog.close(); });
  root.addEventListener("click", async (ev) => {
    const btn = ev.target.closest("[data-play]");
    if (!btn) return;
    const url = btn.dataset.play;
    document.getElementById("dvr-player-title").textContent = btn.dataset.title || "Playback";
    note.textContent = "Preparing the recording…";
    dialog.showModal();
    try {
      // Ask once first: errors (busy, missing file, no ffmpeg) come back as a readable message.
      const resp = await fetch(url, { credentials: "same-origin" });
      if (!resp.ok) {
        let msg = `Playback failed (${resp.status})`;
        try { msg = (await resp.json()).message || msg; } catch (e) { /* not JSON */ }
        note.textContent = msg;
        return;
      }
    } catch (e) {
      note.textContent = "TIC could not be reached.";
      return;
    }
    note.textContent = "";
    stop();
    if (window.Hls && window.Hls.isSupported()) {
      hls = new window.Hls();
      hls.on(window.Hls.Events.ERROR, (_e, data) => { if (data.fatal) note.textContent = `Playback error: ${data.details}`; });
      hls.loadSource(url);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = url;
    } else {
      note.textContent = "This browser cannot play HLS; copy the HLS URL into VLC or ffplay.";
      return;
    }
    video.play().catch(() => { /* autoplay refused: the controls are there */ });
  });
  root.addEventListener("click", (ev) => {
    const btn = ev.target.closest("[data-copy-hls]");
    if (!btn) return;
    const url = `${location.origin}${btn.dataset.copyHls}?stream_key=${encodeURIComponent(streamKey)}`;
    navigator.clipboard?.writeText(url).then(() => { btn.textContent = "Copied"; }, () => window.prompt("HLS URL for VLC or ffplay:", url));
  });

  // --- Manual scheduling ---
  const manual = document.getElementById("dvr-manual");
  manual?.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(manual);
    const msg = document.getElementById("dvr-manual-msg");
    const body = {
      channel_id: Number(f.get("channel_id")),
      start: new Date(f.get("start")).toISOString(),
      stop: new Date(f.get("stop")).toISOString(),
    };
    if (f.get("title")) body.title = f.get("title");
    for (const k of ["padding_before", "padding_after"]) if (f.get(k) !== "") body[k] = Number(f.get(k));
    try {
      const rec = await api("POST", "/tic-api/recordings", body);
      msg.className = "form-alert ok-text";
      msg.textContent = `Scheduled “${rec.title}”.` + (rec.warnings.length ? ` Warning: ${rec.warnings.join(" ")}` : "");
      manual.reset();
    } catch (e) {
      msg.className = "form-alert error-text";
      msg.textContent = e.message;
    }
  });

  // --- Rules ---
  const form = document.getElementById("dvr-rule-form");
  const ruleMsg = document.getElementById("dvr-rule-msg");
  const preview = document.getElementById("dvr-preview");
  function ruleBody() {
    const f = new FormData(form);
    const body = {
      title_pattern: f.get("title_pattern"),
      match_mode: f.get("match_mode"),
      channel_ids: f.getAll("channel_ids").map(Number),
      weekdays: f.getAll("weekdays").map(Number),
      time_from: f.get("time_from") || null,
      time_to: f.get("time_to") || null,
      timezone: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC",
      new_episodes_only: f.get("new_episodes_only") === "on",
      enabled: f.get("enabled") === "on",
      keep_last: f.get("keep_last") ? Number(f.get("keep_last")) : null,
      padding_before: f.get("padding_before") !== "" ? Number(f.get("padding_before")) : null,
      padding_after: f.get("padding_after") !== "" ? Number(f.get("padding_after")) : null,
    };
    if (f.get("name")) body.name = f.get("name");
    return body;
  }
  function say(text, ok) { ruleMsg.className = `form-alert ${ok ? "ok-text" : "error-text"}`; ruleMsg.textContent = text; }
  function esc(s) { const d = document.createElement("div"); d.textContent = s == null ? "" : String(s); return d.innerHTML; }

  form?.querySelector("[data-preview-rule]")?.addEventListener("click", async () => {
    try {
      const r = await api("POST", "/tic-api/recording-rules/preview", ruleBody());
      say(`${r.total} airing(s) in the next ${r.days} days.`, true);
      if (!r.items.length) { preview.innerHTML = '<p class="empty">Nothing in the guide matches in the next 7 days.</p>'; return; }
      const rows = r.items.map((it) => `<tr><td data-sort="${esc(it.start)}"><time datetime="${esc(it.start)}">${esc(it.start)}</time></td><td>${esc(it.channel_name)}</td>
        <td>${esc(it.title)}${it.episode ? ` <span class="muted">${esc(it.episode)}</span>` : ""}${it.sub_title ? `<br><span class="muted">${esc(it.sub_title)}</span>` : ""}</td>
        <td>${it.would_record ? '<span class="ok-text">would record</span>' : `<span class="muted">${esc(it.reason)}</span>`}</td>
        <td>${it.would_record ? `<button type="button" data-record-programme="${it.programme_id}" data-channel="${it.channel_id}">Record just this</button>` : ""}</td></tr>`).join("");
      preview.innerHTML = `<div class="table-wrap"><table id="dvr-preview-table" aria-label="Airings the rule matches" data-table><thead><tr><th scope="col" data-sortable>Start</th><th scope="col" data-sortable>Channel</th><th scope="col" data-sortable>Programme</th><th scope="col" data-sortable>Verdict</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead><tbody>${rows}</tbody></table></div>`;
      localise(preview);
      window.TIC?.enhanceTables(preview);
    } catch (e) { say(e.message, false); }
  });
  preview?.addEventListener("click", async (ev) => {
    const btn = ev.target.closest("[data-record-programme]");
    if (!btn) return;
    btn.disabled = true;
    try {
      await api("POST", "/tic-api/recordings", { programme_id: Number(btn.dataset.recordProgramme), channel_id: Number(btn.dataset.channel) });
      btn.textContent = "Scheduled ✓";
    } catch (e) { btn.disabled = false; say(e.message, false); }
  });
  form?.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const id = form.elements.id.value;
    try {
      if (id) await api("PATCH", `/tic-api/recording-rules/${id}`, ruleBody());
      else await api("POST", "/tic-api/recording-rules", ruleBody());
      location.reload();
    } catch (e) { say(e.message, false); }
  });
  form?.addEventListener("reset", () => {
    form.elements.id.value = "";
    document.getElementById("dvr-rule-heading").textContent = "New rule";
    preview.replaceChildren();
  });
  root.addEventListener("click", async (ev) => {
    const edit = ev.target.closest("[data-edit-rule]");
    const del = ev.target.closest("[data-delete-rule]");
    if (edit) {
      const rule = JSON.parse(edit.closest("tr").dataset.rule);
      form.reset();
      form.elements.id.value = rule.id;
      document.getElementById("dvr-rule-heading").textContent = `Edit rule “${rule.name}”`;
      form.elements.name.value = rule.name;
      form.elements.title_pattern.value = rule.title_pattern;
      form.elements.match_mode.value = rule.match_mode;
      for (const opt of form.elements.channel_ids.options) opt.selected = rule.channel_ids.includes(Number(opt.value));
      form.querySelectorAll('input[name="weekdays"]').forEach((c) => { c.checked = rule.weekdays.includes(Number(c.value)); });
      form.elements.time_from.value = rule.time_from || "";
      form.elements.time_to.value = rule.time_to || "";
      form.elements.new_episodes_only.checked = rule.new_episodes_only;
      form.elements.enabled.checked = rule.enabled;
      form.elements.keep_last.value = rule.keep_last || "";
      form.elements.padding_before.value = rule.padding_before ?? "";
      form.elements.padding_after.value = rule.padding_after ?? "";
      form.scrollIntoView({ behavior: "smooth" });
    }
    if (del) {
      if (del.dataset.confirm && !window.confirm(del.dataset.confirm)) return;
      try { await api("DELETE", `/tic-api/recording-rules/${del.dataset.deleteRule}`); location.reload(); }
      catch (e) { window.alert(e.message); }
    }
  });
})();
