// isoweb: the drift section of a host's or guest's page (templates/hosts/_drift.html).
(function () {
  // A guest page swaps this section when its live channel says drift was found or resolved
  // (static/js/live_tables.js, data-live-swap); every page also asks the API every few seconds and offers a
  // reload when the number of open drifts changed (a host page has no such channel).
  setInterval(function () {
    var box = document.getElementById("drift");
    if (!box || document.hidden || box.querySelector("[data-drift-changed]")) { return; }
    fetch(box.dataset.driftApi + "&limit=1", {credentials: "same-origin"}).then(function (r) { return r.ok ? r.json() : null; }).then(function (body) {
      if (body && String(body.count) !== box.dataset.openCount && !box.querySelector("[data-drift-changed]")) {
        var p = document.createElement("p");
        p.className = "banner"; p.dataset.driftChanged = "1"; p.setAttribute("role", "status");
        p.textContent = "Drift changed: " + body.count + " open now. ";
        var a = document.createElement("a"); a.href = ""; a.textContent = "Reload"; p.appendChild(a);
        box.insertBefore(p, box.children[1]);
      }
    }).catch(function () {});
  }, 3000);
})();
