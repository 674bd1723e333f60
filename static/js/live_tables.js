// isoweb: keep a page's tables as live as its chart, without a reload.
// Guest page: a websocket of its own to the guest's live channel (/ws/guests/<id>/, the same one the chart
// uses); when a change is applied or rolled back ("marker"), drift is found or resolved ("drift") or the
// host stops or resumes answering ("status"), the page is fetched again and every [data-live-swap][id]
// section (facts and host status, pinning, caps, live vs config) is replaced by its fresh copy.
// Change request page: while the request is not finished, its state is asked from the API every few seconds
// and the page's [data-swap][id] sections are replaced when it changes (approved, applying, applied, ...).
(function () {
  "use strict";

  var NOTICE = /^\{\s*"type":\s*"(marker|drift|status|tuning)"/;
  var REFRESH_DELAY_MS = 250;  // several messages in a row (marker, then caps) cause one refresh
  var REQUEST_POLL_MS = 3000;
  var SETTLED_POLL_MS = 10000;  // applied or failed: only a rollback can still change it
  var SETTLED = ["applied", "failed", "partially_applied"];
  var FINAL = ["rejected", "rolled_back"];
  var refreshes = 0;

  function swap(selector, after) {
    return fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll(selector).forEach(function (section) {
          var fresh = doc.getElementById(section.id);
          if (fresh) { section.replaceWith(document.importNode(fresh, true)); }
        });
        refreshes += 1;
        document.body.dataset.liveRefreshes = String(refreshes);
        if (after) { after(doc); }
      });
  }

  // --- guest page ----------------------------------------------------------------------------------------
  function watchGuest(path) {
    var timer = null, failures = 0;

    function refreshSoon() {
      clearTimeout(timer);
      timer = setTimeout(function () {
        swap("[data-live-swap][id]").catch(function () { /* the next message tries again */ });
      }, REFRESH_DELAY_MS);
    }

    function connect() {
      var scheme = location.protocol === "https:" ? "wss://" : "ws://";
      var socket = new WebSocket(scheme + location.host + path);
      var opened = false;
      socket.addEventListener("open", function () {
        if (failures) { refreshSoon(); }  // back after a break: whatever changed meanwhile
        opened = true;
        failures = 0;
        document.body.dataset.liveTables = "connected";
      });
      socket.addEventListener("message", function (event) {
        // Only the message's type matters here; chart frames (one a second, large for wide guests) are told
        // apart by their first characters and never parsed a second time.
        if (typeof event.data === "string" && NOTICE.test(event.data.slice(0, 40))) { refreshSoon(); }
      });
      socket.addEventListener("close", function (event) {
        document.body.dataset.liveTables = "closed";
        if (event.code >= 4400 && event.code < 4500) { return; }  // refused (logged out, no role, gone)
        failures += opened ? 0 : 1;
        setTimeout(connect, Math.min(1000 * Math.pow(2, failures), 30000));
      });
    }
    connect();
  }

  // --- change request page -------------------------------------------------------------------------------
  function watchRequest(root) {
    var shown = null;

    function tick() {
      fetch(root.dataset.api, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (body) {
          if (!body) { return; }
          var state = body.status + (body.rolling_back ? "+rollback" : "") + (body.rolled_back_by ? "+rolled" : "");
          if (shown === null) { shown = state; }
          var done = FINAL.indexOf(body.status) !== -1 && !body.rolling_back;
          var wait = SETTLED.indexOf(body.status) !== -1 && !body.rolling_back ? SETTLED_POLL_MS : REQUEST_POLL_MS;
          if (state !== shown) {
            shown = state;
            return swap("[data-swap][id]", function (doc) {
              var heading = doc.querySelector("h1");
              if (heading) { document.querySelector("h1").replaceWith(document.importNode(heading, true)); }
            }).then(function () { if (!done) { setTimeout(tick, wait); } });
          }
          if (!done) { setTimeout(tick, wait); }
        })
        .catch(function () { setTimeout(tick, REQUEST_POLL_MS * 3); });
    }
    tick();
  }

  document.addEventListener("DOMContentLoaded", function () {
    var chart = document.querySelector('[data-live-root][data-kind="guest"][data-ws]');
    if (chart && document.querySelector("[data-live-swap][id]")) { watchGuest(chart.dataset.ws); }
    var request = document.querySelector("[data-change-progress][data-api]");
    if (request) { watchRequest(request); }
  });
})();
