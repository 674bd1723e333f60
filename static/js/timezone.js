// isoweb: tell the server the browser's time zone, for users who have not chosen one.
// Every page sets the isoweb_browser_tz cookie to the browser's IANA zone (e.g. Europe/Berlin); the server
// records it the first time it sees it for a user (hosts/timezones.py). A page that was still drawn in the
// server's default zone because the cookie was missing is loaded once more, so the user sees one clock.
(function () {
  "use strict";
  var COOKIE = "isoweb_browser_tz";
  var zone;
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone; } catch (exc) { return; }
  if (!zone || !/^[A-Za-z0-9_+\-\/]{1,64}$/.test(zone)) { return; }
  var had = document.cookie.split("; ").some(function (c) { return c === COOKIE + "=" + zone; });
  if (had) { return; }
  document.cookie = COOKIE + "=" + zone + "; path=/; max-age=31536000; SameSite=Lax";
  var body = document.body;
  var source = body ? body.getAttribute("data-time-zone-source") : null;
  // Only the server's fallback is replaced: a zone the user chose (or recorded earlier) stays as it is.
  if (source === "default" && !sessionStorage.getItem("isoweb-tz-reloaded")) {
    sessionStorage.setItem("isoweb-tz-reloaded", "1");
    window.location.reload();
  }
})();
