"""Measure how smoothly the live charts run in a real browser: a 64-vCPU guest and a host of 100 guests.

The issue asks the charts to stay smooth with a 64-vCPU guest and with 100 guests on a host. This runs the
real pages in Debian's headless Chromium (Playwright), served by a real Daphne with the real channel layer
and Redis, and times the browser's work for every live update:

- the page's websocket handler (parsing the frame, keeping the buffer, painting the CPU map's heat), and
- the chart redraw it schedules for the next animation frame (uPlot, every series), up to the end of that
  frame's style, layout and paint,

plus the browser's long tasks (over 50 ms, from ``PerformanceObserver``) and the gaps between animation
frames. One update per second arrives, as from the collector at 1 Hz, after the chart has loaded 15
minutes of history at one frame per second (the most a freshly opened chart holds).

The data is made here, not sampled: a machine with 2 cores cannot run a 64-vCPU guest beside a host of 100
guests, and the browser cannot tell the difference. The frames have the collector's exact shape (one value
per vCPU and host CPU, every second) and go through the same path (history in Redis, then the channel layer
to the page's group); the collector and its path are measured by ``bench/stats.py``. The inventory rows are
made here too: a host of 64 CPUs (2 NUMA cells, 16 cores of 2 threads each) with 100 running guests, one of
them with 64 vCPUs, and as the baseline in the same run a host of 2 CPUs with one 1-vCPU guest.

Targets, per page in steady state: the work of one update (handler plus redraw) at p95 fits in one frame at
60 Hz (16.7 ms), and no long task. Printed with the ratio to the 1-vCPU baseline.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from common import (
    Deadline,
    bench_env,
    percentile,
    setup_django,
    start_daphne,
    start_redis,
    stop_process,
    viewer_session,
)

REDIS_PORT = 6398
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
HISTORY_SECONDS = 900
FRAME_BUDGET_MS = 1000 / 60
LONG_TASK_MS = 50.0
WIDE_VCPUS, BIG_HOST_CPUS, BIG_HOST_GUESTS = 64, 64, 100

# Installed in every page before its own scripts: time the websocket handler and every animation-frame
# callback the page schedules (its redraws), record long tasks and the gaps between animation frames.
PROBE = """
(() => {
  const probe = { handler: [], redraw: [], long: [], gaps: [] };
  window.__probe = probe;
  const setter = Object.getOwnPropertyDescriptor(WebSocket.prototype, "onmessage").set;
  Object.defineProperty(WebSocket.prototype, "onmessage", {
    configurable: true,
    set(fn) {
      setter.call(this, function (ev) {
        const t0 = performance.now();
        try { return fn.call(this, ev); } finally { probe.handler.push(performance.now() - t0); }
      });
    },
  });
  // A redraw's cost runs from its animation-frame callback until a task posted from it runs: that covers
  // the callback, the microtasks it queued (uPlot draws in one) and the frame's style, layout and paint.
  const raf = window.requestAnimationFrame.bind(window);
  window.requestAnimationFrame = (cb) => raf((ts) => {
    const t0 = performance.now();
    const done = new MessageChannel();
    done.port1.onmessage = () => probe.redraw.push(performance.now() - t0);
    try { cb(ts); } finally { done.port2.postMessage(0); }
  });
  let last = null;
  const tick = (ts) => { if (last !== null) { probe.gaps.push(ts - last); } last = ts; raf(tick); };
  raf(tick);
  new PerformanceObserver((list) => list.getEntries().forEach((e) => probe.long.push(e.duration)))
    .observe({ type: "longtask", buffered: true });
})();
"""


# --- inventory and data --------------------------------------------------------------------------------


def make_inventory() -> dict[str, Any]:
    """The big host (64 CPUs, 100 guests, one of them 64 vCPUs wide) and the baseline's small host."""
    from hosts.models import Domain, Host, HostCPU, NumaCell

    def host(name: str, cells: int, cores: int, threads: int, port: int) -> tuple[Host, list[int]]:
        row = Host.objects.create(name=name, uri=f"qemu+tcp://127.0.0.1:{port}/system", transport="tcp")
        cpus = []
        per_cell = cores * threads
        for c in range(cells):
            cell = NumaCell.objects.create(host=row, cell_id=c, memory_kib=64 << 20)
            for core in range(cores):
                ids = [c * per_cell + core + t * cores for t in range(threads)]
                for cpu_id in ids:
                    HostCPU.objects.create(
                        host=row,
                        cell=cell,
                        cpu_id=cpu_id,
                        socket_id=c,
                        core_id=core,
                        siblings=",".join(map(str, sorted(ids))),
                    )
                cpus += ids
        return row, sorted(cpus)

    def guest(host_row: Host, name: str, vcpus: int, pins: dict[int, str]) -> Domain:
        tuning = {
            "vcpupin": {str(n): pins.get(n, "0-1") for n in range(vcpus)},
            "emulatorpin": "0",
            "iothreadpin": {},
            "sched": {"cpu_shares": 1024, "vcpu_period": 100000, "vcpu_quota": -1},
        }
        return Domain.objects.create(
            host=host_row,
            uuid=uuid.uuid4(),
            name=name,
            state="running",
            vcpus_current=vcpus,
            vcpus_max=vcpus,
            tuning_live=tuning,
            tuning_config=tuning,
            affinity=tuning["vcpupin"],
        )

    big, big_cpus = host("big64", 2, 16, 2, 1)
    small, _ = host("small2", 1, 1, 2, 2)
    wide = guest(big, "wide64", WIDE_VCPUS, {n: str(big_cpus[n]) for n in range(WIDE_VCPUS)})
    for i in range(BIG_HOST_GUESTS - 1):
        first = big_cpus[2 + (2 * i) % (BIG_HOST_CPUS - 2)]
        guest(big, f"g{i:03d}", 2, {0: str(first), 1: str(first + 1)})
    narrow = guest(small, "narrow1", 1, {0: "1"})
    return {"big": big, "small": small, "wide": wide, "narrow": narrow, "big_cpus": big_cpus}


def guest_frame(t: float, vcpus: int, step: int) -> dict[str, Any]:
    load = [round(20 + 60 * ((n * 7 + step) % 13) / 12, 1) for n in range(vcpus)]
    return {
        "t": round(t, 3),
        "n": list(range(vcpus)),
        "v": load,
        "d": [round(v / 20, 1) for v in load],
        "o": 3.5,
        "g": round(sum(load) + 3.5, 1),
    }


def host_frame(t: float, cpus: list[int], step: int) -> dict[str, Any]:
    return {"t": round(t, 3), "i": cpus, "b": [round(10 + 80 * ((c * 5 + step) % 11) / 10, 1) for c in cpus]}


class Feed:
    """Fill each series' history, then push one frame per second to its group until stopped."""

    def __init__(self, series: list[tuple[str, int, Any]]) -> None:
        from hosts.live import push

        self.series = series  # (kind, object id, frame maker(t, step))
        self.publisher = push.Publisher()
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, name="feed", daemon=True)

    def prefill(self) -> None:
        from hosts.live import history

        now = time.time()
        pipe = history.client().pipeline(transaction=False)
        for kind, object_id, make in self.series:
            for step in range(HISTORY_SECONDS):
                t = now - HISTORY_SECONDS + step
                history.add(pipe, history.FULL, kind, object_id, history.dumps(make(t, step)), t)
        pipe.execute()

    def _run(self) -> None:
        from hosts.live import history, push

        step = HISTORY_SECONDS
        next_at = time.monotonic()
        while not self.stop.wait(max(0.0, next_at - time.monotonic())):
            t = time.time()
            pipe = history.client().pipeline(transaction=False)
            messages = []
            for kind, object_id, make in self.series:
                text = history.dumps(make(t, step))
                history.add(pipe, history.FULL, kind, object_id, text, t)
                messages.append((push.group_name(kind, object_id), push.frame_text(kind, object_id, text)))
            pipe.execute()
            self.publisher.send(messages)
            self.sent += 1
            step += 1
            next_at += 1.0

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        self.publisher.close()


# --- the browser ---------------------------------------------------------------------------------------


def measure_page(context: Any, url: str, window: str, seconds: float) -> dict[str, Any]:
    """Open ``url``, wait for the chart to draw its history, then record ``seconds`` of live updates."""
    page = context.new_page()
    try:
        opened = time.perf_counter()
        page.goto(url)
        page.wait_for_function("document.querySelector('[data-live-root]').dataset.rendered > 100", timeout=30000)
        first_draw_ms = (time.perf_counter() - opened) * 1000
        if window != "300":
            page.select_option("[data-window]", window)
        page.wait_for_timeout(3000)  # let the window change and the first live frames settle
        page.evaluate("for (const k of Object.keys(window.__probe)) { window.__probe[k].length = 0; }")
        page.wait_for_timeout(seconds * 1000)
        probe = page.evaluate("window.__probe")
        rendered = int(page.evaluate("document.querySelector('[data-live-root]').dataset.rendered"))
    finally:
        page.close()
    handler, redraw = probe["handler"], [ms for ms in probe["redraw"] if ms > 0.05]
    updates = len(handler)
    # One update's work: its handler plus the redraw it scheduled (paired in order; a burst shares one).
    work = [h + r for h, r in zip(handler, redraw, strict=False)]
    return {
        "url": url,
        "window": window,
        "updates": updates,
        "points": rendered,
        "first_draw_ms": first_draw_ms,
        "handler_p95": percentile(handler, 0.95),
        "redraw_p50": percentile(redraw, 0.5),
        "redraw_p95": percentile(redraw, 0.95),
        "work_p50": percentile(work, 0.5),
        "work_p95": percentile(work, 0.95),
        "work_max": max(work, default=float("nan")),
        "long_tasks": len(probe["long"]),
        "gap_p95": percentile(probe["gaps"], 0.95),
        "gaps_over_50": sum(1 for g in probe["gaps"] if g > 50),
        "frames": len(probe["gaps"]),
    }


def run(args: argparse.Namespace, var_dir: Path, env: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    from playwright.sync_api import sync_playwright

    from hosts.live import push

    deadline = Deadline(args.budget)
    rows = make_inventory()
    big_cpus = rows["big_cpus"]
    series = [
        (push.GUEST, rows["wide"].pk, lambda t, s: guest_frame(t, WIDE_VCPUS, s)),
        (push.HOST, rows["big"].pk, lambda t, s: host_frame(t, big_cpus, s)),
        (push.GUEST, rows["narrow"].pk, lambda t, s: guest_frame(t, 1, s)),
        (push.HOST, rows["small"].pk, lambda t, s: host_frame(t, [0, 1], s)),
    ]
    session = viewer_session()
    daphne, port = start_daphne(env)
    feed = Feed(series)
    results = []
    try:
        feed.prefill()
        feed.thread.start()
        base = f"http://127.0.0.1:{port}"
        pages = [
            ("guest, 64 vCPUs", f"/guests/{rows['wide'].pk}/", "300"),
            ("guest, 64 vCPUs, 15 min window", f"/guests/{rows['wide'].pk}/", "900"),
            ("host, 64 CPUs and 100 guests", f"/hosts/{rows['big'].pk}/", "300"),
            ("baseline: guest, 1 vCPU", f"/guests/{rows['narrow'].pk}/", "300"),
            ("baseline: host, 2 CPUs and 1 guest", f"/hosts/{rows['small'].pk}/", "300"),
        ]
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            try:
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                context.add_cookies([{"name": "sessionid", "value": session, "url": base}])
                context.add_init_script(PROBE)
                for label, path, window in pages:
                    deadline.check(label)
                    results.append((label, measure_page(context, base + path, window, args.seconds)))
                    print(f"measured {label}", flush=True)
            finally:
                browser.close()
    finally:
        feed.close()
        stop_process(daphne)
    return results


def report(results: list[tuple[str, dict[str, Any]]], seconds: int) -> bool:
    baseline = {"guest": results[3][1], "host": results[4][1]}
    header = (
        f"{'page':<34} {'upd':>4} {'points':>6} {'1st draw':>8} {'work p50':>8} {'p95':>6} {'max':>6} "
        f"{'x base':>6} {'long':>4} {'gap p95':>7} {'>50ms':>5}  ok"
    )
    print(header)
    print("-" * len(header))
    ok_all = True
    for label, r in results:
        base = baseline["host" if "host" in label else "guest"]
        ratio = r["work_p95"] / base["work_p95"] if base["work_p95"] else float("nan")
        # Every second's update must have arrived, or the page fell behind.
        ok = r["work_p95"] < FRAME_BUDGET_MS and r["long_tasks"] == 0 and r["updates"] >= 0.8 * seconds
        ok_all &= ok or label.startswith("baseline")
        print(
            f"{label:<34} {r['updates']:>4} {r['points']:>6} {r['first_draw_ms']:>6.0f}ms {r['work_p50']:>6.1f}ms "
            f"{r['work_p95']:>4.1f}ms {r['work_max']:>4.1f}ms {ratio:>5.1f}x {r['long_tasks']:>4} "
            f"{r['gap_p95']:>5.1f}ms {r['gaps_over_50']:>5}  {'PASS' if ok else 'FAIL'}"
        )
    print(
        "upd: live updates received while measuring; points: frames the chart draws; 1st draw: page opened -> chart "
        "drawn with its history;\nwork: one update's handler plus the redraw it scheduled (ms of the browser's main "
        f"thread); long: tasks over {LONG_TASK_MS:g} ms; gap: between animation frames.\n"
        f"Target per page: work p95 under one 60 Hz frame ({FRAME_BUDGET_MS:.1f} ms) and no long task."
    )
    return ok_all


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=40, help="seconds of live updates measured per page (40)")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds the whole run may take (600)")
    parser.add_argument("--json", action="store_true", help="also print the raw figures as JSON")
    args = parser.parse_args(argv)
    if not 5 <= args.seconds <= 120:
        parser.error("--seconds must be between 5 and 120")
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: run 'make setup' as root (it installs Debian's chromium)", file=sys.stderr)
        return 2
    var_dir = Path(tempfile.mkdtemp(prefix="isoweb-bench-browser-"))
    env = {**bench_env(var_dir, REDIS_PORT), "LOG_LEVEL": "WARNING"}
    redis = start_redis(REDIS_PORT, var_dir / "redis")
    try:
        setup_django(env)
        results = run(args, var_dir, env)
    finally:
        stop_process(redis)
        shutil.rmtree(var_dir, ignore_errors=True)
    print()
    ok = report(results, args.seconds)
    if args.json:
        print(json.dumps(dict(results), indent=1))
    print(f"\nverdict: {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
