// isoweb guest page: the guest's QEMU threads (vCPU N, emulator, I/O thread N) with the thread id top -H and
// taskset -p show, where each may run, where it last ran and its share of one CPU, kept fresh by asking
// GET /api/guests/{id}/threads/ every POLL_MS while the page is visible (libvirt pushes no event for these).
// The share is worked out from two readings' CPU times; the emulator's includes the I/O threads' (libvirt
// 9.0 has no per-thread time for them).
(function () {
  "use strict";

  var POLL_MS = 2500;

  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    if (cls) { node.className = cls; }
    return node;
  }

  function key(t) { return t.kind + ":" + (t.number === null ? "" : t.number); }

  function start(root) {
    var body = root.querySelector("tbody");
    var status = root.querySelector("[data-threads-status]");
    var previous = null, timer = null, failures = 0;

    function shares(reading) {
      var out = {};
      if (!previous || reading.monotonic <= previous.monotonic) { return out; }
      var seconds = reading.monotonic - previous.monotonic;
      var before = {};
      previous.threads.forEach(function (t) { before[key(t)] = t.cpu_time_ns; });
      reading.threads.forEach(function (t) {
        var was = before[key(t)];
        if (t.cpu_time_ns === null || was === undefined || was === null || t.cpu_time_ns < was) { return; }
        out[key(t)] = (t.cpu_time_ns - was) / 1e9 / seconds * 100;
      });
      return out;
    }

    function render(reading) {
      var share = shares(reading);
      var rows = reading.threads.map(function (t) {
        var tr = el("tr");
        tr.dataset.kind = t.kind;
        tr.dataset.threadId = t.thread_id === null ? "" : String(t.thread_id);
        tr.appendChild(el("th", t.label)).setAttribute("scope", "row");
        var tid = el("td", t.thread_id === null ? "—" : t.thread_id, "num");
        if (t.thread_id === null) { tid.title = "libvirt does not tell the QEMU process id"; }
        tid.dataset.field = "thread_id";
        tr.appendChild(tid);
        var affinity = el("td");
        affinity.appendChild(el("code", t.affinity));
        affinity.dataset.field = "affinity";
        tr.appendChild(affinity);
        var last = el("td", t.last_cpu === null ? "—" : "CPU " + t.last_cpu);
        last.dataset.field = "last_cpu";
        tr.appendChild(last);
        tr.appendChild(el("td", t.state || "—"));
        var value = share[key(t)];
        var pct = el("td", value === undefined ? (t.cpu_time_ns === null ? "counted with the emulator" : "…")
          : value.toFixed(1) + " %", "num");
        pct.dataset.field = "share";
        tr.appendChild(pct);
        return tr;
      });
      body.replaceChildren.apply(body, rows);
      root.dataset.sampledAt = String(reading.sampled_at);
      previous = reading;
    }

    function say(text) { if (status) { status.textContent = text; } }

    function tick() {
      timer = null;
      if (document.hidden) { return; }
      fetch(root.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.json().then(function (b) { return { ok: r.ok, body: b }; }); })
        .then(function (answer) {
          failures = 0;
          if (!answer.ok || !answer.body.running) {
            body.replaceChildren();
            previous = null;
            say(answer.body.detail || "No thread information.");
          } else {
            render(answer.body);
            say("Read from " + answer.body.host + " every " + POLL_MS / 1000 + " s.");
          }
          schedule(POLL_MS);
        })
        .catch(function (exc) {
          failures += 1;
          say("Could not read the threads (" + exc.message + "); trying again.");
          schedule(Math.min(POLL_MS * Math.pow(2, failures), 30000));
        });
    }

    function schedule(ms) { if (timer === null) { timer = setTimeout(tick, ms); } }

    document.addEventListener("visibilitychange", function () {
      if (!document.hidden) { previous = null; schedule(0); }
    });
    tick();
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-guest-threads]").forEach(start);
  });
})();
