// isoweb live charts: one websocket per page, uPlot for drawing (fast with hundreds of series).
// The server sends a "hello" with recent history, caps and markers, then one "frame" per collector tick.
// Frames are buffered; drawing happens at most once per animation frame, so a burst costs one redraw.
// The newest values are mirrored on the chart container as data-latest (JSON) for tests and tools, and for
// people as a table of the latest values under each chart (its text alternative).
// Times (axis, markers, status) are shown in the user's time zone: <body data-time-zone="Area/City"> when
// the page says one, else the browser's own; the axis says which.
(function () {
  "use strict";

  var FULL_KEEP_SECONDS = 16 * 60;
  var FULL_MAX_FRAMES = 2000;
  var MINUTE_REFRESH_MS = 60000;
  var PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"];

  function color(i) { return PALETTE[i % PALETTE.length]; }

  // The zone every time on the charts is shown in: the user's setting from the page, else the browser's.
  function pageTimeZone() {
    var browser = "UTC";
    try { browser = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC"; } catch (e) { browser = "UTC"; }
    var body = document.body;
    var wanted = body && body.dataset.timeZone;
    // The server's fallback zone (the user has none yet, not even the browser's on record) gives way to the
    // browser's own, which the page itself switches to as soon as the server has recorded it.
    if (wanted && body.dataset.timeZoneSource !== "default") {
      try { new Intl.DateTimeFormat("en-US", { timeZone: wanted }); return wanted; } catch (e) { return browser; }
    }
    return browser;
  }
  var ZONE = null;
  var clockFormat = null;
  function zone() { if (ZONE === null) { ZONE = pageTimeZone(); } return ZONE; }
  // "07:54:48" in the chart's zone, for markers and status lines (epoch seconds in).
  function clock(t) {
    if (!clockFormat) {
      clockFormat = new Intl.DateTimeFormat("en-GB", { timeZone: zone(), hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
    }
    return clockFormat.format(new Date(t * 1000));
  }
  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  // --- data shaping -------------------------------------------------------------------------------

  // Turn frames into uPlot columns: x, then one column per series; a frame flagged "gap" (first after a
  // restart or an outage) and any hole longer than maxHole break the line instead of bridging it.
  // Series that are not shown all get one shared column of nulls, so hidden series cost nothing to build;
  // showing one from the legend redraws the chart with its values.
  function columns(frames, seriesDefs, maxHole, isShown) {
    var xs = [];
    var live = [];
    seriesDefs.forEach(function (def, i) { if (isShown(def, i)) { live.push(i); } });
    var cols = live.map(function () { return []; });
    var prevT = null;
    frames.forEach(function (f) {
      if (prevT !== null && (f.gap || f.t - prevT > maxHole)) {
        xs.push((prevT + f.t) / 2);
        cols.forEach(function (c) { c.push(null); });
      }
      xs.push(f.t);
      for (var k = 0; k < live.length; k++) { cols[k].push(seriesDefs[live[k]].value(f)); }
      prevT = f.t;
    });
    var empty = xs.map(function () { return null; });
    var out = seriesDefs.map(function () { return empty; });
    live.forEach(function (i, k) { out[i] = cols[k]; });
    return [xs].concat(out);
  }

  // A frame's value for one id (vCPU or host CPU number). The id -> position index is built once per frame
  // and kept on it, so a chart with V series costs O(V) per frame, not O(V^2).
  // A window holding more frames than the chart has room for (one per 2 pixels) is drawn from k-second
  // buckets, aligned on the clock, each holding every series' highest value in it: peaks stay visible and a
  // 15-minute window draws half the points. Finished buckets are kept, so an update merges only the newest.
  function Thinner() { this.k = 0; this.done = {}; }

  Thinner.prototype.thin = function (frames, room) {
    var k = Math.ceil(frames.length / room);
    if (k <= 1) { return frames; }
    if (k !== this.k) { this.k = k; this.done = {}; }
    var out = [], done = this.done, kept = {};
    var i = 0;
    while (i < frames.length) {
      var bucket = Math.floor(frames[i].t / k);
      var j = i + 1;
      while (j < frames.length && Math.floor(frames[j].t / k) === bucket && !frames[j].gap && sameIds(frames[j], frames[i])) { j++; }
      var last = j === frames.length;  // the newest bucket may still grow
      var cacheKey = bucket + ":" + frames[i].t + ":" + (j - i);
      var merged = !last && done[cacheKey];
      if (!merged) {
        merged = frames[i];
        for (var m = i + 1; m < j; m++) { merged = higher(merged, frames[m]); }
      }
      if (!last) { kept[cacheKey] = merged; }
      out.push(merged);
      i = j;
    }
    this.done = kept;
    return out;
  };

  function sameIds(a, b) {
    var x = a.n || a.i || [], y = b.n || b.i || [];
    if (x.length !== y.length) { return false; }
    for (var i = 0; i < x.length; i++) { if (x[i] !== y[i]) { return false; } }
    return true;
  }

  // One frame from two neighbours: the later time, each value the higher of the two.
  function higher(a, b) {
    var out = {};
    Object.keys(b).forEach(function (key) {
      var x = a[key], y = b[key];
      if (key === "t" || key === "n" || key === "i") {
        out[key] = y;
      } else if (key === "gap") {
        out[key] = a.gap;
      } else if (Array.isArray(y)) {
        out[key] = y.map(function (v, n) { var w = x ? x[n] : null; return w === null || w === undefined || (v !== null && v > w) ? v : w; });
      } else {
        out[key] = x === null || x === undefined || (y !== null && y > x) ? y : x;
      }
    });
    if (a.gap) { out.gap = a.gap; }
    return out;
  }

  function keyed(f, idField, valueField, id) {
    var ids = f[idField], values = f[valueField];
    if (!ids || !values) { return null; }
    var index = f["_at_" + idField];
    if (!index) {
      index = {};
      for (var i = 0; i < ids.length; i++) { index[ids[i]] = i; }
      Object.defineProperty(f, "_at_" + idField, { value: index, enumerable: false });
    }
    var at = index[id];
    return at === undefined ? null : values[at];
  }

  // Max, mean and min over a frame's values (nulls skipped), kept on the frame like the index above.
  function spread(f, valueField) {
    var key = "_spread_" + valueField;
    if (f[key]) { return f[key]; }
    var values = f[valueField] || [];
    var max = null, min = null, sum = 0, count = 0;
    for (var i = 0; i < values.length; i++) {
      var v = values[i];
      if (v === null || v === undefined) { continue; }
      if (max === null || v > max) { max = v; }
      if (min === null || v < min) { min = v; }
      sum += v; count++;
    }
    var out = { max: max, mean: count ? Math.round(sum / count * 10) / 10 : null, min: min };
    Object.defineProperty(f, key, { value: out, enumerable: false });
    return out;
  }

  // Above this many per-thread series, a chart opens with their max, mean and min plus the busiest few; every
  // series is still there to show from the legend or "all". Drawn one by one, 64 lines cost a software-
  // rendered browser about 30 ms per chart per second; the summary keeps an update within one frame.
  var MANY_SERIES = 16;
  var BUSIEST_SHOWN = 4;

  // Series for one value per id (vCPU or host CPU): each id's line, and for many ids the summary lines.
  // ``building``: a chart is being (re)built, so which series open shown matters; otherwise it is skipped.
  function perIdSeries(frames, idField, valueField, label, summaryLabel, building) {
    var ids = idsIn(frames, idField);
    var many = ids.length > MANY_SERIES;
    var shown = {};
    if (many && building) {
      // The busiest ids over the frames drawn, by their mean.
      var sums = {};
      frames.forEach(function (f) {
        ids.forEach(function (id) { sums[id] = (sums[id] || 0) + (keyed(f, idField, valueField, id) || 0); });
      });
      ids.slice().sort(function (a, b) { return sums[b] - sums[a] || a - b; }).slice(0, BUSIEST_SHOWN)
        .forEach(function (id) { shown[id] = true; });
    }
    var defs = [];
    if (many) {
      [["max", "#000", 1.5], ["mean", "#555", 1], ["min", "#999", 1]].forEach(function (s) {
        defs.push({ label: summaryLabel + " " + s[0], stroke: s[1], width: s[2],
          value: function (f) { return spread(f, valueField)[s[0]]; } });
      });
    }
    ids.forEach(function (id, i) {
      defs.push({ label: label(id), stroke: color(i), hidden: many && !shown[id],
        value: function (f) { return keyed(f, idField, valueField, id); } });
    });
    return defs;
  }

  // Ids (vCPUs, host CPUs) that have a value in some frame for an optional field such as "f".
  function idsWith(frames, idField, valueField) {
    var seen = {};
    frames.forEach(function (f) {
      var values = f[valueField];
      if (!values) { return; }
      (f[idField] || []).forEach(function (id, i) { if (values[i] !== null && values[i] !== undefined) { seen[id] = true; } });
    });
    return Object.keys(seen).map(Number).sort(function (a, b) { return a - b; });
  }

  function idsIn(frames, field) {
    var seen = {};
    frames.forEach(function (f) { (f[field] || []).forEach(function (id) { seen[id] = true; }); });
    return Object.keys(seen).map(Number).sort(function (a, b) { return a - b; });
  }

  // --- drawing hooks: caps as horizontal reference lines, markers as vertical lines -----------------

  // A cap is drawn only over the stretch it was in force: from its "from" (the change that set it; null: since
  // before anything the chart knows) to the next cap's "from".
  function drawCaps(getCaps) {
    return function (u) {
      var caps = getCaps() || [];
      var ctx = u.ctx;
      var min = u.scales.x.min, max = u.scales.x.max;
      ctx.save();
      caps.forEach(function (cap) {
        var from = cap.from === null || cap.from === undefined ? min : Math.max(cap.from, min);
        var to = cap.to === null || cap.to === undefined ? max : Math.min(cap.to, max);
        if (!(to > from)) { return; }
        var y = Math.round(u.valToPos(cap.value, "y", true));
        if (y < u.bbox.top || y > u.bbox.top + u.bbox.height) { return; }
        var x0 = Math.round(u.valToPos(from, "x", true)), x1 = Math.round(u.valToPos(to, "x", true));
        ctx.strokeStyle = cap.color;
        ctx.setLineDash([6, 4]);
        ctx.lineWidth = 1.5 * devicePixelRatio;
        ctx.beginPath();
        ctx.moveTo(x0, y);
        ctx.lineTo(x1, y);
        ctx.stroke();
        ctx.setLineDash([]);
        ctx.fillStyle = cap.color;
        ctx.font = (11 * devicePixelRatio) + "px system-ui, sans-serif";
        ctx.textAlign = "left";  // uPlot leaves the axes' alignment on the context
        ctx.textBaseline = "bottom";
        ctx.fillText(cap.label, x0 + 4 * devicePixelRatio, y - 3 * devicePixelRatio);
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
        ctx.fillText((rolled ? "↶ " : "✓ ") + m.label.slice(0, 40) + " " + clock(m.t), x + 3 * devicePixelRatio, u.bbox.top + 12 * devicePixelRatio);
      });
      ctx.restore();
    };
  }

  // --- one chart ---------------------------------------------------------------------------------

  function Chart(container, opts) {
    this.container = container;
    this.opts = opts; // {title, yLabel, seriesFor(frames) -> defs, caps(), markers(), redraw()}
    this.plot = null;
    this.signature = "";
    this.hidden = {};
    this.rows = {};
    this.buildTable();
  }

  // The chart's text alternative: the latest value of every series in a table under the canvas, in a
  // collapsible box, updated with each drawing (a cell is written only when its text changes).
  Chart.prototype.buildTable = function () {
    var id = "latest-" + (this.container.dataset.chart || "chart") + "-" + Math.floor(Math.random() * 1e9);
    this.container.setAttribute("role", "figure");
    this.container.dataset.timeAxis = "Time (" + zone() + ")";
    this.container.setAttribute("aria-label", this.opts.title + " over time (" + zone() + "); the latest values are in the table “Latest values” below it");
    var box = el("details", { "class": "chart-table", "data-chart-table": this.container.dataset.chart || "" });
    box.appendChild(el("summary", {}, "Latest values: " + this.opts.title));
    var table = el("table", { "class": "table", id: id });
    table.appendChild(el("caption", { "class": "visually-hidden" }, "Latest values: " + this.opts.title));
    var head = el("tr");
    head.appendChild(el("th", { scope: "col" }, "Series"));
    head.appendChild(el("th", { scope: "col", "class": "num" }, this.opts.yLabel));
    var thead = el("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    this.tbody = el("tbody");
    table.appendChild(this.tbody);
    this.when = el("p", { "class": "note", "aria-live": "off" }, "");
    box.appendChild(table);
    box.appendChild(this.when);
    this.container.parentNode.insertBefore(box, this.container.nextSibling);
  };

  Chart.prototype.updateTable = function (defs, frame) {
    var rows = this.rows, tbody = this.tbody, seen = {};
    defs.forEach(function (d) {
      seen[d.label] = true;
      var row = rows[d.label];
      if (!row) {
        var tr = el("tr");
        tr.appendChild(el("th", { scope: "row" }, d.label));
        var cell = el("td", { "class": "num" }, "");
        tr.appendChild(cell);
        tbody.appendChild(tr);
        row = rows[d.label] = { tr: tr, cell: cell, text: "" };
      }
      var v = frame ? d.value(frame) : null;
      var text = v === null || v === undefined ? "—" : (Math.round(v * 10) / 10).toFixed(1);
      if (row.text !== text) { row.text = text; row.cell.textContent = text; }
    });
    Object.keys(rows).forEach(function (label) {
      if (!seen[label]) { rows[label].tr.remove(); delete rows[label]; }
    });
    var when = frame ? "As of " + clock(frame.t) + " (" + zone() + ")" : "";
    if (this.when.textContent !== when) { this.when.textContent = when; }
  };

  // The x axis's tick labels in the chart's zone, 24-hour ("14:05", or "14:05:30" below a minute between ticks);
  // uPlot places the ticks on round times of that zone (tzDate). Mirrored as data-x-ticks for tests and tools.
  Chart.prototype.timeTicks = function (splits) {
    var step = splits.length > 1 ? splits[1] - splits[0] : 60;
    var out = splits.map(function (t) {
      if (t === null || t === undefined) { return ""; }
      var text = clock(t);
      return step < 60 ? text : text.slice(0, 5);
    });
    var json = JSON.stringify(out);
    if (this.container.dataset.xTicks !== json) { this.container.dataset.xTicks = json; }
    return out;
  };

  // uPlot's legend entries toggle on click only; each becomes a real button (reachable with Tab, pressed with
  // Enter or Space, its state in aria-pressed). The click still reaches uPlot's own handler on the cell.
  Chart.prototype.legendButtons = function () {
    var plot = this.plot;
    this.buttons = {};
    var buttons = this.buttons;
    var rows = plot.root.querySelectorAll(".u-legend .u-series");
    var offset = plot.series.length - rows.length;  // a legend that is not live has no row for the x series
    rows.forEach(function (row, k) {
      var i = k + offset;
      if (i === 0) { return; }  // the x series has no toggle
      var cell = row.querySelector("th");
      if (!cell) { return; }
      var button = el("button", { type: "button", "class": "legend-toggle" });
      while (cell.firstChild) { button.appendChild(cell.firstChild); }
      cell.appendChild(button);
      button.setAttribute("aria-pressed", plot.series[i].show ? "true" : "false");
      buttons[i] = button;
    });
  };

  Chart.prototype.render = function (frames, xRange, maxHole, newest) {
    var defs = this.opts.seriesFor(frames, false);
    this.updateTable(defs, newest);
    var signature = defs.map(function (d) { return d.label; }).join("|");
    var self = this;
    this.xRange = xRange;
    if (this.plot && signature === this.signature) {
      var plot = this.plot;
      var data = columns(frames, defs, maxHole, function (_def, i) { return plot.series[i + 1].show; });
      plot.batch(function () {  // one redraw for the new data and the moved window
        plot.setData(data, false);
        plot.setScale("x", { min: xRange[0], max: xRange[1] });
      });
      return;
    }
    // The set of series changed (first data, a vCPU hotplugged): rebuild, keeping the user's toggles.
    defs = this.opts.seriesFor(frames, true);
    data = columns(frames, defs, maxHole, function (def) { return self.isShown(def); });
    if (this.plot) { this.plot.destroy(); }
    this.signature = signature;
    this.plot = new uPlot({
      width: Math.max(320, this.container.clientWidth || 800),
      height: 260,
      title: this.opts.title,
      tzDate: function (ts) { return uPlot.tzDate(new Date(ts * 1e3), zone()); },
      scales: {
        x: { time: true, range: function () { return self.xRange; } },
        y: { range: function (u, min, max) { return [0, Math.max(100, Math.ceil((max || 0) / 10) * 10)]; } },
      },
      axes: [{ label: "Time (" + zone() + ")", labelSize: 20, values: function (u, splits) { return self.timeTicks(splits); } },
        { label: this.opts.yLabel, size: 60 }],
      legend: { live: false },
      cursor: { drag: { x: false, y: false } },
      series: [{}].concat(defs.map(function (d) {
        // 1 px lines take the browser's fast hairline path: with many series that is most of a redraw.
        return { label: d.label, stroke: d.stroke, width: d.width || 1, dash: d.dash, spanGaps: false,
          show: self.isShown(d), points: { show: false } };
      })),
      hooks: {
        draw: [drawCaps(this.opts.caps), drawMarkers(this.opts.markers)],
        setSeries: [function (u, idx) {
          if (idx) { self.hidden[u.series[idx].label] = !u.series[idx].show; }
          Object.keys(self.buttons || {}).forEach(function (i) {
            self.buttons[i].setAttribute("aria-pressed", u.series[i].show ? "true" : "false");
          });
          if (self.opts.redraw) { self.opts.redraw(); }  // a series just shown needs its values
        }],
      },
    }, data, this.container);
    var canvas = this.plot.root.querySelector("canvas");
    if (canvas) { canvas.setAttribute("role", "img"); canvas.setAttribute("aria-label", this.opts.title + " (the table “Latest values” below gives the newest values)"); }
    this.legendButtons();
  };

  Chart.prototype.isShown = function (def) {
    return this.hidden[def.label] === undefined ? !def.hidden : !this.hidden[def.label];
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
    this.capHistory = [];  // [{from: epoch seconds | null, caps: {...}}], oldest first
    this.paused = false;
    this.windowSeconds = Number(root.querySelector("[data-window]").value || 300);
    this.dirty = false;
    this.status = root.querySelector(".chart-status");
    this.charts = [];
    this.latestTarget = root.querySelector("[data-latest]");
    this.thinner = new Thinner();
    // Read once (and on resize), never while drawing: reading a size then would force a layout each second.
    this.room = 600;
    var self = this;
    var measure = function () { self.room = Math.max(100, Math.floor((root.clientWidth || 1200) / 2)); };
    measure();
    window.addEventListener("resize", measure);
    this.retry = 1000;
    this.build();
    this.connect();
  }

  // Each cap as a line over the stretch it was in force: from the change that set it to the next change.
  LivePage.prototype.capLines = function (which) {
    var self = this;
    return function () {
      var lines = [];
      if (which !== "vcpu") { return lines; }
      var history = self.capHistory;
      history.forEach(function (segment, i) {
        var to = i + 1 < history.length ? history[i + 1].from : null;
        var caps = segment.caps || {};
        if (caps.vcpu) { lines.push({ value: caps.vcpu, from: segment.from, to: to, label: "vcpu cap " + caps.vcpu + " %", color: "#b3261e" }); }
        if (caps.emulator) { lines.push({ value: caps.emulator, from: segment.from, to: to, label: "emulator cap " + caps.emulator + " %", color: "#8a5a00" }); }
      });
      return lines;
    };
  };

  LivePage.prototype.capsChanged = function (caps, since) {
    this.caps = caps || {};
    this.capHistory.push({ from: since === undefined ? null : since, caps: this.caps });
    if (this.capHistory.length > 50) { this.capHistory.shift(); }
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
          seriesFor: function (frames, building) {
            var defs = perIdSeries(frames, "n", "v", function (n) { return "vCPU " + n; }, "vCPUs", building);
            defs.push({ label: "emulator + I/O threads", stroke: "#000", width: 2, dash: [4, 3], value: function (f) { return f.o === undefined ? null : f.o; } });
            defs.push({ label: "guest total", stroke: "#888", width: 1, hidden: defs.length > 9, value: function (f) { return f.g === undefined ? null : f.g; } });
            return defs;
          } };
      } else if (which === "guest-delay") {
        opts = { title: "Run-queue delay / steal (% of the time)", yLabel: "%", caps: noCaps, markers: markers,
          seriesFor: function (frames, building) {
            var defs = perIdSeries(frames, "n", "d", function (n) { return "vCPU " + n + " delay"; }, "delay", building);
            // Next to each dedicated vCPU's delay: the foreign load on the host CPU it holds alone.
            idsWith(frames, "n", "f").forEach(function (n, i) {
              defs.push({ label: "vCPU " + n + " foreign load on its CPU", stroke: color(i), width: 2, dash: [2, 3],
                value: function (f) { return keyed(f, "n", "f", n); } });
            });
            return defs;
          } };
      } else if (which === "host-cpu") {
        opts = { title: "Host CPU busy (%)", yLabel: "%", caps: noCaps, markers: markers,
          seriesFor: function (frames, building) {
            var defs = perIdSeries(frames, "i", "b", function (c) { return "CPU " + c; }, "CPUs", building);
            // Each CPU a guest holds alone: the load on it that is not the owner's.
            idsWith(frames, "i", "f").forEach(function (c) {
              defs.push({ label: "CPU " + c + " foreign load", stroke: "#b3261e", width: 2, dash: [2, 3],
                value: function (f) { return keyed(f, "i", "f", c); } });
            });
            return defs;
          } };
      } else {
        return;
      }
      opts.redraw = function () { self.schedule(); };
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
      this.capHistory = [];
      this.capsChanged(msg.caps, msg.caps_since);
      if (msg.isolation) { this.showIsolation(msg.isolation); }
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
    } else if (msg.type === "isolation") {
      this.showIsolation(msg.isolation || {});
      return;
    } else if (msg.type === "caps") {
      this.capsChanged(msg.caps, msg.since === undefined ? Date.now() / 1000 : msg.since);
    } else if (msg.type === "status") {
      var since = msg.since ? " since " + clock(msg.since) + " (" + zone() + ")" : "";
      this.say(msg.up ? "" : "Host not answering" + since + ": " + msg.reason + " (retrying; the chart shows a gap)");
      return;
    } else {
      return;
    }
    this.publishLatest();
    this.schedule();
  };

  // The guest's isolation score on its page: the share of the last hour its dedicated CPUs were free of
  // foreign load above the threshold.
  LivePage.prototype.showIsolation = function (found) {
    var target = document.querySelector("[data-isolation]");
    if (!target) { return; }
    var text;
    if (found.score === null || found.score === undefined) {
      text = "no CPU held alone in the last hour";
    } else {
      var minutes = Math.round((found.sampled_seconds || 0) / 60);
      text = (Math.round(found.score * 1000) / 10) + " % of the time free of foreign load above " + found.threshold +
        " % of a CPU (over " + (minutes < 1 ? "less than a minute" : minutes + " min") + " sampled in the last hour)";
    }
    if (target.textContent !== text) { target.textContent = text; }
    target.dataset.score = found.score === null || found.score === undefined ? "" : String(found.score);
  };

  LivePage.prototype.publishLatest = function () {
    var f = this.full[this.full.length - 1];
    if (!this.latestTarget) { return; }
    this.latestTarget.dataset.markers = JSON.stringify(this.markers.map(function (m) { return { kind: m.kind, t: m.t, label: m.label }; }));
    this.latestTarget.dataset.caps = JSON.stringify(this.caps);
    this.latestTarget.dataset.capSegments = JSON.stringify(this.capHistory);
    if (!f) { return; }
    var latest = { t: f.t };
    if (this.kind === "guest") {
      latest.vcpu = {}; latest.delay = {};
      (f.n || []).forEach(function (n, i) { latest.vcpu[n] = f.v[i]; latest.delay[n] = f.d ? f.d[i] : null; });
      latest.overhead = f.o; latest.total = f.g;
      if (f.f) { latest.foreign = {}; (f.n || []).forEach(function (n, i) { if (f.f[i] !== null) { latest.foreign[n] = f.f[i]; } }); }
    } else {
      latest.cpu = {};
      (f.i || []).forEach(function (c, i) { latest.cpu[c] = f.b[i]; });
      latest.foreign = {};
      if (f.f) { (f.i || []).forEach(function (c, i) { if (f.f[i] !== null) { latest.foreign[c] = f.f[i]; } }); }
      this.paintCpuMap(latest.cpu, latest.foreign);
    }
    this.latestTarget.dataset.latest = JSON.stringify(latest);
  };

  // Paint each host CPU's load on the CPU map. The cells are looked up once; a cell is written only when its
  // rounded load changed, so a quiet host costs the page no style or layout work.
  LivePage.prototype.paintCpuMap = function (busy, foreign) {
    if (!this.cpuCells) {
      var cells = this.cpuCells = {};
      document.querySelectorAll(".cpumap .cpu[data-cpu-id]").forEach(function (cell) {
        cells[cell.dataset.cpuId] = { cell: cell, label: null, shown: null };
      });
    }
    var cells = this.cpuCells;
    Object.keys(busy).forEach(function (id) {
      var entry = cells[id];
      if (!entry) { return; }
      var pct = Math.round(busy[id] === null ? 0 : busy[id]);
      if (entry.shown === pct) { return; }
      entry.shown = pct;
      if (!entry.label) {
        entry.label = el("span", { "class": "cpu-load", "aria-label": "load" });
        (entry.cell.querySelector(".cpu-head") || entry.cell).appendChild(entry.label);
        entry.fill = el("span", { "class": "cpu-fill", "aria-hidden": "true" });
        entry.cell.insertBefore(entry.fill, entry.cell.firstChild);
        entry.cell.classList.add("has-load");
      }
      // A transform only: the compositor moves the fill, nothing is laid out or repainted.
      entry.fill.style.transform = "scaleY(" + pct / 100 + ")";
      entry.label.textContent = pct + " %";
    });
    // A CPU a guest holds alone also says how much of its load is someone else's.
    Object.keys(cells).forEach(function (id) {
      var entry = cells[id];
      var value = foreign ? foreign[id] : undefined;
      var text = value === undefined || value === null ? "" : "foreign " + Math.round(value) + " %";
      if (entry.foreignText === text) { return; }
      entry.foreignText = text;
      if (!entry.foreign) {
        if (!text) { return; }
        entry.foreign = el("span", { "class": "cpu-foreign", title: "Load on this dedicated CPU that is not its owner's" });
        entry.cell.appendChild(entry.foreign);
      }
      entry.foreign.textContent = text;
      entry.foreign.hidden = !text;
      entry.cell.classList.toggle("has-foreign", !!text && value >= 5);
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
    this.root.dataset.rendered = String(frames.length);
    var last = this.full.length ? this.full[this.full.length - 1] : null;
    frames = this.thinner.thin(frames, this.room);
    this.charts.forEach(function (c) { c.render(frames, [start, newest], maxHole, last); });
  };

  document.addEventListener("DOMContentLoaded", function () {
    if (typeof uPlot === "undefined") { return; }
    document.querySelectorAll("[data-live-root]").forEach(function (root) { root.dataset.timeZone = zone(); });
    document.querySelectorAll("[data-live-root]").forEach(function (root) { new LivePage(root); });
  });
})();
