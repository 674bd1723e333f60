"""Measure how isoweb grows from 10 to 30 libvirt hosts with about 600 guests (issue 12, item 6).

One run starts 30 small daemons of its own (ports ``--base-port`` up), each with ``--per-host`` tiny guests
that are defined and shut off, and starts one guest on every host whose index is 0 or 2 modulo 5 (running
guests are expensive on 2 cores; 4 of them at 10 hosts, 12 at 30). It then measures twice, with the first 10
hosts registered and with all 30, in the same run:

- a full sync of every registered host (the service beat's sync runs: reads in parallel, one transaction);
- the host list, a page of the guest list, a change request's page and their API equivalents: server time
  (Django's whole request path, in process, median of ``--repeat``) and database queries;
- a change request over 5 guests on each of 10 hosts, then on each of 20 (50 and 100 guests, scope config,
  the guests shut off), from the approval until the real Celery worker records it finished;
- the product's stats collector with every host and running guest watched: CPU time per guest-sample and per
  host tick (``time.process_time`` over the measured ticks).

It prints each figure at 10 and 30 hosts, the growth per unit (host or guest) and a verdict against the
targets: sync and apply no worse than linear, pages under 300 ms with the same query count at both sizes,
the collector under 2 ms of CPU per guest-sample. The whole run is bounded by ``--budget`` seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import (
    BenchError,
    Deadline,
    bench_env,
    log_tail,
    remove_fleet,
    run_in_sandbox,
    settle,
    start_redis,
    start_worker,
    stop_process,
    wait_for,
)

HOSTS_STEPS = (10, 30)
APPLY_HOSTS = {10: 10, 30: 20}  # hosts the change request spans at each step
APPLY_PER_HOST = 5
PAGE_TARGET_MS = 300.0
COLLECTOR_TARGET_MS = 2.0
LINEAR_SLACK = 1.25  # "no worse than linear": per-unit cost may grow by at most this factor
TERMINAL = ("applied", "partially_applied", "failed", "rejected", "rolled_back")


@dataclass
class Step:
    """Everything measured with ``hosts`` hosts registered."""

    hosts: int
    guests: int = 0
    running: int = 0
    sync_seconds: float = 0.0
    sync_queries: int = 0
    pages: dict[str, tuple[float, int]] = field(default_factory=dict)  # name -> (median ms, queries)
    apply_guests: int = 0
    apply_seconds: float = 0.0
    collector_ms_per_sample: float = 0.0
    collector_ms_per_host_tick: float = 0.0
    collector_samples: int = 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-port", type=int, default=16800, help="first daemon's port (30 ports used)")
    parser.add_argument("--redis-port", type=int, default=6396, help="the benchmark's own Redis")
    parser.add_argument("--per-host", type=int, default=20, choices=range(5, 41), metavar="5..40")
    parser.add_argument("--repeat", type=int, default=5, choices=range(1, 11), metavar="1..10")
    parser.add_argument("--collector-seconds", type=float, default=10.0, help="measured collector seconds")
    parser.add_argument("--budget", type=float, default=840.0, help="time budget of the whole run (s)")
    parser.add_argument("--prefix", default="isoscale", help="names of the fleet's daemons and guests")
    return parser.parse_args(argv)


# --- the fleet -----------------------------------------------------------------------------------------


def make_fleet(args: argparse.Namespace) -> Any:
    from hosts.harness.fleet import Fleet, GuestSpec

    specs = tuple(GuestSpec(f"g{n:02d}", vcpus=1, iothreads=0, autostart=False) for n in range(args.per_host))
    return Fleet(
        prefix=args.prefix,
        hosts=max(HOSTS_STEPS),
        base_port=args.base_port,
        state_dir=Path(__file__).resolve().parent.parent / "var" / f"fleet-{args.prefix}",
        guests=specs,
        burner_on=(),
    )


def runs_a_guest(index: int) -> bool:
    return index % 5 in (0, 2)


def start_some_guests(fleet: Any) -> list[str]:
    from hosts.harness.guests import start_if_stopped

    uris = []
    for member in fleet.members:
        if runs_a_guest(member.index):
            start_if_stopped(member.uri, member.guest_names[0])
            uris.append(member.uri)
    return uris


# --- measurements --------------------------------------------------------------------------------------


def register(fleet: Any, count: int, host_ids: dict[int, int]) -> None:
    from hosts.inventory import create_host

    for member in fleet.members[:count]:
        if member.index not in host_ids:
            host_ids[member.index] = create_host(name=member.name, uri=member.uri, actor=None).pk


def full_sync(host_ids: list[int], repeat: int) -> tuple[float, int]:
    """Median seconds and queries of one sync of every host (all hosts read at once, stored together)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from hosts.inventory import sync_hosts

    times, queries = [], []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            results = sync_hosts(host_ids)
            times.append(time.perf_counter() - started)
        queries.append(len(captured))
        failed = [r.error for r in results if not r.ok]
        if failed:
            raise BenchError(f"sync failed: {failed[:3]}")
    return statistics.median(times), int(statistics.median(queries))


def time_pages(paths: dict[str, str], repeat: int) -> dict[str, tuple[float, int]]:
    """Median server time (ms) and query count of each page, requested in process as a viewer."""
    from django.contrib.auth.models import User
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from hosts.roles import VIEWER, ensure_role_groups

    user = User.objects.filter(username="scale-viewer").first() or User.objects.create_user("scale-viewer")
    user.groups.add(ensure_role_groups()[VIEWER])
    client = Client(HTTP_HOST="localhost")  # a name in the default ALLOWED_HOSTS
    client.force_login(user)
    out = {}
    for name, path in paths.items():
        client.get(path)  # warm: templates compiled, caches filled
        times, queries = [], []
        for _ in range(repeat):
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = client.get(path)
                times.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise BenchError(f"{path} answered {response.status_code}")
            queries.append(len(captured))
        out[name] = (statistics.median(times), max(queries))
    return out


def apply_change(
    fleet: Any, host_ids: dict[int, int], hosts: int, quota: int, timeout: float
) -> tuple[int, float, int]:
    """Approve a config change over APPLY_PER_HOST shut-off guests on each of ``hosts`` hosts; return the
    guest count, the seconds from approval until the worker finished it, and the request's id."""
    from django.contrib.auth.models import User

    from hosts.changes.requests import approve_change_request, create_change_request
    from hosts.models import ChangeRequest, Domain
    from hosts.planning.profiles import create_profile

    requester = User.objects.get_or_create(username="scale-requester")[0]
    approver = User.objects.get_or_create(username="scale-approver")[0]
    profile = create_profile(
        name=f"scale-{quota}",
        description="bench/scale.py",
        content={"sched": {"vcpu_period": 100000, "vcpu_quota": quota}},
        actor=requester,
    )
    domains = []
    for member in fleet.members[:hosts]:
        names = member.guest_names[-APPLY_PER_HOST:]  # never the running guest (g00)
        domains += list(
            Domain.objects.filter(host_id=host_ids[member.index], name__in=names).values_list("pk", flat=True)
        )
    cr = create_change_request(
        revision=profile.revisions.get(), domain_ids=domains, scope="config", reason="bench/scale.py", actor=requester
    )
    approved = time.time()
    approve_change_request(cr.pk, comment="bench", actor=approver)
    end = time.monotonic() + timeout
    status = ""
    while time.monotonic() < end:
        status = ChangeRequest.objects.filter(pk=cr.pk).values_list("status", flat=True).get()
        if status in TERMINAL:
            break
        time.sleep(0.1)
    cr.refresh_from_db()
    if status != "applied" or cr.finished_at is None:
        raise BenchError(f"CR-{cr.pk} over {len(domains)} guests is {status or cr.status}: {cr.status_message}")
    return len(domains), cr.finished_at.timestamp() - approved, cr.pk


def collector_cost(host_ids: list[int], seconds: float) -> tuple[float, float, int]:
    """Run the product's collector with every host and running guest watched; return ms of CPU per
    guest-sample, per host tick, and the guest-samples measured."""
    from hosts.live import push
    from hosts.live.collector import Collector, TickResult
    from hosts.models import Domain

    running = list(Domain.objects.filter(host_id__in=host_ids, state="running").values_list("pk", flat=True))
    ticks: list[TickResult] = []
    lock = threading.Lock()

    def seen(_host: int, result: TickResult) -> None:
        with lock:
            ticks.append(result)

    stop = threading.Event()

    def keep_watching() -> None:
        while not stop.is_set():
            push.mark_watched([(push.HOST, pk) for pk in host_ids] + [(push.GUEST, pk) for pk in running])
            stop.wait(1)

    collector = Collector(interval=1.0, on_tick=seen)
    threads = [threading.Thread(target=keep_watching, name="watch"), threading.Thread(target=collector.run)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(ticks) >= 2 * len(host_ids), 60, "the collector's first ticks")
        with lock:
            first = len(ticks)
        cpu_start = time.process_time()
        time.sleep(seconds)
        cpu = time.process_time() - cpu_start
        with lock:
            measured = [r for r in ticks[first:] if not r.error]
    finally:
        collector.stop()
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    samples = sum(r.guests for r in measured)
    if not measured or not samples:
        raise BenchError("the collector measured no guest")
    return cpu * 1000 / samples, cpu * 1000 / len(measured), samples


# --- the run -------------------------------------------------------------------------------------------


def measure_step(
    fleet: Any, hosts: int, host_ids: dict[int, int], args: argparse.Namespace, deadline: Deadline
) -> Step:
    from hosts.models import Domain

    step = Step(hosts)
    register(fleet, hosts, host_ids)
    ids = [host_ids[i] for i in range(hosts)]
    deadline.check(f"the sync at {hosts} hosts")
    step.sync_seconds, step.sync_queries = full_sync(ids, max(2, args.repeat // 2))
    step.guests = Domain.objects.filter(host_id__in=ids).count()
    step.running = Domain.objects.filter(host_id__in=ids, state="running").count()
    print(f"{hosts} hosts: {step.guests} guests ({step.running} running), full sync {step.sync_seconds:.2f} s")

    deadline.check(f"the change request at {hosts} hosts")
    quota = 40000 + hosts * 100
    step.apply_guests, step.apply_seconds, cr_id = apply_change(
        fleet, host_ids, APPLY_HOSTS[hosts], quota, timeout=min(300.0, deadline.end - time.monotonic())
    )
    print(f"{hosts} hosts: change over {step.apply_guests} guests applied in {step.apply_seconds:.2f} s")

    deadline.check(f"the pages at {hosts} hosts")
    step.pages = time_pages(
        {
            "host list": "/",
            "guest list, page 2": "/guests/?page=2",
            "change request": f"/changes/{cr_id}/",
            "API hosts": "/api/hosts/",
            "API guests, 100 from 100": "/api/domains/?limit=100&offset=100",
            "API change request": f"/api/change-requests/{cr_id}/",
        },
        args.repeat,
    )

    deadline.check(f"the collector at {hosts} hosts")
    step.collector_ms_per_sample, step.collector_ms_per_host_tick, step.collector_samples = collector_cost(
        ids, args.collector_seconds
    )
    print(f"{hosts} hosts: collector {step.collector_ms_per_sample:.2f} ms CPU per guest-sample")
    return step


def _growth(small: float, large: float, units_small: float, units_large: float) -> float:
    """How much the cost per unit grew (1.0 = exactly linear, below = better than linear)."""
    return (large / units_large) / (small / units_small) if small and units_small else float("nan")


def report(steps: list[Step]) -> bool:
    small, large = steps
    ok = True
    print()
    print(f"{'measure':<34}{small.hosts:>4} hosts{large.hosts:>10} hosts   growth per unit   verdict")
    sync_growth = _growth(small.sync_seconds, large.sync_seconds, small.guests, large.guests)
    verdict = sync_growth <= LINEAR_SLACK
    ok &= verdict
    print(
        f"{'full sync of every host (s)':<34}{small.sync_seconds:>10.2f}{large.sync_seconds:>16.2f}"
        f"   x{sync_growth:.2f} per guest     {'ok' if verdict else 'WORSE than linear'}"
    )
    print(f"{'  queries of that sync':<34}{small.sync_queries:>10}{large.sync_queries:>16}")
    apply_growth = _growth(small.apply_seconds, large.apply_seconds, small.apply_guests, large.apply_guests)
    verdict = apply_growth <= LINEAR_SLACK
    ok &= verdict
    label = f"apply {small.apply_guests} / {large.apply_guests} guests (s)"
    print(
        f"{label:<34}{small.apply_seconds:>10.2f}{large.apply_seconds:>16.2f}"
        f"   x{apply_growth:.2f} per guest     {'ok' if verdict else 'WORSE than linear'}"
    )
    for name, (ms_small, q_small) in small.pages.items():
        ms_large, q_large = large.pages[name]
        verdict = ms_large < PAGE_TARGET_MS and ms_small < PAGE_TARGET_MS and q_small == q_large
        ok &= verdict
        why = "ok" if verdict else ("queries grow" if q_small != q_large else f"over {PAGE_TARGET_MS:.0f} ms")
        print(
            f"{name + ' (ms, queries)':<34}{ms_small:>6.0f} {q_small:>3}{ms_large:>12.0f} {q_large:>3}"
            f"   x{ms_large / ms_small:.2f} per page      {why}"
        )
    for step in steps:
        verdict = step.collector_ms_per_sample < COLLECTOR_TARGET_MS
        ok &= verdict
    print(
        f"{'collector ms CPU / guest-sample':<34}{small.collector_ms_per_sample:>10.2f}"
        f"{large.collector_ms_per_sample:>16.2f}   target < {COLLECTOR_TARGET_MS:g}        "
        f"{'ok' if all(s.collector_ms_per_sample < COLLECTOR_TARGET_MS for s in steps) else 'OVER'}"
    )
    tick_growth = large.collector_ms_per_host_tick / small.collector_ms_per_host_tick
    print(
        f"{'collector ms CPU / host tick':<34}{small.collector_ms_per_host_tick:>10.2f}"
        f"{large.collector_ms_per_host_tick:>16.2f}   x{tick_growth:.2f} per host tick"
    )
    print(f"({small.running} and {large.running} running guests; {small.guests} and {large.guests} guests in all)")
    return ok


def run(args: argparse.Namespace, var_dir: Path, outcome: list[bool]) -> None:
    deadline = Deadline(args.budget)
    fleet = make_fleet(args)
    redis = worker = None
    try:
        redis = start_redis(args.redis_port, var_dir / "redis")
        started = time.monotonic()
        fleet.up()
        running = start_some_guests(fleet)
        print(f"{len(fleet.members)} daemons up with {args.per_host} guests each in {time.monotonic() - started:.0f} s")
        settle(running, deadline)
        log_path = var_dir / "worker.log"
        worker = start_worker(bench_env(var_dir, args.redis_port), 2, log_path, "scale")
        host_ids: dict[int, int] = {}
        steps = []
        for hosts in HOSTS_STEPS:
            try:
                steps.append(measure_step(fleet, hosts, host_ids, args, deadline))
            except BenchError as exc:
                raise BenchError(f"{exc}\nworker log:\n{log_tail(log_path)}") from exc
        outcome.append(report(steps))
    finally:
        stop_process(worker)
        remove_fleet(fleet)
        stop_process(redis)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    outcome: list[bool] = []
    started = time.monotonic()
    error = run_in_sandbox("isoweb-scale-", lambda var_dir: run(args, var_dir, outcome), redis_port=args.redis_port)
    print(f"whole run: {time.monotonic() - started:.0f} s")
    if error:
        print(f"bench/scale.py failed: {error}", file=sys.stderr)
        return 1
    return 0 if outcome and outcome[0] else 2


if __name__ == "__main__":
    sys.exit(main())
