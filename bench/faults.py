"""Measure whether one bad host stalls the others: the same fleet with no fault and with a hung and a black-hole host.

One run, two sides, on the benchmark's own fleet (``isofault``, ports 16771-16774, ``--guests`` tiny guests
per host), its own Redis (port 6399) and throwaway SQLite database, with the product's real parts: a Celery
worker (``--concurrency``, 4 as in the Procfile) and beat in processes of their own, Daphne, and the
product's :class:`hosts.live.collector.Collector` running in this process (one thread per host, as
``manage.py collect_stats`` runs it). Hosts 1-3 are the healthy hosts every figure is about; host 4 is the
one whose daemon will hang.

- Side A, no fault: the four hosts as they are.
- Side B, faults: host 4's libvirtd under SIGSTOP (it keeps its sockets and never answers: a deadlocked or
  overloaded daemon) and, at the same moment, a black-hole host registered (a loopback port, 16775, that
  accepts TCP and never sends a byte: a URI pointing at some other service).

Per side, for the healthy hosts:

- sync interval: beat queues a sync of every host every ``--sync-interval`` seconds (5 here instead of the
  product's 30, so a window holds enough of them); the figure is the time between consecutive
  ``last_sync_at`` values of each healthy host, polled every 0.2 s over a ``--window`` that has no apply in
  it (an apply syncs its hosts too). On side B the window starts at the fault, so it holds the moments
  when the worker first meets the bad hosts; the same figure after both are marked unresponsive is shown
  apart.
- approve -> applied: change requests touching every guest of the healthy hosts and one guest of host 4,
  planned before the side's window (on side B before the fault: a guest of a host already marked down
  cannot be requested), approved one after the other after the window; the figure runs from
  ``approve_change_request`` returning to the latest ``finished_at`` of the healthy hosts' guests (each is
  written, read back and verified by then). Both the median and the worst run are judged: a stall that
  hits one approval in three is what the issue is about. Side A's first request is an untimed warm-up. On side B the
  request must end ``partially_applied`` with host 4's guest failed, and that guest's live tuning must be
  unchanged once its daemon is continued.
- chart latency: a client process opens a websocket (through Daphne) on every host's and guest's chart,
  so every host is sampled each second; the figure is from the sample's wall time (taken just before the
  libvirt call) to the frame's arrival in the client, p50/p95 over the healthy hosts' frames sampled in the
  window. The collector's own hand-over (sample -> frames sent to the channel layer) and the largest gap
  between a healthy host's ticks are shown too.

Target: each healthy-host figure on side B within 1.25x of side A's, and each bad host marked unresponsive
in the inventory within the open deadline + 1 s of the first sync attempt that reaches it. For the black
hole that attempt is exact (its first connection accepted from another process than this one, i.e. a
worker, not this process's collector); for the hung daemon it is the first beat sync after SIGSTOP, taken
as the earliest start (``last_sync_at - sync_seconds``) of a healthy host's sync after it (an upper bound
of the figure). The product's deadlines are used as they are (the ``ISOWEB_LIBVIRT_*``/``ISOWEB_STATS_TIMEOUT``
variables are removed from the environment) and printed. Every wait is bounded, the whole run by
``--budget``; every process is stopped by pid, the daemon continued and the fleet removed in any case.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run by path: the project's packages are one level up
    sys.path.insert(0, str(REPO_ROOT))

from common import (  # noqa: E402
    BenchError,
    Deadline,
    add_repeat_argument,
    bench_env,
    bench_fleet,
    celery_process,
    log_tail,
    percentile,
    port_answers,
    remove_fleet,
    run_in_sandbox,
    settle,
    start_daphne,
    start_redis,
    start_worker,
    stop_process,
    trim_guests,
    viewer_session,
    virsh,
    ws_messages,
    ws_open,
)

FLEET_PREFIX, FLEET_BASE_PORT = "isofault", 16771
HOSTS = 4  # hosts 1-3 stay healthy; host 4's daemon is stopped on side B
HUNG = HOSTS - 1  # index of the host whose daemon is stopped
BLACK_HOLE_PORT = FLEET_BASE_PORT + HOSTS  # 16775
REDIS_PORT = 6399
RATIO_TARGET = 1.25  # side B's healthy-host figures at most this many times side A's
DETECT_SLACK = 1.0  # marked unresponsive within the open deadline + this, from the first attempt
MAX_GUESTS_PER_HOST = 10
CHART_WARMUP = 5.0  # seconds for the sockets to open, load their history and mark the hosts watched
POLL_SECONDS = 0.2  # the inventory poll during a window
APPLY_POLL_SECONDS = 0.05  # looking for a request's end (not part of its time: finished_at is the worker's)
RECOVERY_WAIT = 30.0  # informational: host 4 shown up again after SIGCONT, waited for at most this long
# The product's own deadlines are measured: none of these may come from the caller's environment.
DEADLINE_VARIABLES = (
    "ISOWEB_LIBVIRT_OPEN_TIMEOUT",
    "ISOWEB_LIBVIRT_CALL_TIMEOUT",
    "ISOWEB_LIBVIRT_PER_GUEST_TIMEOUT",
    "ISOWEB_LIBVIRT_KEEPALIVE_INTERVAL",
    "ISOWEB_LIBVIRT_KEEPALIVE_COUNT",
    "ISOWEB_STATS_TIMEOUT",
)
TERMINAL = ("applied", "partially_applied", "failed", "rejected", "rolled_back")
# Three value sets, so requests planned together from one state can each change something: every request
# of a side uses a set other than the one the guests hold, and never the same set twice in a row.
VALUE_SETS = (
    {"emulatorpin": {"strategy": "housekeeping"}, "sched": {"vcpu_period": 100000, "vcpu_quota": 50000}},
    {"emulatorpin": {"strategy": "cpulist", "cpus": "0-1"}, "sched": {"vcpu_period": 100000, "vcpu_quota": 60000}},
    {"emulatorpin": {"strategy": "housekeeping"}, "sched": {"vcpu_period": 100000, "vcpu_quota": 70000}},
)
HOUSEKEEPING_CPUS = "0"  # lets the emulators share CPU 0 (see bench/apply.py)


# --- the black hole -------------------------------------------------------------------------------------


def _opened_by_this_process(peer_port: int, listen_port: int) -> bool:
    """Whether the client end of a loopback connection (its port ``peer_port``) is a socket of this process."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    inode = ""
    for line in lines:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == peer_port and int(fields[2].split(":")[1], 16) == listen_port:
            inode = fields[9]
            break
    if not inode:
        return False
    wanted = f"socket:[{inode}]"
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == wanted:
                return True
    return False


class BlackHole:
    """A loopback TCP port that accepts connections and never sends a byte; notes when each came and whether
    from this process (the collector) or another (a worker)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.accepts: list[tuple[float, bool]] = []  # (time.time(), opened by this process)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="black-hole", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, (_addr, peer_port) = self.sock.accept()
            except OSError:
                continue
            at = time.time()
            self._held.append(conn)  # kept open, never answered
            self.accepts.append((at, _opened_by_this_process(peer_port, self.port)))

    def first_from_elsewhere(self) -> float | None:
        return next((at for at, here in self.accepts if not here), None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self.sock.close()


# --- results --------------------------------------------------------------------------------------------


@dataclass
class ApplyRun:
    healthy: float  # approve returned -> last healthy guest recorded (verified)
    total: float  # approve returned -> request finished
    status: str
    hung_target: str  # host 4's guest: status and error
    pickup: float  # approve returned -> a worker claimed the request (its started_at)
    replan: float  # claimed -> the first healthy guest snapshotted (the re-plan's read of every host it reads)


@dataclass
class Detection:
    name: str
    fault_at: float  # time.time() of SIGSTOP / registration
    attempt_at: float | None = None  # the first sync attempt that reached it
    attempt_how: str = ""
    unresponsive_at: float | None = None  # its status_since once the inventory says unresponsive
    error: str = ""

    @property
    def from_fault(self) -> float:
        return self.unresponsive_at - self.fault_at if self.unresponsive_at else float("nan")

    @property
    def from_attempt(self) -> float:
        if self.unresponsive_at is None or self.attempt_at is None:
            return float("nan")
        return self.unresponsive_at - self.attempt_at


@dataclass
class Side:
    name: str
    intervals: list[float] = field(default_factory=list)  # healthy hosts, the whole window
    intervals_after: list[float] = field(default_factory=list)  # side B: once both bad hosts are marked
    latencies: list[float] = field(default_factory=list)  # ms, sample -> websocket frame, healthy hosts
    handover: list[float] = field(default_factory=list)  # ms, sample -> sent to the channel layer
    max_gap: float = float("nan")  # s, largest gap between a healthy host's successful collector ticks
    frames_other: int = 0  # frames of host 4 received in the window
    applies: list[ApplyRun] = field(default_factory=list)
    not_up: int = 0  # polls that found a healthy host not up
    problems: list[str] = field(default_factory=list)

    def apply_median(self) -> float:
        values = [run.healthy for run in self.applies if run.healthy == run.healthy]
        return statistics.median(values) if values else float("nan")

    def apply_worst(self) -> float:
        values = [run.healthy for run in self.applies]
        return max(values) if values else float("nan")

    def total_median(self) -> float:
        values = [run.total for run in self.applies if run.total == run.total]
        return statistics.median(values) if values else float("nan")


@dataclass
class Report:
    deadlines: dict[str, float] = field(default_factory=dict)
    sides: list[Side] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)
    unchanged: str = ""
    recovery: str = ""


@dataclass
class State:
    requester: Any = None
    approver: Any = None
    host_ids: list[int] = field(default_factory=list)  # by fleet index
    healthy_domains: list[int] = field(default_factory=list)
    hung_domain: int = 0
    hung_guest: str = ""
    charts: list[str] = field(default_factory=list)  # websocket paths of every fleet host and guest
    healthy_charts: set[tuple[str, int]] = field(default_factory=set)  # (kind, id) of the healthy hosts
    revisions: list[Any] = field(default_factory=list)
    current: int = -1  # VALUE_SETS index the guests hold (-1: none of them)

    @property
    def healthy_hosts(self) -> list[int]:
        return self.host_ids[:HUNG]

    @property
    def hung_host(self) -> int:
        return self.host_ids[HUNG]

    def rotation(self, count: int) -> list[int]:
        return [(self.current + 1 + k % 2) % len(VALUE_SETS) for k in range(count)]


# --- arguments and processes ----------------------------------------------------------------------------


def _bounded(low: float, high: float, kind: type = float) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}")
        return value

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guests", type=_bounded(1, MAX_GUESTS_PER_HOST, int), default=3, help="guests per host (3)")
    parser.add_argument("--window", type=_bounded(25, 180), default=40.0, help="seconds of each side's window (40)")
    parser.add_argument(
        "--sync-interval", type=_bounded(2, 30, int), default=5, help="ISOWEB_SYNC_INTERVAL for beat (5)"
    )
    parser.add_argument("--concurrency", type=_bounded(2, 8, int), default=4, help="Celery worker processes (4)")
    parser.add_argument("--apply-timeout", type=_bounded(10, 600), default=120.0, help="seconds one apply may take")
    parser.add_argument("--budget", type=_bounded(60, 3600), default=900.0, help="seconds for the whole run (900)")
    add_repeat_argument(parser)
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--cookie", help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def start_beat(env: dict[str, str], var_dir: Path, log_path: Path) -> subprocess.Popen[bytes]:
    schedule = str(var_dir / "celerybeat-schedule")
    proc = celery_process(
        ["-m", "celery", "-A", "isoweb", "beat", "--loglevel", "INFO", "--schedule", schedule], env, log_path
    )
    time.sleep(2)
    if proc.poll() is not None:
        raise BenchError(f"Celery beat exited at start:\n{log_tail(log_path)}")
    return proc


# --- the chart client (its own process, so its work is not the collector's) ------------------------------


def client_main(args: argparse.Namespace) -> int:
    """Open every chart's websocket for ``--seconds``; print each frame as [kind, id, sampled, received]."""
    frames: list[tuple[str, int, float, float]] = []
    lock = threading.Lock()
    until = time.time() + args.seconds

    def watch(path: str) -> None:
        try:
            sock, rest = ws_open(args.port, path, args.cookie)
        except (OSError, RuntimeError) as exc:
            print(f"chart client: {path}: {exc}", file=sys.stderr)
            return
        with sock:
            for received, text in ws_messages(sock, rest, until):
                message = json.loads(text)
                if message.get("type") == "frame":
                    with lock:
                        frames.append((message["kind"], int(message["id"]), message["frame"]["t"], received))

    threads = [threading.Thread(target=watch, args=(p,), daemon=True) for p in args.paths.split(",")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(args.seconds + 10)
    print(json.dumps(frames))
    return 0


def start_client(port: int, cookie: str, paths: list[str], seconds: float) -> subprocess.Popen[bytes]:
    args = ["--client", "--port", str(port), "--cookie", cookie, "--paths", ",".join(paths), "--seconds", str(seconds)]
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )


# --- setting up -----------------------------------------------------------------------------------------


def setup_state(fleet: Any) -> State:
    from django.contrib.auth.models import User

    from hosts.inventory import create_host, set_host_partition, sync_host
    from hosts.models import Domain
    from hosts.planning.profiles import create_profile

    state = State()
    state.requester = User.objects.create_user("isofault-requester")
    state.approver = User.objects.create_user("isofault-approver")
    for member in fleet.members:
        host = create_host(name=member.name, uri=member.uri, actor=None)
        result = sync_host(host.pk)
        if not result.ok:
            raise BenchError(f"sync of {member.name} failed: {result.error}")
        set_host_partition(host.pk, housekeeping_cpus=HOUSEKEEPING_CPUS, actor=None)
        state.host_ids.append(host.pk)
        rows = list(Domain.objects.filter(host_id=host.pk, state=Domain.State.RUNNING).order_by("name"))
        if [row.name for row in rows] != sorted(member.guest_names):
            raise BenchError(f"{member.name} runs {[row.name for row in rows]}, expected {member.guest_names}")
        state.charts.append(f"/ws/hosts/{host.pk}/")
        state.charts += [f"/ws/guests/{row.pk}/" for row in rows]
        if member.index == HUNG:
            state.hung_domain, state.hung_guest = rows[0].pk, rows[0].name
        else:
            state.healthy_domains += [row.pk for row in rows]
            state.healthy_charts.add(("host", host.pk))
            state.healthy_charts |= {("guest", row.pk) for row in rows}
    for n, content in enumerate(VALUE_SETS):
        profile = create_profile(
            name=f"fault-{n}", description="bench/faults.py", content=content, actor=state.requester
        )
        state.revisions.append(profile.revisions.get())
    return state


def plan_requests(state: State, count: int, side: str) -> list[Any]:
    """Plan ``count`` requests for every healthy guest and one guest of host 4, pending approval."""
    from django.core.exceptions import ValidationError

    from hosts.changes.requests import create_change_request

    requests = []
    for n, index in enumerate(state.rotation(count)):
        try:
            cr = create_change_request(
                revision=state.revisions[index],
                domain_ids=[*state.healthy_domains, state.hung_domain],
                scope="live",
                reason=f"bench/faults.py side {side} #{n + 1}",
                actor=state.requester,
            )
        except ValidationError as exc:
            raise BenchError(f"isoweb refused the change request: {'; '.join(exc.messages)[:1500]}") from exc
        requests.append((cr, index))
    return requests


# --- measuring ------------------------------------------------------------------------------------------


def _ts(value: Any) -> float:
    return value.timestamp() if value is not None else float("nan")


def watch_window(state: State, seconds: float, side: Side, detections: dict[int, Detection]) -> list[float]:
    """Poll the inventory for ``seconds``: healthy hosts' syncs (into ``side``) and the bad hosts' status.

    Returns the healthy syncs' start times (``last_sync_at - sync_seconds``), for the hung host's attempt.
    """
    from hosts.models import Host

    seen: dict[int, list[float]] = {pk: [] for pk in state.healthy_hosts}
    starts: list[float] = []
    wanted = [*state.host_ids, *detections]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rows = Host.objects.filter(pk__in=wanted).values_list(
            "pk", "last_sync_at", "sync_seconds", "status", "status_since", "last_error"
        )
        for pk, last, sync_seconds, status, since, error in rows:
            if pk in seen:
                if last is not None and (not seen[pk] or seen[pk][-1] != last.timestamp()):
                    seen[pk].append(last.timestamp())
                    starts.append(last.timestamp() - (sync_seconds or 0.0))
                if status != Host.Status.UP:
                    side.not_up += 1
            elif pk in detections and detections[pk].unresponsive_at is None and status == Host.Status.UNRESPONSIVE:
                detections[pk].unresponsive_at, detections[pk].error = _ts(since), error
        time.sleep(POLL_SECONDS)
    marked = [d.unresponsive_at for d in detections.values()]
    after = max(marked) if marked and None not in marked else None  # type: ignore[type-var]
    for times in seen.values():
        for a, b in itertools.pairwise(times):
            side.intervals.append(b - a)
            if after is not None and a >= after:
                side.intervals_after.append(b - a)
    return starts


def apply_one(state: State, cr: Any, timeout: float, faults: bool, side: Side) -> ApplyRun:
    """Approve one planned request and wait for its end; check it ended as the side expects."""
    from hosts.changes.requests import approve_change_request
    from hosts.models import ChangeRequest, ChangeTarget

    approve_change_request(cr.pk, comment="bench", actor=state.approver)
    approved = time.time()
    end = time.monotonic() + timeout
    status = ""
    while time.monotonic() < end:
        status = ChangeRequest.objects.filter(pk=cr.pk).values_list("status", flat=True).get()
        if status in TERMINAL:
            break
        time.sleep(APPLY_POLL_SECONDS)
    cr.refresh_from_db()
    targets = list(cr.targets.all())
    healthy = [t for t in targets if t.host_id in state.healthy_hosts]
    hung = next(t for t in targets if t.host_id == state.hung_host)
    run = ApplyRun(
        healthy=max(_ts(t.finished_at) for t in healthy) - approved,
        total=_ts(cr.finished_at) - approved,
        status=cr.status,
        hung_target=f"{hung.status}: {hung.error}" if hung.error else hung.status,
        pickup=_ts(cr.started_at) - approved,
        replan=min(_ts(t.started_at) for t in healthy) - _ts(cr.started_at),
    )
    expected = "partially_applied" if faults else "applied"
    if cr.status != expected:
        side.problems.append(f"CR-{cr.pk} ended {cr.status or 'nowhere'} ({cr.status_message}), expected {expected}")
    not_applied = [f"{t.domain_name} {t.status} {t.error}" for t in healthy if t.status != ChangeTarget.Status.APPLIED]
    if not_applied:
        side.problems.append(f"CR-{cr.pk}: healthy guests not applied: {'; '.join(not_applied)[:500]}")
    if faults and not (hung.status == ChangeTarget.Status.FAILED and "not changed" in hung.error):
        side.problems.append(f"CR-{cr.pk}: {hung.domain_name} on the hung host is {run.hung_target}")
    return run


def live_quota(uri: str, guest: str) -> str:
    for line in virsh(uri, ("schedinfo", guest, "--live"), 30).splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "vcpu_quota":
            return value.strip()
    return "?"


def run_side(
    name: str,
    faults: bool,
    ctx: dict[str, Any],
    args: argparse.Namespace,
    report: Report,
    deadline: Deadline,
) -> Side:
    """One side: plan the requests, open the charts, (inject the faults,) watch the window, then apply."""
    from hosts.inventory import create_host

    state: State = ctx["state"]
    side = Side(name)
    report.sides.append(side)
    deadline.check(f"side {name}")
    requests = plan_requests(state, args.repeat + (0 if faults else 1), name)
    quota_before = live_quota(ctx["fleet"].host(HUNG).uri, state.hung_guest) if faults else ""

    client = start_client(ctx["port"], ctx["cookie"], state.charts, CHART_WARMUP + args.window + 3)
    ticks: list[tuple[int, float, Any]] = ctx["ticks"]
    try:
        time.sleep(CHART_WARMUP)
        started, first_tick = time.time(), len(ticks)
        detections: dict[int, Detection] = {}
        if faults:
            pid = ctx["fleet"].host(HUNG).pid()
            if pid is None:
                raise BenchError("host 4's libvirtd is not running")
            os.kill(pid, signal.SIGSTOP)
            ctx["stopped"] = pid
            hung = Detection(f"{ctx['fleet'].host(HUNG).name} (SIGSTOP)", time.time())
            ctx["hole"] = BlackHole(BLACK_HOLE_PORT)
            hole_host = create_host(
                name=f"{FLEET_PREFIX}-blackhole", uri=f"qemu+tcp://127.0.0.1:{BLACK_HOLE_PORT}/system", actor=None
            )
            hole = Detection(f"{hole_host.name} (black hole)", time.time())
            detections = {state.hung_host: hung, hole_host.pk: hole}
            print(f"side {name}: daemon of host 4 (pid {pid}) stopped, black hole registered", flush=True)
        starts = watch_window(state, args.window, side, detections)
        ended = time.time()
        out, _ = client.communicate(timeout=args.window + 60)
    finally:
        stop_process(client)
    frames = json.loads(out or b"[]")
    for kind, object_id, sampled, received in frames:
        if started <= sampled <= ended:
            if (kind, object_id) in state.healthy_charts:
                side.latencies.append((received - sampled) * 1000)
            else:
                side.frames_other += 1
    healthy = set(state.healthy_hosts)
    good: dict[int, list[float]] = {pk: [] for pk in healthy}
    for host_id, at, result in ticks[first_tick:]:
        if host_id in healthy and not result.error and started <= result.sample_wall <= ended:
            good[host_id].append(at)
            side.handover.append((at - result.sample_wall) * 1000)
    gaps = [b - a for times in good.values() for a, b in itertools.pairwise(times)]
    side.max_gap = max(gaps) if gaps else float("nan")
    if faults:
        hung, hole = detections[state.hung_host], next(d for pk, d in detections.items() if pk != state.hung_host)
        hung.attempt_at = min((s for s in starts if s >= hung.fault_at), default=None)
        hung.attempt_how = "first beat sync after SIGSTOP (est.)"
        hole.attempt_at = ctx["hole"].first_from_elsewhere()
        hole.attempt_how = "first connection from a worker"
        report.detections = [hung, hole]
        if any(d.unresponsive_at is None for d in (hung, hole)):
            side.problems.append("a bad host was not marked unresponsive within the window")

    for n, (cr, index) in enumerate(requests):
        deadline.check(f"apply {n + 1} of side {name}")
        run = apply_one(state, cr, args.apply_timeout, faults, side)
        if run.status in ("applied", "partially_applied"):
            state.current = index
        if not faults and n == 0:
            print(f"side {name}: warm-up apply {run.healthy:.3f} s (not counted)", flush=True)
            continue
        side.applies.append(run)
        if run.status not in TERMINAL:
            break  # the request is still applying: the next one would wait for its hosts
    spread = ", ".join(f"{run.healthy:.3f}" for run in side.applies)
    print(f"side {name}: approve -> healthy guests applied {spread} s", flush=True)
    if ctx["worker"].poll() is not None:
        raise BenchError(f"the Celery worker died:\n{log_tail(ctx['worker_log'])}")

    if faults:
        os.kill(ctx["stopped"], signal.SIGCONT)
        continued = time.monotonic()
        ctx["stopped"] = None
        after = live_quota(ctx["fleet"].host(HUNG).uri, state.hung_guest)
        report.unchanged = f"{state.hung_guest} vcpu_quota {quota_before} before, {after} after SIGCONT"
        if after != quota_before:
            side.problems.append(f"the hung host's guest changed: {report.unchanged}")
        report.recovery = wait_recovery(state.hung_host, continued, deadline)
    return side


def wait_recovery(host_id: int, since: float, deadline: Deadline) -> str:
    """Informational: how long after SIGCONT the inventory shows host 4 up again (beat retries it on its own)."""
    from hosts.models import Host

    end = min(since + RECOVERY_WAIT, deadline.end)
    while time.monotonic() < end:
        if Host.objects.filter(pk=host_id, status=Host.Status.UP).exists():
            return f"host 4 up again {time.monotonic() - since:.1f} s after SIGCONT"
        time.sleep(0.5)
    retry = Host.objects.filter(pk=host_id).values_list("retry_at", flat=True).get()
    left = f"{retry.timestamp() - time.time():.0f} s later" if retry is not None else "none set"
    return f"host 4 not shown up within {RECOVERY_WAIT:g} s of SIGCONT: beat's next retry of it is {left}"


# --- the run --------------------------------------------------------------------------------------------


def run(args: argparse.Namespace, var_dir: Path, report: Report) -> None:
    from django.conf import settings

    from hosts.live.collector import Collector, TickResult

    deadline = Deadline(args.budget)
    report.deadlines = {
        "open": float(settings.ISOWEB_LIBVIRT_OPEN_TIMEOUT),
        "call": float(settings.ISOWEB_LIBVIRT_CALL_TIMEOUT),
        "per guest": float(settings.ISOWEB_LIBVIRT_PER_GUEST_TIMEOUT),
        "keepalive": float(settings.ISOWEB_LIBVIRT_KEEPALIVE_INTERVAL),
        "keepalive count": float(settings.ISOWEB_LIBVIRT_KEEPALIVE_COUNT),
        "stats": float(settings.ISOWEB_STATS_TIMEOUT),
        "sync interval": float(settings.ISOWEB_SYNC_INTERVAL),
    }
    if port_answers(BLACK_HOLE_PORT):
        raise BenchError(f"something already listens on port {BLACK_HOLE_PORT}, the black hole's")
    fleet = bench_fleet(FLEET_PREFIX, FLEET_BASE_PORT, HOSTS, args.guests)
    env = bench_env(var_dir, REDIS_PORT)
    ctx: dict[str, Any] = {"fleet": fleet, "stopped": None, "hole": None, "worker_log": var_dir / "celery-worker.log"}
    redis = worker = beat = daphne = None
    collector: Collector | None = None
    runner: threading.Thread | None = None
    try:
        redis = start_redis(REDIS_PORT, var_dir / "redis")
        started = time.monotonic()
        fleet.up()
        trim_guests(fleet)
        print(f"fleet: {HOSTS} hosts x {args.guests} guests ({time.monotonic() - started:.1f} s to start)", flush=True)
        settle([member.uri for member in fleet.members], deadline)
        ctx["state"] = setup_state(fleet)
        worker = ctx["worker"] = start_worker(env, args.concurrency, ctx["worker_log"], "isofault")
        beat = start_beat(env, var_dir, var_dir / "celery-beat.log")
        daphne, ctx["port"] = start_daphne(env)
        ctx["cookie"] = f"sessionid={viewer_session()}"
        ticks: list[tuple[int, float, TickResult]] = []
        ctx["ticks"] = ticks
        collector = Collector(
            interval=1.0, on_tick=lambda host_id, result: ticks.append((host_id, time.time(), result))
        )
        runner = threading.Thread(target=collector.run, name="collector")
        runner.start()
        run_side("A", False, ctx, args, report, deadline)
        run_side("B", True, ctx, args, report, deadline)
    except BenchError:
        if worker is not None:
            print(f"worker log tail:\n{log_tail(ctx['worker_log'])}", file=sys.stderr)
        raise
    finally:
        if ctx["stopped"] is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(ctx["stopped"], signal.SIGCONT)
        if collector is not None and runner is not None:
            collector.stop()
            runner.join(timeout=30)
        stop_process(daphne)
        stop_process(beat)
        stop_process(worker)
        stop_process(redis)
        if ctx["hole"] is not None:
            ctx["hole"].close()
        remove_fleet(fleet)


# --- the report -----------------------------------------------------------------------------------------


def _ratio(a: float, b: float) -> float:
    return b / a if a > 0 else float("nan")


def _mark(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def print_report(report: Report, args: argparse.Namespace) -> bool:
    """Print the table and the verdicts; return whether every target was met."""
    d = report.deadlines
    if not d:
        return False
    print(
        f"deadlines (product defaults): open {d['open']:g} s, call {d['call']:g} s, per guest {d['per guest']:g} s, "
        f"keepalive {d['keepalive']:g} s x {d['keepalive count']:g}, stats {d['stats']:g} s; "
        f"beat sync interval {d['sync interval']:g} s; worker --concurrency {args.concurrency}"
    )
    if len(report.sides) < 2:
        return False
    a, b = report.sides
    rows: list[tuple[str, float, float, bool]] = [  # (label, A, B, judged)
        ("sync interval mean (s)", _mean(a.intervals), _mean(b.intervals), True),
        ("sync interval p95 (s)", percentile(a.intervals, 0.95), percentile(b.intervals, 0.95), True),
        ("  same, B after both marked (s)", _mean(a.intervals), _mean(b.intervals_after), False),
        ("approve -> healthy applied, median (s)", a.apply_median(), b.apply_median(), True),
        ("approve -> healthy applied, worst (s)", a.apply_worst(), b.apply_worst(), True),
        ("approve -> request finished, median (s)", a.total_median(), b.total_median(), False),
        ("chart sample -> websocket p95 (ms)", percentile(a.latencies, 0.95), percentile(b.latencies, 0.95), True),
        ("chart sample -> websocket p50 (ms)", percentile(a.latencies, 0.5), percentile(b.latencies, 0.5), False),
        (
            "collector sample -> channel layer p95 (ms)",
            percentile(a.handover, 0.95),
            percentile(b.handover, 0.95),
            False,
        ),
        ("collector largest tick gap (s)", a.max_gap, b.max_gap, False),
    ]
    print()
    print(f"healthy hosts 1-3; A: no fault, B: host 4 SIGSTOPped + a black hole; target B <= {RATIO_TARGET:g}x A")
    header = f"{'figure':<44} {'A':>9} {'B':>9} {'B/A':>7} {'verdict':>8}"
    print(header)
    print("-" * len(header))
    ok = True
    for label, va, vb, judged in rows:
        ratio = _ratio(va, vb)
        verdict = _mark(ratio <= RATIO_TARGET) if judged else "info"
        ok &= verdict != "FAIL"
        print(f"{label:<44} {va:>9.3f} {vb:>9.3f} {ratio:>6.2f}x {verdict:>8}")
    print(
        f"samples: sync intervals A {len(a.intervals)}, B {len(b.intervals)} (after marking {len(b.intervals_after)}); "
        f"applies A {len(a.applies)}, B {len(b.applies)}; healthy chart frames A {len(a.latencies)}, "
        f"B {len(b.latencies)}"
    )
    for side in (a, b):
        runs = "; ".join(
            f"{r.healthy:.3f}/{r.total:.3f} s (pickup {r.pickup:.3f}, re-plan read {r.replan:.3f}) {r.status}"
            for r in side.applies
        )
        print(f"side {side.name} applies, healthy/request: {runs}")
    print(f"side B host 4's guest: {b.applies[0].hung_target if b.applies else '-'}")
    print()
    limit = d["open"] + DETECT_SLACK
    header = f"{'bad host':<32} {'fault -> unresp.':>16} {'attempt -> unresp.':>18} {'target':>8} {'verdict':>8}"
    print(header)
    print("-" * len(header))
    for det in report.detections:
        passed = det.from_attempt <= limit
        ok &= passed
        print(
            f"{det.name:<32} {det.from_fault:>14.2f} s {det.from_attempt:>16.2f} s {limit:>6.1f} s {_mark(passed):>8}"
        )
    for det in report.detections:
        print(f"  {det.name}: attempt = {det.attempt_how}; says: {det.error[:160]}")
    if report.unchanged:
        print(f"unchanged check: {report.unchanged}")
    if report.recovery:
        print(f"recovery (info): {report.recovery}")
    for side in (a, b):
        if side.not_up:
            side.problems.append(f"a healthy host was seen not up in {side.not_up} poll(s)")
        for problem in side.problems:
            ok = False
            print(f"side {side.name} problem: {problem}")
    return ok


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.client:
        return client_main(args)
    for name in DEADLINE_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update({"ISOWEB_SYNC_INTERVAL": str(args.sync_interval), "LOG_LEVEL": "WARNING"})
    report = Report()
    began = time.monotonic()
    error = run_in_sandbox("isoweb-bench-faults-", lambda var_dir: run(args, var_dir, report), REDIS_PORT)
    print(f"\nrun took {time.monotonic() - began:.0f} s")
    ok = print_report(report, args)
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"verdict: {'every target met' if ok else 'a target was missed (see FAIL and problems above)'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
