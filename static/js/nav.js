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
