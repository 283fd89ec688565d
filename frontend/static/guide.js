// The TV guide: the now line, local-time day choices, the programme dialog, and record buttons wired to the DVR API.
(function () {
  "use strict";
  const TIC = window.TIC;
  const grid = document.getElementById("guide");
  const dialog = document.getElementById("prog-dialog");
  const body = document.getElementById("prog-dialog-body");

  // The red line at the current time, moved every 30 s; hidden when now is outside the window.
  function placeNowLine() {
    if (!grid) return;
    const start = Date.parse(grid.dataset.start), end = Date.parse(grid.dataset.end);
    const frac = (Date.now() - start) / (end - start);
    grid.style.setProperty("--now-frac", frac >= 0 && frac < 1 ? String(frac) : "-1");
    grid.querySelector(".guide-now").hidden = !(frac >= 0 && frac < 1);
    grid.querySelectorAll(".prog[data-range]").forEach((el) => {
      const [a, b] = el.dataset.range.split("/").map(Date.parse);
      el.classList.toggle("now", a <= Date.now() && Date.now() < b);
    });
  }
  placeNowLine();
  setInterval(placeNowLine, 30000);
  document.body.addEventListener("htmx:afterSettle", placeNowLine);

  // Day choices mean the evening of that day in the browser's time zone, not the server's.
  const day = document.querySelector("[data-day-select]");
  day?.querySelectorAll("option[data-day-offset]").forEach((opt) => {
    const d = new Date();
    d.setDate(d.getDate() + Number(opt.dataset.dayOffset));
    d.setHours(18, 0, 0, 0);
    opt.value = d.toISOString().replace(/\.\d{3}Z$/, "Z");
    opt.textContent = `${opt.dataset.dayOffset === "1" ? "Tomorrow" : d.toLocaleDateString([], { weekday: "long", day: "numeric", month: "short" })} evening`;
  });
  if (day && grid) {
    // Show which day the grid is on, so the select reflects where the user is.
    const shown = new Date(grid.dataset.start);
    const today = new Date(); today.setHours(0, 0, 0, 0);
    const offset = Math.round((new Date(shown).setHours(0, 0, 0, 0) - today) / 86400000);
    const match = day.querySelector(`option[data-day-offset="${offset}"]`);
    if (match && shown.getHours() >= 12) match.selected = true;
  }
  let dayChanged = false;
  day?.addEventListener("change", () => { dayChanged = true; day.form.requestSubmit(); });
  document.getElementById("guide-hours")?.addEventListener("change", (ev) => ev.target.form.requestSubmit());
  document.getElementById("guide-tag")?.addEventListener("change", (ev) => ev.target.form.requestSubmit());
  // Changing hours or tag keeps the time being looked at; only the day choice moves in time.
  document.getElementById("guide-view")?.addEventListener("submit", (ev) => {
    const form = ev.target;
    if (grid && day && !dayChanged) {
      const keep = document.createElement("input");
      keep.type = "hidden"; keep.name = "start"; keep.value = grid.dataset.start;
      day.disabled = true;
      form.appendChild(keep);
    }
    form.querySelectorAll("select").forEach((s) => { if (s.value === "") s.disabled = true; });
  });

  // Programme details open in a dialog once htmx has loaded them.
  document.body.addEventListener("htmx:afterSwap", (ev) => {
    if (ev.detail.target === body && dialog && !dialog.open) dialog.showModal();
  });
  document.addEventListener("click", (ev) => {
    if (ev.target.closest("[data-close-dialog]")) dialog?.close();
    if (ev.target.closest("[data-clear-search]")) {
      document.getElementById("search-results").replaceChildren();
      const input = document.getElementById("guide-q");
      if (input) { input.value = ""; input.focus(); }
    }
  });
  dialog?.addEventListener("click", (ev) => { if (ev.target === dialog) dialog.close(); });

  // Record buttons: the DVR API answers with the recording or rule, or {code, message} to show.
  async function record(btn, series) {
    const art = btn.closest("[data-programme-id]");
    const status = art.querySelector(".record-status");
    const programmeId = Number(art.dataset.programmeId);
    const channelId = art.dataset.channelId ? Number(art.dataset.channelId) : null;
    btn.disabled = true;
    status.className = "record-status";
    status.textContent = series ? "Creating the series rule…" : "Scheduling…";
    try {
      if (series) {
        // Every new episode of this title on this channel; the DVR page can widen the rule later.
        const rule = { name: art.dataset.title, title_pattern: art.dataset.title, match_mode: "contains", new_episodes_only: true,
          timezone: Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC" };
        if (channelId) rule.channel_ids = [channelId];
        await TIC.api("POST", "/tic-api/recording-rules", rule);
        status.innerHTML = 'Every episode of this title will be recorded. <a href="/dvr">See the DVR</a>.';
      } else {
        const body = { programme_id: programmeId };
        if (channelId) body.channel_id = channelId;
        const rec = await TIC.api("POST", "/tic-api/recordings", body);
        const state = rec && rec.status && rec.status !== "scheduled" ? ` (now ${rec.status})` : "";
        status.innerHTML = `Scheduled${state}. <a href="/dvr">See the DVR</a>.`;
        btn.textContent = "Scheduled ✓";
        return;
      }
    } catch (err) {
      status.className = "record-status error-text";
      status.textContent = err.message;
    }
    btn.disabled = false;
  }
  document.addEventListener("click", (ev) => {
    const one = ev.target.closest("[data-record]");
    const series = ev.target.closest("[data-record-series]");
    if (one) record(one, false);
    if (series) record(series, true);
  });
})();
