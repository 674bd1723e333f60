// isoweb profile editor: keeps the structured fields and the profile JSON in sync, converts quotas to
// "% of one CPU" and back, and plans the profile live against guests of a chosen host through
// POST /api/profiles/plan/, showing errors next to the fields, issues per guest and the planned placement
// on a compact CPU map of the host. Nothing here saves anything; the form's submit does.
(function () {
  "use strict";

  var DEFAULT_PERIOD = 100000;
  var SCHED_NAMES = ["cpu_shares", "vcpu_period", "vcpu_quota", "emulator_period", "emulator_quota",
    "global_period", "global_quota", "iothread_period", "iothread_quota"];
  var GROUPS = ["vcpu", "emulator", "iothread", "global"];

  var form, data, hostSelect, guestSelect, scopeSelect, statusBox, resultsBox, mapBox;
  var topology = {};  // host id -> promise of the host's API detail (cells and CPUs)
  var planTimer = null, jsonTimer = null, planSeq = 0;

  function field(name) { return form.elements.namedItem(name); }
  function value(name) { var el = field(name); return el ? el.value.trim() : ""; }
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  // --- cpulists (only to draw the map; the server judges them) ---------------------------------------
  function parseCpulist(text) {
    var cpus = new Set();
    if (typeof text !== "string") { return cpus; }
    text.split(",").forEach(function (raw) {
      var item = raw.trim(), m;
      if ((m = /^\^\s*(\d+)$/.exec(item))) { cpus.delete(Number(m[1])); }
      else if ((m = /^(\d+)\s*-\s*(\d+)$/.exec(item))) {
        for (var i = Number(m[1]); i <= Number(m[2]) && i - Number(m[1]) < 16384; i++) { cpus.add(i); }
      } else if (/^\d+$/.test(item)) { cpus.add(Number(item)); }
    });
    return cpus;
  }

  // --- the profile the fields describe (same rules as ProfileForm.content) --------------------------
  function intOrNull(name) {
    var text = value(name);
    if (text === "") { return null; }
    var n = Number(text);
    return Number.isFinite(n) ? n : text;  // a non-number goes through so the validator names it
  }

  function contentFromFields() {
    var content = {};
    var strategy = value("vcpupin_strategy");
    if (strategy === "pool") {
      content.vcpupin = { strategy: "pool" };
      if (value("vcpupin_pool_cpus")) { content.vcpupin.cpus = value("vcpupin_pool_cpus"); }
    } else if (strategy === "explicit") {
      var pins = {};
      value("vcpupin_explicit").split("\n").forEach(function (line) {
        line = line.trim();
        if (!line) { return; }
        var at = line.indexOf(":");
        if (at === -1) { pins[line] = ""; } else { pins[line.slice(0, at).trim()] = line.slice(at + 1).trim(); }
      });
      content.vcpupin = { strategy: "explicit", cpus: pins };
    } else if (strategy) {
      content.vcpupin = { strategy: strategy };
    }
    ["emulatorpin", "iothreadpin"].forEach(function (section) {
      var s = value(section + "_strategy");
      if (!s) { return; }
      content[section] = { strategy: s };
      if (s === "cpulist") { content[section].cpus = value(section + "_cpus"); }
    });
    var sched = {};
    SCHED_NAMES.forEach(function (name) {
      var v = intOrNull("sched_" + name);
      if (v !== null) { sched[name] = v; }
    });
    if (Object.keys(sched).length) { content.sched = sched; }
    if (field("allow_shared_emulator").checked) { content.allow_shared_emulator = true; }
    return content;
  }

  function setValue(name, v) {
    var input = field(name);
    if (input) { input.value = v === undefined || v === null ? "" : String(v); }
  }

  function fieldsFromContent(content) {
    var vcpupin = content.vcpupin || {};
    setValue("vcpupin_strategy", vcpupin.strategy || "");
    setValue("vcpupin_pool_cpus", vcpupin.strategy === "pool" ? vcpupin.cpus : "");
    var cpus = vcpupin.strategy === "explicit" && vcpupin.cpus && typeof vcpupin.cpus === "object" ? vcpupin.cpus : {};
    setValue("vcpupin_explicit", Object.keys(cpus).map(function (k) { return k + ": " + cpus[k]; }).join("\n"));
    ["emulatorpin", "iothreadpin"].forEach(function (section) {
      var rule = content[section] || {};
      setValue(section + "_strategy", rule.strategy || "");
      setValue(section + "_cpus", rule.strategy === "cpulist" ? rule.cpus : "");
    });
    var sched = content.sched || {};
    SCHED_NAMES.forEach(function (name) { setValue("sched_" + name, sched[name]); });
    GROUPS.forEach(function (group) { percentFromQuota(group); });
    field("allow_shared_emulator").checked = content.allow_shared_emulator === true;
    updateVisibility();
  }

  function currentContent() {
    if (field("use_json").checked) {
      try { return { ok: true, content: JSON.parse(field("content_json").value) }; }
      catch (exc) { return { ok: false, error: "This is not valid JSON: " + exc.message }; }
    }
    return { ok: true, content: contentFromFields() };
  }

  // --- "% of one CPU" next to each quota ---------------------------------------------------------------
  function periodOf(group) {
    var p = Number(value("sched_" + group + "_period"));
    return p > 0 ? p : DEFAULT_PERIOD;
  }

  function percentFromQuota(group) {
    var q = Number(value("sched_" + group + "_quota"));
    var text = value("sched_" + group + "_quota");
    setValue("percent_" + group + "_quota", text !== "" && q > 0 ? Math.round(q * 100000 / periodOf(group)) / 1000 : "");
  }

  function quotaFromPercent(group) {
    var text = value("percent_" + group + "_quota");
    if (text === "") { setValue("sched_" + group + "_quota", ""); return; }
    var pct = Number(text);
    if (pct > 0) {
      // The quota is worked out against a period: store that period too, so the cap means this percentage
      // on every guest whatever period it had (an empty period field is libvirt's default, written out).
      if (value("sched_" + group + "_period") === "") { setValue("sched_" + group + "_period", DEFAULT_PERIOD); }
      setValue("sched_" + group + "_quota", Math.round(pct * periodOf(group) / 100));
    }
  }

  // --- showing the inputs that matter for the chosen strategy -----------------------------------------
  function updateVisibility() {
    form.querySelectorAll("[data-show-when]").forEach(function (box) {
      var rule = box.dataset.showWhen.split("=");
      box.hidden = value(rule[0]) !== rule[1];
    });
  }

  function syncJson() {
    if (field("use_json").checked) { return; }
    field("content_json").value = JSON.stringify(contentFromFields(), null, 2);
  }

  // --- errors next to the fields (same mapping as ProfileForm.field_for) -----------------------------
  function fieldFor(path) {
    if (field("use_json").checked) { return "content_json"; }
    var parts = path.split("."), section = parts[0], rest = parts.slice(1).join(".");
    if (section === "vcpupin") {
      if (rest.indexOf("cpus") === 0) {
        return value("vcpupin_strategy") === "explicit" ? "vcpupin_explicit" : "vcpupin_pool_cpus";
      }
      return "vcpupin_strategy";
    }
    if (section === "emulatorpin" || section === "iothreadpin") {
      return rest.indexOf("cpus") === 0 ? section + "_cpus" : section + "_strategy";
    }
    if (section === "sched" && SCHED_NAMES.indexOf(rest) !== -1) { return "sched_" + rest; }
    if (section === "allow_shared_emulator") { return section; }
    return "__all__";
  }

  // The server's errors stay until the first edit; after that the live check owns the error boxes.
  var serverErrorsShown = false;
  // A new, empty profile is not judged before someone types in it: "the profile changes nothing" is no error
  // to greet anyone with.
  var touched = false;

  function clearLiveErrors() {
    if (serverErrorsShown) { return; }
    form.querySelectorAll("[data-errors-for] p").forEach(function (p) { p.remove(); });
    form.querySelectorAll(".field.live-error, .field.has-error").forEach(function (f) {
      f.classList.remove("live-error", "has-error");
    });
  }

  function showFieldErrors(errors) {
    if (serverErrorsShown) { return; }
    showErrors(errors);
  }

  function showErrors(errors) {
    Object.keys(errors).forEach(function (path) {
      var name = fieldFor(path);
      var box = form.querySelector('[data-errors-for="' + name + '"]') ||
        form.querySelector('[data-errors-for="__all__"]');
      (errors[path] || []).forEach(function (message) {
        var general = name === "__all__" || name === "content_json";
        box.appendChild(el("p", "live", general && message.indexOf(path) === -1 ? path + ": " + message : message));
      });
      var wrapper = box.closest(".field");
      if (wrapper) { wrapper.classList.add("live-error"); }
    });
  }

  // --- the live plan -----------------------------------------------------------------------------------
  function csrfToken() {
    var input = form.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function hostDetail(hostId) {
    if (!topology[hostId]) {
      topology[hostId] = fetch(data.host_url.replace("/0/", "/" + hostId + "/"), {
        credentials: "same-origin", headers: { Accept: "application/json" }
      }).then(function (r) {
        if (!r.ok) { throw new Error("HTTP " + r.status); }
        return r.json();
      }).catch(function (exc) { delete topology[hostId]; throw exc; });
    }
    return topology[hostId];
  }

  function selectedGuests() {
    return Array.prototype.filter.call(guestSelect.options, function (o) { return o.selected; })
      .map(function (o) { return Number(o.value); });
  }

  function schedulePlan() {
    clearTimeout(planTimer);
    planTimer = setTimeout(runPlan, 400);
  }

  function setStatus(text, kind) {
    statusBox.textContent = text;
    statusBox.className = "plan-status" + (kind ? " plan-" + kind : "");
  }

  function runPlan() {
    var seq = ++planSeq;
    clearLiveErrors();
    var current = currentContent();
    if (!touched && current.ok && current.content && !Object.keys(current.content).length) {
      setStatus("Fill in the profile; it is checked against the guests picked here as you type.", "");
      resultsBox.replaceChildren();
      return;
    }
    if (!current.ok) {
      showFieldErrors({ profile: [current.error] });
      setStatus("The JSON cannot be read; fix it to see a plan.", "bad");
      return;
    }
    var domains = selectedGuests();
    var hostId = hostSelect.value;
    setStatus("Checking…", "busy");
    fetch(data.plan_url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify({ content: current.content, domains: domains, scope: scopeSelect.value })
    }).then(function (r) {
      return r.json().then(function (body) { return { status: r.status, body: body }; });
    }).then(function (answer) {
      if (seq !== planSeq) { return; }
      if (answer.status === 400 && answer.body.content) {
        showFieldErrors(answer.body.content);
        resultsBox.replaceChildren();
        setStatus("The profile has errors (shown next to the fields); it cannot be saved as it is.", "bad");
        if (hostId) { drawMap(hostId, []); }
        return;
      }
      if (answer.status !== 200) {
        setStatus("The check failed (HTTP " + answer.status + "): " + JSON.stringify(answer.body), "bad");
        return;
      }
      if (!domains.length) {
        setStatus("The profile is valid. Pick guests to see where it would place them.", "ok");
        resultsBox.replaceChildren();
        if (hostId) { drawMap(hostId, []); }
        return;
      }
      var bad = answer.body.plans.filter(function (p) { return p.errors.length; }).length;
      var warned = answer.body.plans.filter(function (p) { return p.warnings.length; }).length;
      if (bad) {
        setStatus("The profile is valid, but it cannot be applied to " + bad + " of " + domains.length +
          " guest" + (domains.length > 1 ? "s" : "") + " (below).", "bad");
      } else {
        setStatus("The plan holds for every guest picked" + (warned ? ", with warnings." : "."), warned ? "warn" : "ok");
      }
      showPlans(answer.body.plans);
      drawMap(hostId, answer.body.plans);
    }).catch(function (exc) {
      if (seq === planSeq) { setStatus("Could not reach the server: " + exc.message, "bad"); }
    });
  }

  function desiredSummary(desired) {
    var parts = [];
    var vcpus = desired.vcpupin || {};
    var keys = Object.keys(vcpus);
    keys.forEach(function (k) { parts.push("vcpupin " + k + " → CPU " + vcpus[k]); });
    if (desired.emulatorpin) { parts.push("emulatorpin → CPU " + desired.emulatorpin); }
    var io = desired.iothreadpin || {};
    Object.keys(io).forEach(function (k) { parts.push("iothreadpin " + k + " → CPU " + io[k]); });
    var sched = desired.sched || {};
    Object.keys(sched).forEach(function (k) { parts.push(k + " = " + sched[k]); });
    return parts;
  }

  function showPlans(plans) {
    resultsBox.replaceChildren();
    plans.forEach(function (plan) {
      var box = el("div", "plan-guest " + (plan.errors.length ? "plan-guest-bad" : "plan-guest-ok"));
      var head = el("div", "plan-guest-head");
      head.appendChild(el("strong", "", plan.name));
      head.appendChild(el("span", "badge " + (plan.errors.length ? "bad" : plan.warnings.length ? "warn" : "status-up"),
        plan.errors.length ? plan.errors.length + " error" + (plan.errors.length > 1 ? "s" : "")
          : plan.warnings.length ? "warnings" : "ok"));
      box.appendChild(head);
      if (!plan.errors.length) {
        var summary = el("ul", "plan-desired");
        desiredSummary(plan.desired).forEach(function (line) { summary.appendChild(el("li", "", line)); });
        box.appendChild(summary);
      }
      var issues = el("ul", "issues");
      function issue(kind, i) {
        var text = i.message.indexOf(i.field) === 0 ? i.message : i.field + ": " + i.message;
        var li = el("li", "issue issue-" + kind, text);
        li.title = i.code;
        issues.appendChild(li);
      }
      plan.errors.forEach(function (i) { issue("error", i); });
      plan.warnings.forEach(function (i) { issue("warning", i); });
      if (issues.children.length) { box.appendChild(issues); }
      resultsBox.appendChild(box);
    });
  }

  function marksFor(plans) {
    var marks = {};  // cpu id -> {guest name -> [{kind, text, title}]}
    function add(cpulist, kind, label, plan) {
      parseCpulist(cpulist).forEach(function (cpu) {
        var byGuest = marks[cpu] = marks[cpu] || {};
        (byGuest[plan.name] = byGuest[plan.name] || []).push({
          kind: kind, text: label, title: plan.name + ": " + label + " may run on CPU " + cpulist
        });
      });
    }
    plans.forEach(function (plan) {
      if (plan.errors.length) { return; }
      var d = plan.desired || {};
      Object.keys(d.vcpupin || {}).forEach(function (n) { add(d.vcpupin[n], "vcpu", "v" + n, plan); });
      if (d.emulatorpin) { add(d.emulatorpin, "emulator", "emu", plan); }
      Object.keys(d.iothreadpin || {}).forEach(function (n) { add(d.iothreadpin[n], "iothread", "io" + n, plan); });
    });
    return marks;
  }

  function drawMap(hostId, plans) {
    hostDetail(hostId).then(function (host) {
      if (hostSelect.value !== String(hostId)) { return; }
      var housekeeping = parseCpulist(host.housekeeping_cpus || "");
      var marks = marksFor(plans);
      var root = el("div", "minimap-cells");
      var title = el("p", "minimap-title");
      title.textContent = host.name + ": " + (host.housekeeping_cpus ? "housekeeping CPU " + host.housekeeping_cpus
        : "no housekeeping CPUs set (every online CPU is in the guest pool)");
      (host.cells || []).forEach(function (cell) {
        var cellBox = el("div", "mini-cell");
        cellBox.appendChild(el("div", "mini-cell-label", "NUMA cell " + cell.cell_id));
        var cores = {};
        var order = [];
        cell.cpus.forEach(function (cpu) {
          var key = cpu.core_id === null ? "cpu" + cpu.cpu_id : cpu.socket_id + "/" + cpu.die_id + "/" + cpu.core_id;
          if (!cores[key]) { cores[key] = []; order.push(key); }
          cores[key].push(cpu);
        });
        var coresBox = el("div", "mini-cores");
        order.forEach(function (key) {
          var coreBox = el("div", "mini-core");
          cores[key].forEach(function (cpu) {
            var box = el("div", "mini-cpu");
            if (housekeeping.has(cpu.cpu_id)) { box.classList.add("is-housekeeping"); }
            if (!cpu.online) { box.classList.add("offline"); }
            var byGuest = marks[cpu.cpu_id] || {};
            var names = Object.keys(byGuest);
            if (names.length) { box.classList.add("is-planned"); }
            box.title = "CPU " + cpu.cpu_id + (housekeeping.has(cpu.cpu_id) ? " (housekeeping)" : "") +
              (cpu.online ? "" : " (offline)");
            var head = el("div", "mini-cpu-id", "CPU " + cpu.cpu_id);
            if (housekeeping.has(cpu.cpu_id)) { head.appendChild(el("span", "mini-tag", "hk")); }
            box.appendChild(head);
            names.forEach(function (name) {
              var line = el("div", "mini-guest");
              line.appendChild(el("span", "mini-guest-name", name));
              byGuest[name].forEach(function (m) {
                var chip = el("span", "chip chip-" + m.kind, m.text);
                chip.title = m.title;
                line.appendChild(chip);
              });
              box.appendChild(line);
            });
            coreBox.appendChild(box);
          });
          coresBox.appendChild(coreBox);
        });
        cellBox.appendChild(coresBox);
        root.appendChild(cellBox);
      });
      mapBox.replaceChildren(title, root);
    }).catch(function (exc) {
      mapBox.replaceChildren(el("p", "error", "Could not load the host's CPUs: " + exc.message));
    });
  }

  // --- pickers ------------------------------------------------------------------------------------------
  function fillGuests(keep) {
    var hostId = Number(hostSelect.value);
    guestSelect.replaceChildren();
    data.guests.filter(function (g) { return g.host_id === hostId; }).forEach(function (g, i) {
      var option = el("option", "", g.name + " — " + g.state + ", " + g.vcpus_max + " vCPU" + (g.vcpus_max === 1 ? "" : "s"));
      option.value = String(g.id);
      option.selected = keep && keep.length ? keep.indexOf(String(g.id)) !== -1 : i === 0;
      guestSelect.appendChild(option);
    });
    guestSelect.size = Math.min(Math.max(guestSelect.options.length, 2), 8);
  }

  function setupPickers() {
    data.hosts.forEach(function (h) {
      var option = el("option", "", h.name + (h.status !== "up" ? " (" + h.status + ")" : ""));
      option.value = String(h.id);
      hostSelect.appendChild(option);
    });
    var firstWithGuests = data.hosts.find(function (h) {
      return data.guests.some(function (g) { return g.host_id === h.id; });
    });
    if (firstWithGuests) { hostSelect.value = String(firstWithGuests.id); }
    // After a failed save the page comes back with the check's host, guests and scope as they were left.
    var keptHost = value("plan_host"), keptGuests = value("plan_guests").split(",").filter(Boolean);
    if (keptHost && data.hosts.some(function (h) { return String(h.id) === keptHost; })) { hostSelect.value = keptHost; }
    if (value("plan_scope") && scopeSelect.querySelector('option[value="' + value("plan_scope") + '"]')) {
      scopeSelect.value = value("plan_scope");
    }
    fillGuests(keptHost === hostSelect.value ? keptGuests : null);
    rememberPickers();
    hostSelect.addEventListener("change", function () { fillGuests(); rememberPickers(); schedulePlan(); });
    guestSelect.addEventListener("change", function () { rememberPickers(); schedulePlan(); });
    scopeSelect.addEventListener("change", function () { rememberPickers(); schedulePlan(); });
  }

  function rememberPickers() {
    setValue("plan_host", hostSelect.value);
    setValue("plan_guests", selectedGuests().join(","));
    setValue("plan_scope", scopeSelect.value);
  }

  // --- wiring -------------------------------------------------------------------------------------------
  function onFieldChange(event) {
    var name = event.target.name || "";
    if (name === "csrfmiddlewaretoken" || name === "name" || name === "description" || name === "comment") { return; }
    serverErrorsShown = false;
    touched = true;
    if (name === "content_json") {
      field("use_json").checked = true;
      clearTimeout(jsonTimer);
      jsonTimer = setTimeout(function () {
        var current = currentContent();
        if (current.ok && current.content && typeof current.content === "object") { fieldsFromContent(current.content); }
      }, 300);
      schedulePlan();
      return;
    }
    if (name === "use_json") {
      if (!field("use_json").checked) { syncJson(); }
      schedulePlan();
      return;
    }
    var m = /^(?:sched|percent)_(\w+?)_(quota|period)$/.exec(name);
    if (m) {
      if (name.indexOf("percent_") === 0) { quotaFromPercent(m[1]); } else { percentFromQuota(m[1]); }
    }
    if (field("use_json").checked) { field("use_json").checked = false; }
    updateVisibility();
    syncJson();
    schedulePlan();
  }

  document.addEventListener("DOMContentLoaded", function () {
    form = document.getElementById("profile-form");
    var script = document.getElementById("planner-data");
    if (!form || !script) { return; }
    data = JSON.parse(script.textContent);
    hostSelect = document.getElementById("plan-host");
    guestSelect = document.getElementById("plan-guests");
    scopeSelect = document.getElementById("plan-scope");
    statusBox = document.getElementById("plan-status");
    resultsBox = document.getElementById("plan-results");
    mapBox = document.getElementById("plan-map");
    serverErrorsShown = !!form.querySelector(".field.has-error, [data-errors-for] p");
    updateVisibility();
    if (!field("use_json").checked && !form.querySelector(".has-error [name=content_json]")) { syncJson(); }
    GROUPS.forEach(function (group) {
      if (value("sched_" + group + "_quota") !== "") { percentFromQuota(group); }
    });
    form.addEventListener("input", onFieldChange);
    setupPickers();
    runPlan();
  });
})();
