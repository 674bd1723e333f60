// isoweb change request pages.
// Detail page: while a request is being applied or rolled back, poll GET /api/change-requests/{id}/ every
// second and update its status, progress and per-guest results in place; once it settles, fetch the page
// once more and swap in the parts that depend on the final state (e.g. the rollback button).
// Create page: filter the guest picker by name and host, and count the guests picked.
(function () {
  "use strict";

  var POLL_MS = 1000;

  // --- live progress ------------------------------------------------------------------------------------
  function fieldValue(tuning, label) {
    if (!tuning) { return null; }
    var parts = label.split(" "), name = parts[0], number = parts[1];
    if (name === "vcpupin" || name === "iothreadpin") { return (tuning[name] || {})[number]; }
    if (name === "emulatorpin") { return tuning.emulatorpin; }
    return (tuning.sched || {})[name];
  }

  function show(v) { return v === null || v === undefined ? "—" : String(v); }

  function updateTarget(root, result, labels) {
    var box = root.querySelector('[data-target="' + result.id + '"]');
    if (!box) { return; }
    var badge = box.querySelector("[data-target-status]");
    if (badge) {
      badge.textContent = labels.target[result.status] || result.status;
      badge.className = "badge target-status target-" + result.status;
    }
    var error = box.querySelector("[data-target-error]");
    if (error) { error.textContent = result.error || ""; error.hidden = !result.error; }
    var restore = box.querySelector("[data-target-restore-error]");
    if (restore) { restore.querySelector("span").textContent = result.restore_error || ""; restore.hidden = !result.restore_error; }
    box.querySelectorAll("table[data-scope]").forEach(function (table) {
      var scope = table.dataset.scope;
      table.querySelectorAll("tr[data-field]").forEach(function (row) {
        var field = row.dataset.field;
        var before = row.querySelector("[data-before]"), after = row.querySelector("[data-after]");
        if (before && result.before) { before.textContent = show(fieldValue(result.before[scope], field)); }
        if (after && result.after) {
          var value = fieldValue(result.after[scope], field);
          after.textContent = show(value);
          var desired = row.querySelector(".val-desired");
          after.classList.toggle("val-mismatch", !!desired && desired.firstChild &&
            desired.firstChild.textContent.trim() !== show(value));
        }
      });
    });
  }

  function isActive(body, labels) {
    if (labels.active.indexOf(body.status) !== -1) { return true; }
    // A rollback keeps the request's status until every guest is back.
    return !!body.rolling_back;
  }

  function swapSections(root) {
    return fetch(window.location.href, { credentials: "same-origin" }).then(function (r) { return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        root.querySelectorAll("[data-swap][id]").forEach(function (section) {
          var fresh = doc.getElementById(section.id);
          if (fresh) { section.replaceWith(document.importNode(fresh, true)); }
        });
        var heading = doc.querySelector("h1");
        if (heading) { document.querySelector("h1").replaceWith(document.importNode(heading, true)); }
        wireConfirms(document);
      });
  }

  function startProgress(root) {
    var labels = JSON.parse(document.getElementById("status-labels").textContent);
    var failures = 0;

    function tick() {
      fetch(root.dataset.api, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) {
          if (!r.ok) { throw new Error("HTTP " + r.status); }
          return r.json();
        })
        .then(function (body) {
          failures = 0;
          var label = labels.request[body.status] || body.status;
          document.querySelectorAll("[data-cr-status]").forEach(function (b) {
            b.textContent = label;
            b.className = "badge cr-status cr-" + body.status;
          });
          var text = root.querySelector("[data-cr-status-text]");
          if (text) { text.textContent = label; }
          var message = root.querySelector("[data-cr-message]");
          if (message) { message.textContent = body.status_message ? " — " + body.status_message : ""; }
          var results = body.results || [];
          // While rolling back, a guest still "applied" is waiting to be put back.
          var pending = body.rolled_back_by ? ["planned", "applying", "applied"] : ["planned", "applying"];
          var done = results.filter(function (r) { return pending.indexOf(r.status) === -1; }).length;
          var bar = root.querySelector("[data-progress-bar]");
          if (bar) { bar.style.width = (results.length ? Math.round(100 * done / results.length) : 0) + "%"; }
          var progress = root.querySelector("[data-progress-text]");
          if (progress) {
            progress.textContent = done + " of " + results.length + " guest" + (results.length === 1 ? "" : "s") + " done";
          }
          results.forEach(function (result) { updateTarget(root, result, labels); });
          if (isActive(body, labels)) {
            setTimeout(tick, POLL_MS);
          } else {
            swapSections(root);
          }
        })
        .catch(function (exc) {
          failures += 1;
          var note = root.querySelector("[data-live-note]");
          if (note) { note.textContent = "lost contact (" + exc.message + "), retrying"; }
          setTimeout(tick, Math.min(POLL_MS * Math.pow(2, failures), 30000));
        });
    }
    tick();
  }

  // --- confirmations ----------------------------------------------------------------------------------------
  function wireConfirms(scope) {
    scope.querySelectorAll("form[data-confirm]").forEach(function (form) {
      if (form.dataset.confirmWired) { return; }
      form.dataset.confirmWired = "1";
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
      });
    });
  }

  // --- guest picker on the create page -----------------------------------------------------------------
  function startPicker(picker) {
    var text = picker.querySelector("[data-guest-filter]");
    var host = picker.querySelector("[data-host-filter]");
    var pickedOnly = picker.querySelector("[data-picked-only]");
    var count = picker.querySelector("[data-picked-count]");
    var rows = picker.querySelectorAll("tr[data-guest-row]");

    function apply() {
      var needle = text.value.trim().toLowerCase();
      var picked = 0;
      rows.forEach(function (row) {
        var box = row.querySelector("input[type=checkbox]");
        if (box.checked) { picked += 1; }
        row.hidden = (needle && row.dataset.search.indexOf(needle) === -1) ||
          (host.value && row.dataset.host !== host.value) || (pickedOnly.checked && !box.checked);
        row.classList.toggle("is-picked", box.checked);
      });
      count.textContent = picked ? "(" + picked + " picked)" : "(none picked)";
    }
    picker.addEventListener("input", apply);
    picker.addEventListener("change", apply);
    apply();
  }

  document.addEventListener("DOMContentLoaded", function () {
    wireConfirms(document);
    var root = document.querySelector("[data-change-progress]");
    if (root && root.dataset.active === "1") { startProgress(root); }
    var picker = document.querySelector("[data-guest-picker]");
    if (picker) { startPicker(picker); }
  });
})();
