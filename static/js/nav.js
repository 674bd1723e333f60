// isoweb: behaviour every page shares besides Bootstrap's own (the collapsing menu is Bootstrap's).
// A submit button with data-confirm asks before its form is sent (Approve), the way a form with data-confirm
// does (Roll back, change_progress.js); cancelling sends nothing. Delegated from the document, so buttons that
// a live page swaps in later are covered too.
(function () {
  "use strict";

  document.addEventListener("click", function (event) {
    var target = event.target;
    var button = target && target.closest ? target.closest("button[data-confirm], input[data-confirm]") : null;
    if (!button || button.disabled) {
      return;
    }
    if (!window.confirm(button.getAttribute("data-confirm"))) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);

  // A box that scrolls sideways (a wide table on a phone) must be reachable by keyboard to be scrolled:
  // one that overflows and holds nothing focusable becomes a focusable region named after its heading.
  var SCROLLERS = ".table-responsive, .card, .page > table.table, .page > form > table.table";

  function markScrollers() {
    document.querySelectorAll(SCROLLERS).forEach(function (box) {
      var scrolls = box.scrollWidth > box.clientWidth + 1;
      var owned = box.getAttribute("data-scroll-region") === "1";
      if (scrolls && !box.hasAttribute("tabindex")) {
        var heading = box.querySelector("h1, h2, h3, caption");
        box.setAttribute("tabindex", "0");
        box.setAttribute("role", "region");
        box.setAttribute("aria-label", (heading ? heading.textContent.trim() : "Table") + " (scrolls sideways)");
        box.setAttribute("data-scroll-region", "1");
      } else if (!scrolls && owned) {
        ["tabindex", "role", "aria-label", "data-scroll-region"].forEach(function (name) {
          box.removeAttribute(name);
        });
      }
    });
  }

  var pending = null;
  function markSoon() {
    if (pending === null) {
      pending = window.setTimeout(function () { pending = null; markScrollers(); }, 150);
    }
  }
  document.addEventListener("DOMContentLoaded", function () {
    markScrollers();
    // Live pages redraw parts of themselves: look again after the DOM changes (debounced).
    var main = document.getElementById("content");
    if (main && window.MutationObserver) {
      new MutationObserver(markSoon).observe(main, {childList: true, subtree: true});
    }
  });
  window.addEventListener("load", markScrollers);
  window.addEventListener("resize", markSoon);

  // Escape closes the open menu on a narrow screen and gives the focus back to its toggler.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") {
      return;
    }
    var menu = document.getElementById("mainmenu");
    if (!menu || !menu.classList.contains("show") || !window.bootstrap) {
      return;
    }
    window.bootstrap.Collapse.getOrCreateInstance(menu).hide();
    var toggler = document.querySelector("[data-bs-target='#mainmenu']");
    if (toggler) {
      toggler.focus();
    }
  });
})();
