// wfa ui: live updates over Server-Sent Events and the time-travel slider.
// Loaded from /static only (the Content-Security-Policy allows no inline script).
// Text from the log is only ever set with textContent; fragments fetched from the
// UI itself were escaped by its templates.
"use strict";
(function () {
  const TERMINAL = new Set(["succeeded", "failed", "cancelled", "timed_out"]);

  function setStatus(el, status) {
    for (const c of Array.from(el.classList)) {
      if (c.startsWith("st-")) el.classList.remove(c);
    }
    el.classList.add("st-" + status);
  }

  function byStep(root, stepId) {
    return root.querySelectorAll('[data-step="' + CSS.escape(stepId) + '"]');
  }

  // ---- a run's page --------------------------------------------------------------
  const live = document.getElementById("live");
  if (live && live.dataset.stream) {
    let refreshing = null;
    let again = false;
    const refresh = function () {
      if (refreshing) { again = true; return; }
      refreshing = fetch(live.dataset.fragment, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (html) { if (html !== null) live.innerHTML = html; })
        .finally(function () {
          refreshing = null;
          if (again) { again = false; setTimeout(refresh, 200); }
        });
    };
    const source = new EventSource(live.dataset.stream);
    source.addEventListener("event", function (e) {
      const change = JSON.parse(e.data);
      for (const [stepId, status] of Object.entries(change.steps)) {
        for (const el of byStep(live, stepId)) {
          if (el.classList.contains("node")) {
            setStatus(el, status);
            const sub = el.querySelector(".status");
            if (sub) sub.textContent = status;
          } else if (el.tagName === "TR") {
            const cell = el.querySelector(".status");
            if (cell) { setStatus(cell, status); cell.textContent = status; }
          }
        }
      }
      const run = document.getElementById("run-status");
      if (run) { setStatus(run, change.run_status); run.textContent = change.run_status; }
      document.body.dataset.lastSeq = String(change.seq);
      refresh();
      if (TERMINAL.has(change.run_status)) source.close();
    });
    source.addEventListener("reload", function () { source.close(); location.reload(); });
  }

  // ---- time travel ----------------------------------------------------------------
  const at = document.getElementById("at");
  if (at) {
    const shown = document.getElementById("at-value");
    at.addEventListener("input", function () { if (shown) shown.textContent = at.value; });
    at.addEventListener("change", function () { at.form.submit(); });
  }

  // ---- the runs page ----------------------------------------------------------------
  const runs = document.getElementById("runs");
  if (runs && runs.dataset.stream) {
    const body = runs.querySelector("tbody");
    const source = new EventSource(runs.dataset.stream);
    let counting = null;
    const recount = function () {
      if (counting) return;
      counting = setTimeout(function () {
        counting = null;
        fetch(runs.dataset.base + "/api/runs?limit=1", { credentials: "same-origin" })
          .then(function (r) { return r.json(); })
          .then(function (data) {
            for (const el of document.querySelectorAll(".count[data-status]")) {
              const b = el.querySelector("b");
              if (b) b.textContent = String(data.counts[el.dataset.status] || 0);
            }
          });
      }, 2100);
    };
    source.addEventListener("run", function (e) {
      const row = JSON.parse(e.data);
      let tr = body.querySelector('tr[data-run="' + CSS.escape(row.run_id) + '"]');
      if (!tr && !runs.dataset.filtered) {
        const empty = body.querySelector("tr.empty");
        if (empty) empty.remove();
        tr = document.createElement("tr");
        tr.dataset.run = row.run_id;
        const link = document.createElement("a");
        link.href = runs.dataset.base + "/runs/" + encodeURIComponent(row.run_id);
        link.textContent = row.run_id;
        const cells = [link, row.workflow, "", row.submitted_at || "", ""];
        for (const value of cells) {
          const td = document.createElement("td");
          if (value instanceof Node) td.appendChild(value); else td.textContent = value;
          tr.appendChild(td);
        }
        tr.children[2].className = "status";
        body.insertBefore(tr, body.firstChild);
      }
      if (tr) {
        const cell = tr.querySelector(".status");
        setStatus(cell, row.status);
        cell.textContent = row.status;
      }
      recount();
    });
    source.addEventListener("reload", function () { source.close(); location.reload(); });
  }
})();
