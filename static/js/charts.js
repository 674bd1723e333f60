// isoweb live charts: one websocket per page, uPlot for drawing (fast with hundreds of series).
// The server sends a "hello" with recent history, caps and markers, then one "frame" per collector tick.
// Frames are buffered; drawing happens at most once per animation frame, so a burst costs one redraw.
// The newest values are mirrored on the chart container as data-latest (JSON) for tests and tools.
(function () {
  "use strict";

  var FULL_KEEP_SECONDS = 16 * 60;
  var FULL_MAX_FRAMES = 2000;
  var MINUTE_REFRESH_MS = 60000;
  var PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"];

  function color(i) { return PALETTE[i % PALETTE.length]; }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  // --- data shaping -------------------------------------------------------------------------------

  // Turn frames into uPlot columns: x, then one column per series; a frame flagged "gap" (first after a
  // restart or an outage) and any hole longer than maxHole break the line instead of bridging it.
  function columns(frames, seriesDefs, maxHole) {
    var xs = [];
    var cols = seriesDefs.map(function () { return []; });
    var prevT = null;
    frames.forEach(function (f) {
      if (prevT !== null && (f.gap || f.t - prevT > maxHole)) {
        xs.push((prevT + f.t) / 2);
        cols.forEach(function (c) { c.push(null); });
      }
      xs.push(f.t);
      seriesDefs.forEach(function (def, i) { cols[i].push(def.value(f)); });
      prevT = f.t;
    });
    return [xs].concat(cols);
  }

  function keyed(ids, values, id) {
    if (!ids || !values) { return null; }
    var at = ids.indexOf(id);
    return at === -1 ? null : values[at];
  }

  function idsIn(frames, field) {
    var seen = {};
    frames.forEach(function (f) { (f[field] || []).forEach(function (id) { seen[id] = true; }); });
    return Object.keys(seen).map(Number).sort(function (a, b) { return a - b; });
  }

  // --- drawing hooks: caps as horizontal reference lines, markers as vertical lines -----------------

  function drawCaps(getCaps) {
    return function (u) {
      var caps = getCaps() || [];
      var ctx = u.ctx;
      ctx.save();
      caps.forEach(function (cap) {
        var y = Math.round(u.valToPos(cap.value, "y", true));
        if (y < u.bbox.top || y > u.bbox.top + u.bbox.height) { return; }
        ctx.strokeStyle = cap.color;
        ctx.setLineDash([6, 4]);
        ctx.lineWidth = 1.5 * devicePixelRatio;
        ctx.beginPath();
        ctx.moveTo(u.bbox.left, y);
        ctx.lineTo(u.bbox.left + u.bbox.width, y);
        ctx.stroke();
        ctx.setLineDash([]);
        ctx.fillStyle = cap.color;
        ctx.font = (11 * devicePixelRatio) + "px system-ui, sans-serif";
        ctx.textAlign = "left";  // uPlot leaves the axes' alignment on the context
        ctx.textBaseline = "bottom";
        ctx.fillText(cap.label, u.bbox.left + 4 * devicePixelRatio, y - 3 * devicePixelRatio);
      });
      ctx.restore();
    };
  }

  function drawMarkers(getMarkers) {
    return function (u) {
      var ctx = u.ctx;
      var min = u.scales.x.min, max = u.scales.x.max;
      ctx.save();
      (getMarkers() || []).forEach(function (m) {
        if (m.t < min || m.t > max) { return; }
        var x = Math.round(u.valToPos(m.t, "x", true));
        var rolled = m.kind.indexOf("rolled_back") !== -1;
        ctx.strokeStyle = rolled ? "#b3261e" : "#1e7b3c";
        ctx.lineWidth = 2 * devicePixelRatio;
        ctx.beginPath();
        ctx.moveTo(x, u.bbox.top);
        ctx.lineTo(x, u.bbox.top + u.bbox.height);
        ctx.stroke();
        ctx.fillStyle = ctx.strokeStyle;
        ctx.font = (11 * devicePixelRatio) + "px system-ui, sans-serif";
        ctx.fillText((rolled ? "↶ " : "✓ ") + m.label.slice(0, 40), x + 3 * devicePixelRatio, u.bbox.top + 12 * devicePixelRatio);
      });
      ctx.restore();
    };
  }

  // --- one chart ---------------------------------------------------------------------------------

  function Chart(container, opts) {
    this.container = container;
    this.opts = opts; // {title, yLabel, seriesFor(frames) -> defs, caps(), markers(), toggles}
    this.plot = null;
    this.signature = "";
    this.hidden = {};
  }

  Chart.prototype.render = function (frames, xRange, maxHole) {
    var defs = this.opts.seriesFor(frames);
    var signature = defs.map(function (d) { return d.label; }).join("|");
    var data = columns(frames, defs, maxHole);
    var self = this;
    this.xRange = xRange;
    if (this.plot && signature === this.signature) {
      this.plot.setData(data, false);
      this.plot.setScale("x", { min: xRange[0], max: xRange[1] });
      return;
    }
    // The set of series changed (first data, a vCPU hotplugged): rebuild, keeping the user's toggles.
    if (this.plot) { this.plot.destroy(); }
    this.signature = signature;
    this.plot = new uPlot({
      width: Math.max(320, this.container.clientWidth || 800),
      height: 260,
      title: this.opts.title,
      scales: {
        x: { time: true, range: function () { return self.xRange; } },
        y: { range: function (u, min, max) { return [0, Math.max(100, Math.ceil((max || 0) / 10) * 10)]; } },
      },
      axes: [{}, { label: this.opts.yLabel, size: 60 }],
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      series: [{}].concat(defs.map(function (d) {
        return { label: d.label, stroke: d.stroke, width: d.width || 1.25, dash: d.dash, spanGaps: false,
          show: self.hidden[d.label] === undefined ? !d.hidden : !self.hidden[d.label], points: { show: false } };
      })),
      hooks: {
        draw: [drawCaps(this.opts.caps), drawMarkers(this.opts.markers)],
        setSeries: [function (u, idx) { if (idx) { self.hidden[u.series[idx].label] = !u.series[idx].show; } }],
      },
    }, data, this.container);
  };

  Chart.prototype.setAll = function (show) {
    if (!this.plot) { return; }
    for (var i = 1; i < this.plot.series.length; i++) {
      this.plot.setSeries(i, { show: show });
    }
  };

  // --- page wiring ---------------------------------------------------------------------------------

  function LivePage(root) {
    this.root = root;
    this.kind = root.dataset.kind;
    this.full = [];
    this.minute = [];
    this.markers = [];
    this.caps = {};
    this.paused = false;
    this.windowSeconds = Number(root.querySelector("[data-window]").value || 300);
    this.dirty = false;
    this.status = root.querySelector(".chart-status");
    this.charts = [];
    this.latestTarget = root.querySelector("[data-latest]");
    this.retry = 1000;
    this.build();
    this.connect();
  }

  LivePage.prototype.capLines = function (which) {
    var self = this;
    return function () {
      var lines = [];
      if (which === "vcpu" && self.caps.vcpu) { lines.push({ value: self.caps.vcpu, label: "vcpu cap " + self.caps.vcpu + " %", color: "#b3261e" }); }
      if (which === "vcpu" && self.caps.emulator) { lines.push({ value: self.caps.emulator, label: "emulator cap " + self.caps.emulator + " %", color: "#8a5a00" }); }
      return lines;
    };
  };

  LivePage.prototype.build = function () {
    var self = this;
    var markers = function () { return self.markers; };
    var noCaps = function () { return []; };
    var holders = this.root.querySelectorAll("[data-chart]");
    holders.forEach(function (holder) {
      var which = holder.dataset.chart;
      var opts;
      if (which === "guest-cpu") {
        opts = { title: "CPU time (% of one CPU)", yLabel: "%", caps: self.capLines("vcpu"), markers: markers,
          seriesFor: function (frames) {
            var defs = idsIn(frames, "n").map(function (n, i) {
              return { label: "vCPU " + n, stroke: color(i), value: function (f) { return keyed(f.n, f.v, n); } };
            });
            defs.push({ label: "emulator + I/O threads", stroke: "#000", width: 2, dash: [4, 3], value: function (f) { return f.o === undefined ? null : f.o; } });
            defs.push({ label: "guest total", stroke: "#888", width: 1, hidden: defs.length > 9, value: function (f) { return f.g === undefined ? null : f.g; } });
            return defs;
          } };
      } else if (which === "guest-delay") {
        opts = { title: "Run-queue delay / steal (% of the time)", yLabel: "%", caps: noCaps, markers: markers,
          seriesFor: function (frames) {
            return idsIn(frames, "n").map(function (n, i) {
              return { label: "vCPU " + n + " delay", stroke: color(i), value: function (f) { return keyed(f.n, f.d, n); } };
            });
          } };
      } else if (which === "host-cpu") {
        opts = { title: "Host CPU busy (%)", yLabel: "%", caps: noCaps, markers: markers,
          seriesFor: function (frames) {
            return idsIn(frames, "i").map(function (c, i) {
              return { label: "CPU " + c, stroke: color(i), value: function (f) { return keyed(f.i, f.b, c); } };
            });
          } };
      } else {
        return;
      }
      self.charts.push(new Chart(holder, opts));
    });

    var pause = this.root.querySelector("[data-pause]");
    pause.addEventListener("click", function () {
      self.paused = !self.paused;
      pause.textContent = self.paused ? "Resume" : "Pause";
      pause.setAttribute("aria-pressed", self.paused ? "true" : "false");
      self.schedule();
    });
    this.root.querySelector("[data-window]").addEventListener("change", function (ev) {
      self.windowSeconds = Number(ev.target.value);
      self.requestMinutes();
      self.schedule();
    });
    this.root.querySelectorAll("[data-series-all]").forEach(function (btn) {
      btn.addEventListener("click", function () {
        var show = btn.dataset.seriesAll === "show";
        self.charts.forEach(function (c) { c.setAll(show); });
      });
    });
    setInterval(function () { self.requestMinutes(); }, MINUTE_REFRESH_MS);
  };

  LivePage.prototype.requestMinutes = function () {
    if (this.windowSeconds > FULL_KEEP_SECONDS - 60 && this.socket && this.socket.readyState === 1) {
      this.socket.send(JSON.stringify({ type: "history", resolution: "1m" }));
    }
  };

  LivePage.prototype.connect = function () {
    var self = this;
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + location.host + this.root.dataset.ws);
    this.socket = socket;
    socket.onopen = function () { self.retry = 1000; self.say(""); };
    socket.onmessage = function (ev) { self.receive(JSON.parse(ev.data)); };
    socket.onclose = function (ev) {
      if (ev.code === 4401 || ev.code === 4403 || ev.code === 4404) {
        self.say("Live data refused (" + ev.code + "): log in again or ask an admin for a role.");
        return;
      }
      self.say("Live connection lost; reconnecting…");
      setTimeout(function () { self.connect(); }, self.retry);
      self.retry = Math.min(self.retry * 2, 30000);
    };
  };

  LivePage.prototype.say = function (text) {
    if (this.status) { this.status.textContent = text; this.status.hidden = !text; }
  };

  LivePage.prototype.receive = function (msg) {
    if (msg.type === "hello") {
      this.full = msg.frames || [];
      this.markers = msg.markers || [];
      this.caps = msg.caps || {};
      this.requestMinutes();
    } else if (msg.type === "frame") {
      this.full.push(msg.frame);
      var oldest = msg.frame.t - FULL_KEEP_SECONDS;
      while (this.full.length && (this.full[0].t < oldest || this.full.length > FULL_MAX_FRAMES)) { this.full.shift(); }
      this.say("");
    } else if (msg.type === "history" && msg.resolution === "1m") {
      this.minute = msg.frames || [];
    } else if (msg.type === "marker") {
      this.markers.push(msg);
      if (this.markers.length > 200) { this.markers.shift(); }
    } else if (msg.type === "caps") {
      this.caps = msg.caps || {};
    } else if (msg.type === "status") {
      this.say(msg.up ? "" : "Host not answering: " + msg.reason + " (retrying; the chart shows a gap)");
      return;
    } else {
      return;
    }
    this.publishLatest();
    this.schedule();
  };

  LivePage.prototype.publishLatest = function () {
    var f = this.full[this.full.length - 1];
    if (!this.latestTarget) { return; }
    this.latestTarget.dataset.markers = JSON.stringify(this.markers.map(function (m) { return { kind: m.kind, t: m.t }; }));
    this.latestTarget.dataset.caps = JSON.stringify(this.caps);
    if (!f) { return; }
    var latest = { t: f.t };
    if (this.kind === "guest") {
      latest.vcpu = {}; latest.delay = {};
      (f.n || []).forEach(function (n, i) { latest.vcpu[n] = f.v[i]; latest.delay[n] = f.d ? f.d[i] : null; });
      latest.overhead = f.o; latest.total = f.g;
    } else {
      latest.cpu = {};
      (f.i || []).forEach(function (c, i) { latest.cpu[c] = f.b[i]; });
      this.paintCpuMap(latest.cpu);
    }
    this.latestTarget.dataset.latest = JSON.stringify(latest);
  };

  LivePage.prototype.paintCpuMap = function (busy) {
    Object.keys(busy).forEach(function (id) {
      var cell = document.querySelector('.cpumap .cpu[data-cpu-id="' + id + '"]');
      if (!cell) { return; }
      var pct = busy[id] === null ? 0 : busy[id];
      cell.style.setProperty("--load", String(pct / 100));
      cell.classList.add("has-load");
      var label = cell.querySelector(".cpu-load");
      if (!label) {
        label = el("span", { "class": "cpu-load", "aria-label": "load" });
        var head = cell.querySelector(".cpu-head") || cell;
        head.appendChild(label);
      }
      label.textContent = Math.round(pct) + " %";
    });
  };

  LivePage.prototype.schedule = function () {
    if (this.dirty || this.paused) { return; }
    this.dirty = true;
    var self = this;
    requestAnimationFrame(function () { self.dirty = false; self.draw(); });
  };

  LivePage.prototype.draw = function () {
    var newest = this.full.length ? this.full[this.full.length - 1].t : Date.now() / 1000;
    var start = newest - this.windowSeconds;
    var frames;
    var maxHole;
    if (this.windowSeconds > FULL_KEEP_SECONDS - 60) {
      var firstFull = this.full.length ? this.full[0].t : Infinity;
      frames = this.minute.filter(function (f) { return f.t >= start && f.t < firstFull; });
      frames = frames.concat(this.full);
      maxHole = 150;
    } else {
      frames = this.full.filter(function (f) { return f.t >= start; });
      maxHole = 30;
    }
    this.charts.forEach(function (c) { c.render(frames, [start, newest], maxHole); });
    this.root.dataset.rendered = String(frames.length);
  };

  document.addEventListener("DOMContentLoaded", function () {
    if (typeof uPlot === "undefined") { return; }
    document.querySelectorAll("[data-live-root]").forEach(function (root) { new LivePage(root); });
  });
})();
