// The channels pages: bulk actions on the lineup, the source list and guide search of the edit form,
// creating channels from streams or groups, and the guide-match preview. Talks to /tic-api/channels.
(function () {
  "use strict";
  const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";

  async function api(method, url, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET") headers["X-CSRF-Token"] = csrf;
    const resp = await fetch(url, {
      method, headers, credentials: "same-origin",
      body: body === undefined ? undefined : (typeof body === "string" ? body : JSON.stringify(body)),
    });
    const text = await resp.text();
    let data = null;
    if (text) { try { data = JSON.parse(text); } catch (e) { data = { message: text.slice(0, 300) }; } }
    if (!resp.ok) {
      const err = new Error((data && data.message) || `Request failed (${resp.status})`);
      err.status = resp.status; err.code = data && data.code; err.fields = (data && data.fields) || {};
      throw err;
    }
    return data;
  }
  function ask(message, label) {
    return window.TIC && window.TIC.confirm ? window.TIC.confirm(message, label) : Promise.resolve(window.confirm(message));
  }
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (v === null || v === undefined || v === false) return;
      if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v === true ? "" : v);
    });
    children.forEach((c) => node.append(c));
    return node;
  }
  function alertBox() { return document.getElementById("page-alert") || document.querySelector(".form-alert"); }
  function say(message, isError) {
    const box = alertBox();
    if (!box) { window.alert(message); return; }
    box.hidden = false;
    box.textContent = message;
    box.classList.toggle("ok-text", !isError);
    box.focus?.();
  }
  function fail(err) {
    const fields = Object.entries(err.fields || {}).map(([k, v]) => `${k}: ${v}`).join("; ");
    say(err.message + (fields ? ` (${fields})` : ""), true);
  }

  // Pages without tic.js's dialog still confirm destructive forms.
  if (!(window.TIC && window.TIC.confirm)) {
    document.addEventListener("submit", (ev) => {
      const msg = ev.target.dataset?.confirm;
      if (msg && !window.confirm(msg)) ev.preventDefault();
    }, true);
  }

  // Checkbox tables: select-all and a live count on the matching bulk bar.
  function selection(table, bar) {
    const boxes = () => Array.from(table.querySelectorAll("tbody input[data-select]"));
    const all = table.querySelector("thead input[data-select-all]");
    const update = () => {
      const n = boxes().filter((b) => b.checked).length;
      if (all) { all.checked = n > 0 && n === boxes().length; all.indeterminate = n > 0 && n < boxes().length; }
      if (bar) {
        const count = bar.querySelector("[data-selected-count]");
        if (count) count.textContent = String(n);
        bar.querySelectorAll("[data-needs-selection]").forEach((b) => { b.disabled = n === 0; });
      }
    };
    all?.addEventListener("change", () => { boxes().forEach((b) => { b.checked = all.checked; }); update(); });
    table.addEventListener("change", (e) => { if (e.target.matches("input[data-select]")) update(); });
    update();
    return () => boxes().filter((b) => b.checked).map((b) => b.value);
  }

  // --- The lineup table ---
  const channelTable = document.querySelector("table[data-channel-table]");
  const bulkBar = document.getElementById("bulk");
  if (channelTable && bulkBar) {
    const selected = () => selectionOf().map(Number);
    const selectionOf = selection(channelTable, bulkBar);
    const rowsInOrder = () => Array.from(channelTable.querySelectorAll("tbody tr[data-id]")).map((r) => Number(r.dataset.id));
    async function run(path, body, query) {
      try {
        const result = await api("POST", `/tic-api/channels/bulk/${path}${query || ""}`, body);
        return result;
      } catch (err) { fail(err); return null; }
    }
    function moved(ids, step) {
      // Move the selected rows one place up or down the visible order; the rows keep their numbers' set.
      const order = rowsInOrder();
      const chosen = new Set(ids);
      const indexes = step < 0 ? order.map((_, i) => i) : order.map((_, i) => order.length - 1 - i);
      indexes.forEach((i) => {
        const j = i + step;
        if (chosen.has(order[i]) && j >= 0 && j < order.length && !chosen.has(order[j])) [order[i], order[j]] = [order[j], order[i]];
      });
      return order;
    }
    bulkBar.addEventListener("click", async (ev) => {
      const button = ev.target.closest("button[data-action]");
      if (!button) return;
      const ids = selected();
      const action = button.dataset.action;
      const tag = document.getElementById("bulk-tag").value.trim();
      let done = null;
      if (action === "enable" || action === "disable") done = await run(action, { ids });
      else if (action === "tag-add" || action === "tag-remove") {
        if (!tag) { say("Type a tag name first.", true); return; }
        done = await run("tag", { ids, [action === "tag-add" ? "add" : "remove"]: [tag] });
      } else if (action === "renumber") {
        const start = Number(document.getElementById("bulk-start").value);
        if (!start) { say("Type the first number first.", true); return; }
        const shift = document.getElementById("bulk-shift").checked;
        const ordered = rowsInOrder().filter((id) => ids.includes(id));
        done = await run("renumber", { ids: ordered, start_number: start }, shift ? "?on_conflict=shift" : "");
      } else if (action === "up" || action === "down") {
        done = await run("reorder", { ids: moved(ids, action === "up" ? -1 : 1) });
      } else if (action === "match") {
        window.location.href = `/channels/match?ids=${ids.join(",")}`;
        return;
      } else if (action === "delete") {
        if (!(await ask(`Delete ${ids.length} channels? Clients and TVHeadend lose them on the next update.`, "Delete"))) return;
        done = await run("delete", { ids });
      } else if (action === "merge") {
        const scope = ids.length ? { ids } : {};
        const preview = await run("merge-duplicates", { ...scope, dry_run: true });
        if (!preview) return;
        if (!preview.groups.length) { say("No duplicates found.", false); return; }
        const lines = preview.groups.slice(0, 15).map((g) => `• ${g.keep_name} ← ${g.merge_names.join(", ")} (${g.reason})`);
        const more = preview.groups.length > 15 ? `\n…and ${preview.groups.length - 15} more` : "";
        if (!(await ask(`Merge ${preview.groups.length} sets of duplicates into one channel each?\n${lines.join("\n")}${more}`, "Merge"))) return;
        done = await run("merge-duplicates", scope);
      }
      if (done) window.location.reload();
    });
  }

  // --- Lineup import ---
  document.querySelector("input[data-import]")?.addEventListener("change", async (ev) => {
    const file = ev.target.files[0];
    ev.target.value = "";
    if (!file) return;
    if (!(await ask(`Replace the whole lineup with “${file.name}”? Channels not in the file are deleted.`, "Import"))) return;
    try {
      const result = await api("POST", "/tic-api/channels/import", await file.text());
      say(`Imported ${result.channels} channels (${result.created} new, ${result.updated} updated, ${result.deleted} deleted). ${result.warnings.join(" ")}`, false);
      setTimeout(() => window.location.reload(), 2500);
    } catch (err) { fail(err); }
  });

  // --- Edit form: source order, stream search, guide search and suggestions ---
  const form = document.getElementById("channel-form");
  if (form) {
    const list = document.getElementById("sources");
    list.addEventListener("click", (ev) => {
      const li = ev.target.closest("li[data-source]");
      if (!li) return;
      if (ev.target.matches("[data-remove]")) li.remove();
      const step = Number(ev.target.dataset.move || 0);
      if (step < 0 && li.previousElementSibling) li.previousElementSibling.before(li);
      if (step > 0 && li.nextElementSibling) li.nextElementSibling.after(li);
    });
    function addSource(ref, label) {
      if (Array.from(list.querySelectorAll('input[name="source_ref"]')).some((i) => i.value === ref)) return;
      const select = el("select", { name: "source_enabled", "aria-label": "Use this source" }, el("option", { value: "yes", text: "on" }), el("option", { value: "no", text: "off" }));
      list.append(el("li", { "data-source": true },
        el("input", { type: "hidden", name: "source_ref", value: ref }),
        el("input", { type: "hidden", name: "source_label", value: label }),
        el("span", { class: "grow", text: label }), select,
        el("button", { type: "button", "data-move": "-1", "aria-label": "Move up", text: "↑" }),
        el("button", { type: "button", "data-move": "1", "aria-label": "Move down", text: "↓" }),
        el("button", { type: "button", "data-remove": true, text: "Remove" })));
    }
    function searchBox(input, results, url, render) {
      let timer = null;
      input.addEventListener("keydown", (e) => { if (e.key === "Enter") e.preventDefault(); });
      input.addEventListener("input", () => {
        clearTimeout(timer);
        timer = setTimeout(async () => {
          const q = input.value.trim();
          results.replaceChildren();
          if (q.length < 2) return;
          try {
            const data = await api("GET", url(q));
            data.items.forEach((item) => results.append(render(item)));
            if (!data.items.length) results.append(el("li", { class: "muted", text: "Nothing found" }));
          } catch (err) { results.append(el("li", { class: "error-text", text: err.message })); }
        }, 250);
      });
    }
    searchBox(document.getElementById("stream-search"), document.getElementById("stream-results"),
      (q) => `/tic-api/channels/streams?limit=20&q=${encodeURIComponent(q)}`,
      (s) => {
        const label = `${s.name} (${s.playlist_name}${s.group ? " · " + s.group : ""})`;
        const button = el("button", { type: "button", text: "Add" });
        button.addEventListener("click", () => addSource(`stream:${s.id}`, label));
        return el("li", {}, el("span", { text: label + (s.in_lineup ? " — already a source elsewhere " : " ") }), button);
      });
    const epgSelect = document.getElementById("f-epg");
    const epgInput = document.getElementById("f-epg-channel");
    const epgResults = document.getElementById("epg-results");
    function guideChoice(item, extra) {
      const names = item.display_names ? item.display_names.join(" / ") : item.display_name;
      const button = el("button", { type: "button", text: "Use" });
      button.addEventListener("click", () => { epgSelect.value = String(item.epg_id); epgInput.value = item.epg_channel_id; });
      return el("li", {}, el("span", { text: `${names} — ${item.epg_channel_id} (${item.epg_source_name})${extra || ""} ` }), button);
    }
    searchBox(document.getElementById("epg-search"), epgResults,
      (q) => `/tic-api/channels/epg-channels?limit=20&q=${encodeURIComponent(q)}`, (item) => guideChoice(item));
    form.querySelector("[data-suggest]")?.addEventListener("click", async () => {
      epgResults.replaceChildren(el("li", { class: "muted", text: "Looking…" }));
      try {
        const result = await api("POST", "/tic-api/channels/epg-match/preview", { channel_ids: [Number(form.dataset.channelId)] });
        const item = result.items[0];
        epgResults.replaceChildren();
        const all = item && item.suggestion ? [item.suggestion, ...item.alternatives] : [];
        all.forEach((s) => {
          const li = guideChoice(s, ` · score ${s.score}`);
          li.append(el("div", { class: "ch-reason muted", text: s.reason }));
          epgResults.append(li);
        });
        if (!all.length) epgResults.append(el("li", { class: "muted", text: "No guide channel is close enough." }));
      } catch (err) { epgResults.replaceChildren(el("li", { class: "error-text", text: err.message })); }
    });
  }

  // --- Add channels from streams or groups ---
  const streamTable = document.querySelector("table[data-stream-table]");
  const groupTable = document.querySelector("table[data-group-table]");
  if (streamTable || groupTable) {
    const streams = streamTable ? selection(streamTable, document.getElementById("stream-bulk")) : () => [];
    const groups = groupTable ? selection(groupTable, document.getElementById("group-bulk")) : () => [];
    const resultArea = document.getElementById("create-result");
    function options() {
      const start = Number(document.getElementById("opt-start").value) || undefined;
      return {
        start_number: start,
        tag_with_group: document.getElementById("opt-tag").checked,
        merge_duplicates: document.getElementById("opt-merge").checked,
        skip_existing: document.getElementById("opt-skip").checked,
      };
    }
    document.addEventListener("click", async (ev) => {
      const button = ev.target.closest("button[data-create]");
      if (!button) return;
      button.disabled = true;
      try {
        const body = button.dataset.create === "streams"
          ? { ...options(), stream_ids: streams().map(Number) }
          : { ...options(), playlist_id: Number(button.dataset.playlist), groups: groups() };
        const path = button.dataset.create === "streams" ? "from-streams" : "from-groups";
        const result = await api("POST", `/tic-api/channels/bulk/${path}`, body);
        const range = result.created ? `, numbers ${result.first_number}–${result.last_number}` : "";
        resultArea.replaceChildren(el("p", { class: "ok-text", text: `Created ${result.created} channels${range}; ${result.skipped_existing} streams were already in the lineup${result.merged ? `, ${result.merged} merged as extra sources` : ""}.` }),
          el("p", {}, el("a", { class: "btn", href: "/channels", text: "See the lineup" }), " ", el("a", { class: "btn primary", href: result.channel_ids.length ? "/channels/match" : "/channels", text: "Match them to guides" })));
      } catch (err) { fail(err); } finally { button.disabled = false; }
    });
  }

  // --- Guide match preview and apply ---
  const matchForm = document.getElementById("match-form");
  if (matchForm) {
    const rows = document.getElementById("match-rows");
    const status = document.getElementById("match-status");
    const count = document.getElementById("match-selected");
    const ticked = () => Array.from(rows.querySelectorAll("input[data-map]:checked"));
    const recount = () => { count.textContent = String(ticked().length); };
    rows.addEventListener("change", recount);
    document.getElementById("match-all").addEventListener("change", (e) => { rows.querySelectorAll("input[data-map]").forEach((b) => { b.checked = e.target.checked; }); recount(); });
    function choiceRow(item) {
      const options = item.suggestion ? [item.suggestion, ...item.alternatives] : [];
      const box = el("input", { type: "checkbox", "data-map": true, "aria-label": `Apply a guide to ${item.channel_name}`, checked: Boolean(item.suggestion && item.suggestion.apply) });
      box.disabled = !options.length;
      const score = el("span", { class: "ch-score" });
      const why = el("span", { class: "ch-reason" });
      let pick;
      if (options.length > 1) {
        pick = el("select", { "aria-label": `Guide channel for ${item.channel_name}` });
        options.forEach((o, i) => pick.append(el("option", { value: String(i), text: `${o.display_name} — ${o.epg_channel_id} (${o.epg_source_name})` })));
      } else {
        pick = el("span", { text: options.length ? `${options[0].display_name} — ${options[0].epg_channel_id} (${options[0].epg_source_name})` : "no close guide channel" });
      }
      const show = () => {
        const o = options[pick.value ? Number(pick.value) : 0];
        score.textContent = o ? String(o.score) : "";
        score.classList.toggle("low", Boolean(o && !o.apply));
        why.textContent = o ? o.reason : "";
      };
      pick.addEventListener?.("change", () => { box.checked = true; show(); recount(); });
      show();
      const tr = el("tr", {}, el("td", {}, box), el("td", { class: "num", text: String(item.number) }), el("td", { text: item.channel_name }),
        el("td", {}, pick), el("td", { class: "num" }, score), el("td", {}, why));
      tr.choice = () => options[pick.value ? Number(pick.value) : 0];
      tr.channelId = item.channel_id;
      return tr;
    }
    matchForm.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const ids = matchForm.dataset.ids ? matchForm.dataset.ids.split(",").map(Number) : null;
      status.replaceChildren(el("p", { class: "muted", text: "Matching…" }));
      try {
        const result = await api("POST", "/tic-api/channels/epg-match/preview", ids ? { channel_ids: ids } : { all_unmapped: true });
        rows.replaceChildren(...result.items.map(choiceRow));
        document.getElementById("match-results").hidden = false;
        status.replaceChildren(el("p", { text: `${result.total} channels compared with ${result.guide_channels} guide channels in ${result.seconds} s: ${result.matched} confident matches, ${result.unmatched} to check by hand.` }));
        recount();
      } catch (err) { status.replaceChildren(); fail(err); }
    });
    document.getElementById("match-apply").addEventListener("click", async () => {
      const mappings = ticked().map((box) => {
        const tr = box.closest("tr");
        const o = tr.choice();
        return { channel_id: tr.channelId, epg_id: o.epg_id, epg_channel_id: o.epg_channel_id, method: o.method, score: o.score };
      });
      if (!mappings.length) { say("Tick at least one match.", true); return; }
      try {
        const result = await api("POST", "/tic-api/channels/epg-match/apply", { mappings });
        status.replaceChildren(el("p", { class: "ok-text", text: `Applied ${result.applied} guide mappings.` }), el("p", {}, el("a", { class: "btn", href: "/channels", text: "Back to the lineup" })));
        ticked().forEach((box) => { box.closest("tr").remove(); });
        recount();
      } catch (err) { fail(err); }
    });
  }
})();
