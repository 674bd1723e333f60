// isoweb: small page helpers, no libraries.
// On the host page, pointing at (or focusing) a guest highlights the host CPUs its threads may run on.
(function () {
  "use strict";

  function cpuCells() {
    return document.querySelectorAll(".cpumap .cpu[data-guests]");
  }

  function highlight(guestId) {
    cpuCells().forEach(function (cell) {
      var ids = cell.dataset.guests.split(" ");
      var hit = ids.indexOf(guestId) !== -1;
      cell.classList.toggle("is-highlighted", hit);
      cell.classList.toggle("is-dimmed", !hit);
    });
    document.querySelectorAll(".guest-table tr[data-guest]").forEach(function (row) {
      row.classList.toggle("is-highlighted", row.dataset.guest === guestId);
    });
  }

  function clear() {
    cpuCells().forEach(function (cell) {
      cell.classList.remove("is-highlighted", "is-dimmed");
    });
    document.querySelectorAll(".guest-table tr.is-highlighted").forEach(function (row) {
      row.classList.remove("is-highlighted");
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (!document.querySelector(".cpumap")) {
      return;
    }
    document.querySelectorAll("[data-guest]").forEach(function (el) {
      var id = el.dataset.guest;
      el.addEventListener("mouseenter", function () { highlight(id); });
      el.addEventListener("mouseleave", clear);
      el.addEventListener("focusin", function () { highlight(id); });
      el.addEventListener("focusout", clear);
    });
  });
})();
