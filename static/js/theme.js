// isoweb: follow the browser's light or dark preference with Bootstrap's data-bs-theme.
// Loaded in <head> without defer so the page is painted in the right theme from the start; a change of the
// system setting while a page is open switches it at once. A file, not an inline script, so a strict
// Content-Security-Policy (script-src 'self') keeps working.
(function () {
  "use strict";
  var query = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;

  function apply() {
    document.documentElement.setAttribute("data-bs-theme", query && query.matches ? "dark" : "light");
  }

  apply();
  if (query) {
    if (query.addEventListener) {
      query.addEventListener("change", apply);
    } else if (query.addListener) {
      query.addListener(apply);
    }
  }
})();
