// The first-run wizard's steps: each form calls a domain API, follows any queued task, then offers "Continue".
(function () {
  "use strict";
  const TIC = window.TIC;
  const form = document.getElementById("wizard-form");
  const done = document.getElementById("step-done");
  if (!form || !TIC) return;
  const taskArea = form.querySelector(".task-area");
  const submit = form.querySelector('[type="submit"]');

  function say(text, cls) {
    const p = document.createElement("p");
    p.className = cls || "ok-text";
    p.textContent = text;
    taskArea.appendChild(p);
    return p;
  }
  function ready(text) {
    if (text) say(text);
    if (done) { done.hidden = false; document.getElementById("step-continue")?.focus(); }
  }
  function fail(err) {
    TIC.showErrors(form, err instanceof Error ? err : { message: String(err), fields: {} });
    submit && (submit.disabled = false);
  }
  async function follow(answer, title) {
    // Queued work answers 202 {task_id}; immediate work answers with its result.
    if (!answer || answer.task_id === undefined) return { status: "succeeded", result: answer };
    const task = await TIC.followTask(taskArea, answer.task_id, title);
    if (task.status !== "succeeded") throw new Error(`${title} did not finish: ${task.error || task.message || task.status}`);
    return task;
  }
  function summary(obj, keys) {
    if (!obj || typeof obj !== "object") return "";
    const parts = [];
    keys.forEach(([key, label]) => {
      const v = obj[key];
      if (v === undefined || v === null) return;
      parts.push(`${Array.isArray(v) ? v.length : v} ${label}`);
    });
    return parts.join(", ");
  }

  // Playlist type: show only the fields of the chosen kind (hidden fields are not sent).
  const kinds = form.querySelectorAll('input[name="kind"][type="radio"]');
  kinds.forEach((radio) => radio.addEventListener("change", () => {
    const kind = form.querySelector('input[name="kind"]:checked').value;
    form.querySelectorAll("[data-kind]").forEach((el) => { el.hidden = el.dataset.kind !== kind; });
  }));

  // Source steps: create (or, after a failed import, update) the source, then queue and follow its import.
  form.addEventListener("tic:api-success", async (ev) => {
    const result = ev.detail.result || {};
    taskArea.replaceChildren();
    try {
      if (form.dataset.queue) {
        const id = result.id ?? form.dataset.createdId;
        if (form.dataset.update && result.id !== undefined) {
          // The source exists now: a retry edits it instead of creating a duplicate.
          form.dataset.createdId = result.id;
          form.dataset.api = form.dataset.update.replace("{id}", result.id);
          form.dataset.method = "PATCH";
        }
        const queued = await TIC.api("POST", form.dataset.queue.replace("{id}", id));
        const task = await follow(queued, "The import");
        ready(task.message ? `Imported: ${task.message}` : "Imported.");
      } else if (form.dataset.tvhForm !== undefined) {
        if (!form.dataset.status) { ready("Saved."); return; }
        const status = await TIC.api("GET", form.dataset.status);
        const reachable = Boolean(status.ok ?? status.reachable);
        if (reachable) ready(`Connected${status.version ? ` to TVHeadend ${status.version}` : ""}.`);
        else { say(`Saved, but TVHeadend is not usable yet: ${status.error || status.message || "unreachable"}`, "error-text"); ready(); }
      } else {
        ready("Saved.");
      }
    } catch (err) {
      fail(err);
    }
  });

  // Steps that call an action rather than save a form.
  async function action(handler) {
    TIC.clearErrors(form);
    taskArea.replaceChildren();
    submit && (submit.disabled = true);
    try { await handler(); } catch (err) { fail(err); return; }
    submit && (submit.disabled = false);
  }
  form.addEventListener("submit", (ev) => {
    if (form.dataset.api) return;
    ev.preventDefault();
    if (form.dataset.channelsForm !== undefined) {
      action(async () => {
        const byPlaylist = new Map();
        form.querySelectorAll('input[data-select]:checked').forEach((box) => {
          const list = byPlaylist.get(box.dataset.playlist) || [];
          list.push(box.value);
          byPlaylist.set(box.dataset.playlist, list);
        });
        if (!byPlaylist.size) throw Object.assign(new Error("Pick at least one group."), { fields: {} });
        const start = Number(form.querySelector('[name="start_number"]').value || 1);
        let created = 0;
        for (const [playlistId, groups] of byPlaylist) {
          const answer = await TIC.api("POST", form.dataset.endpoint, { playlist_id: Number(playlistId), groups, start_number: start });
          const task = await follow(answer, "Creating channels");
          const res = task.result || answer || {};
          created += Number(res.created ?? res.count ?? (Array.isArray(res.items) ? res.items.length : 0)) || 0;
        }
        ready(created ? `Created ${created} channels.` : "Channels created.");
      });
    } else if (form.dataset.matchForm !== undefined) {
      action(async () => {
        const answer = await TIC.api("POST", form.dataset.endpoint, { apply: true });
        const task = await follow(answer, "Guide matching");
        const res = task.result || answer || {};
        const text = summary(res, [["matched", "channels matched"], ["applied", "applied"], ["unmatched", "left without a guide"]]);
        ready(text ? `Done: ${text}.` : "Guides matched.");
      });
    } else if (form.dataset.publishForm !== undefined) {
      action(async () => {
        const answer = await TIC.api("POST", form.dataset.endpoint);
        await follow(answer, "Publishing");
        ready("Published to TVHeadend.");
      });
    }
  });

  // Show what publishing would change before the user presses the button.
  if (form.dataset.preview) {
    const area = form.querySelector(".preview-area");
    TIC.api("GET", form.dataset.preview).then((plan) => {
      const text = summary(plan.summary || plan, [["create", "to create"], ["update", "to update"], ["delete", "to delete"]]);
      area.textContent = text ? `The plan: ${text}.` : "TVHeadend already matches your lineup.";
    }).catch((err) => { area.textContent = `Could not compute the plan: ${err.message}`; area.className = "preview-area error-text"; });
  }
})();
