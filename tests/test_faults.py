"""One bad host never stalls the fleet: real faults against the real stack.

Faults used: a black-hole TCP listener registered as a host (it accepts connections and never answers, as
a port held by some other service does), and a fleet daemon under SIGSTOP (a deadlocked or overloaded
libvirtd). The tests' settings (isoweb/settings_test.py) use a 3 s open deadline and a 1 s x 3 keepalive,
so a hang is found in seconds.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from django.contrib.auth.models import User
from django.test import Client

from hosts.changes.engine import run_jobs
from hosts.changes.jobs import create_settle_jobs
from hosts.changes.start import start_change_request
from hosts.harness.fleet import Fleet, FleetHost
from hosts.inventory import create_host, sync_host
from hosts.live.collector import Collector, TickResult
from hosts.models import AuditEvent, ChangeRequest, ChangeTarget, Host
from tests.conftest import wait_for
from tests.test_apply_failures import (  # noqa: F401 - fixtures used by name
    Webs,
    _scheduled,
    approve_and_wait,
    by_name,
    keeper,
    propose,
    tuning,
    webs,
)

pytestmark = [pytest.mark.fleet, pytest.mark.django_db(transaction=True)]

LIVE_CAP = {"sched": {"vcpu_period": 100000, "vcpu_quota": 50000}}


class BlackHole:
    """A loopback TCP port that accepts connections and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = int(self.sock.getsockname()[1])
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                conn, _addr = self.sock.accept()
                self.held.append(conn)  # kept open, never answered

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture
def black_hole(db: None) -> Iterator[Host]:
    """The black hole registered as a host, as an admin with a mistyped port would."""
    hole = BlackHole()
    try:
        yield create_host(name="blackhole", uri=f"qemu+tcp://127.0.0.1:{hole.port}/system", actor=None)
    finally:
        hole.close()


@contextlib.contextmanager
def stopped(member: FleetHost) -> Iterator[None]:
    """The member's libvirtd under SIGSTOP (it keeps its sockets and never answers), continued afterwards."""
    pid = member.pid()
    assert pid is not None, f"{member.name} is not running"
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_black_hole_host_is_unresponsive_and_never_delays_the_other_hosts_syncs(
    fleet_hosts: list[Host],
    black_hole: Host,
    celery_worker: subprocess.Popen[bytes],
    start_beat: Callable[..., subprocess.Popen[bytes]],
    viewer: User,
    login: Callable[[User], Client],
) -> None:
    start_beat(ISOWEB_SYNC_INTERVAL="2")
    wait_for(
        lambda: Host.objects.get(pk=black_hole.pk).status == Host.Status.UNRESPONSIVE,
        3 + 2 + 10,
        what="the black hole marked unresponsive",
    )
    bad = Host.objects.get(pk=black_hole.pk)
    assert "blackhole did not answer within 3 s" in bad.last_error, bad.last_error
    assert bad.status_since is not None and bad.retry_at is not None and bad.retry_at > bad.status_since
    event = AuditEvent.objects.get(host=bad, action=AuditEvent.Action.HOST_DOWN)
    assert event.message.startswith("Not answering"), event.message
    page = login(viewer).get(f"/hosts/{bad.pk}/").content.decode()
    assert "Not answering since" in page and "did not answer within 3 s" in page and "Next periodic sync" in page

    # With the black hole registered (and its connection attempts stuck in every worker that tried it),
    # every healthy host keeps being synced at the beat's 2 s interval.
    seen: dict[int, set[object]] = {h.pk: set() for h in fleet_hosts}
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:
        for pk, synced in Host.objects.filter(pk__in=seen).values_list("pk", "last_sync_at"):
            seen[pk].add(synced)
        time.sleep(0.2)
    assert all(len(times) >= 4 for times in seen.values()), {pk: len(t) for pk, t in seen.items()}
    assert set(Host.objects.filter(pk__in=seen).values_list("status", flat=True)) == {Host.Status.UP}


def test_a_hung_daemon_fails_its_guests_unchanged_while_the_other_host_applies(
    fleet: Fleet,
    webs: Webs,  # noqa: F811
    celery_worker: subprocess.Popen[bytes],
    operator: User,
    approver: User,
    login: Callable[[User], Client],
) -> None:
    names = webs.names[:2]  # web1 on host 1, web2 on host 2
    cr_id = propose(login(operator), LIVE_CAP, names, scope="live")
    with stopped(fleet.host(1)):
        started = time.monotonic()
        done = approve_and_wait(login(approver), cr_id)
        took = time.monotonic() - started
        host2 = Host.objects.get(name=fleet.host(1).name)
    assert done["status"] == "partially_applied", done
    results = by_name(done)
    assert results[names[0]]["status"] == "applied", results[names[0]]
    failed = results[names[1]]
    assert failed["status"] == "failed" and "not changed" in failed["error"], failed
    assert host2.status == Host.Status.UNRESPONSIVE, (host2.status, host2.last_error)
    # The hang is noticed by keepalive (3 s here) or the open deadline (3 s), not after minutes.
    assert took < 20, took
    assert tuning(fleet.host(0).uri, names[0], "--live")["sched"]["vcpu_quota"] == "50000"
    wait_for(lambda: sync_host(host2.pk).ok, 20, 0.5, "host 2 answers again after SIGCONT")
    assert tuning(fleet.host(1).uri, names[1], "--live") == webs.live_before[1]


def test_a_host_that_hangs_mid_write_leaves_its_guest_unknown_until_the_next_contact_settles_it(
    fleet: Fleet,
    fleet_hosts: list[Host],
    webs: Webs,  # noqa: F811
    operator: User,
    approver: User,
    login: Callable[[User], Client],
) -> None:
    """The worker's two steps run here (see _scheduled): the start reads and snapshots every host, then
    host 2's daemon stops before the write, so its guest's write is sent and never answered."""
    names = webs.names
    cr_id = _scheduled(login(operator), approver, names)
    claimed = start_change_request(cr_id).claimed
    assert len(claimed) == 3
    with stopped(fleet.host(1)):
        assert run_jobs([], claimed) == []
    targets = {t.domain_name: t for t in ChangeTarget.objects.filter(change_request_id=cr_id)}
    unknown = targets[names[1]]
    assert unknown.status == ChangeTarget.Status.UNKNOWN, (unknown.status, unknown.error)
    assert "verified" in unknown.error and "stopped answering" in unknown.error, unknown.error
    assert [targets[n].status for n in (names[0], names[2])] == ["applied", "applied"]
    cr = ChangeRequest.objects.get(pk=cr_id)
    assert cr.status == ChangeRequest.Status.PARTIALLY_APPLIED and "1 unknown" in cr.status_message, cr.status_message
    assert AuditEvent.objects.filter(change_request_id=cr_id, action=AuditEvent.Action.CHANGE_UNKNOWN).count() == 1

    # Next contact: the sync finds the host back, and the settle job verifies the guest and settles it.
    host2 = fleet_hosts[1]
    wait_for(lambda: sync_host(host2.pk).ok, 20, 0.5, "host 2 answers again after SIGCONT")
    jobs = create_settle_jobs(host2.pk)
    assert len(jobs) == 1 and create_settle_jobs(host2.pk) == []  # one open settle job per request and host
    assert run_jobs(jobs) == []
    settled = ChangeTarget.objects.get(pk=unknown.pk)
    assert settled.status in (ChangeTarget.Status.APPLIED, ChangeTarget.Status.FAILED), (settled.status, settled.error)
    event = AuditEvent.objects.get(change_request_id=cr_id, action=AuditEvent.Action.CHANGE_SETTLED)
    now = tuning(fleet.host(1).uri, names[1], "--live")
    if settled.status == ChangeTarget.Status.APPLIED:  # the daemon ran the write once it was continued
        assert now["sched"]["vcpu_quota"] == "50000", now
        assert "holds the change" in event.message, event.message
    else:  # it did not, or only half: put back as the snapshot found it
        assert now == webs.live_before[1], now
        assert "restored" in event.message, event.message
    cr.refresh_from_db()
    assert "unknown" not in cr.status_message, cr.status_message


def test_the_collector_keeps_every_healthy_host_at_its_cadence_while_one_host_never_answers(
    fleet_hosts: list[Host], black_hole: Host, redis_server: str
) -> None:
    ticks: dict[int, list[tuple[float, TickResult]]] = {}
    lock = threading.Lock()

    def on_tick(host_id: int, result: TickResult) -> None:
        with lock:
            ticks.setdefault(host_id, []).append((time.monotonic(), result))

    # Every host sampled each second, as if each had an open chart.
    collector = Collector(interval=1.0, background_interval=1.0, on_tick=on_tick)
    runner = threading.Thread(target=collector.run)
    runner.start()
    try:
        time.sleep(10)
    finally:
        collector.stop()
        runner.join(timeout=20)
    assert not runner.is_alive(), "the collector did not stop within 20 s"
    for host in fleet_hosts:
        good = [at for at, result in ticks.get(host.pk, []) if not result.error]
        gaps = [b - a for a, b in itertools.pairwise(good)]
        assert len(good) >= 7 and max(gaps) < 1.6, (host.name, len(good), gaps)
    bad = [result.error for _at, result in ticks.get(black_hole.pk, [])]
    assert bad and all(bad), bad
    assert "blackhole did not answer within" in bad[0], bad
