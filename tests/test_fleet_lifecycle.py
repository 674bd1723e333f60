"""``Fleet.down`` leaves no qemu process of its fleet, checked by pid (issue 10: `make stop` left four running).

Each test brings up its own small fleet (one daemon, two tiny guests, its own prefix and ports, apart from the
session's test fleet), records the qemu pids from the daemon's own pid files, reads the processes' start times
so a reused pid is never mistaken for a survivor, calls ``down()``, and asserts that every recorded qemu
process and the daemon are gone (not even left as zombies). The witnesses are /proc and the daemon's pid
files, read here, not the fleet code under test.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hosts.harness.fleet import Fleet, GuestSpec
from hosts.harness.guests import define_and_start
from hosts.harness.processes import port_open
from tests.conftest import virsh

pytestmark = pytest.mark.fleet

GUESTS = (GuestSpec("a", vcpus=1, iothreads=0), GuestSpec("b", vcpus=1, iothreads=0))


def _start_time(pid: int) -> tuple[str, int] | None:
    """(state, start time) of a pid from /proc, or None when there is no such process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[19])


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")


def still_there(procs: dict[str, tuple[int, int]]) -> dict[str, str]:
    """Of ``{what: (pid, start)}``, those whose very process (same start time) still exists, with its state."""
    left = {}
    for what, (pid, start) in procs.items():
        now = _start_time(pid)
        if now is not None and now[1] == start:
            left[what] = f"pid {pid} state {now[0]}" + (" (zombie)" if now[0] == "Z" else "")
    return left


def wait_gone(procs: dict[str, tuple[int, int]], timeout: float = 10.0) -> dict[str, str]:
    """Give init a moment to reap what exited; return what is still there after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    left = still_there(procs)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = still_there(procs)
    return left


def recorded_qemus(fleet: Fleet, *, strict: bool = True) -> dict[str, tuple[int, int]]:
    """Every qemu the fleet's daemons recorded in their pid files, checked against /proc: ``{guest: (pid, start)}``.

    ``strict`` fails the test on a pid file whose process is not that guest's running qemu; otherwise such
    files are skipped.
    """
    found = {}
    for member in fleet.members:
        for pid_file in sorted((member.directory / "run" / "qemu").glob("*.pid")):
            if not pid_file.with_suffix(".xml").exists():
                continue  # driver.pid is the daemon's own; a guest has its status XML beside its pid file
            pid = int(pid_file.read_text().strip())
            state = _start_time(pid)
            running = state is not None and state[0] != "Z"
            ours = running and f"guest={pid_file.stem}" in ",".join(_cmdline(pid))
            if strict:
                assert running, f"{pid_file.stem}: pid {pid} from its pid file is not running"
                assert ours, f"pid {pid} is not {pid_file.stem}'s qemu"
            if state is not None and ours:
                found[pid_file.stem] = (pid, state[1])
    return found


def daemons(fleet: Fleet) -> dict[str, tuple[int, int]]:
    found = {}
    for member in fleet.members:
        pid = member.pid()
        assert pid is not None, f"{member.name}'s libvirtd is not running"
        state = _start_time(pid)
        assert state is not None
        found[f"{member.name} libvirtd"] = (pid, state[1])
    return found


def _kill_leftovers(procs: dict[str, tuple[int, int]]) -> None:
    """After a failed test: SIGKILL, by pid, whatever of ours is still there, so the machine is left clean."""
    for pid, start in procs.values():
        now = _start_time(pid)
        if now is not None and now[1] == start and now[0] != "Z":
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def small_fleet(tmp_path: Path) -> Iterator[Fleet]:
    """One daemon with two tiny guests, on ports and names of its own (derived from the run's fleet port)."""
    base = int(os.environ.get("ISOWEB_TEST_FLEET_PORT", "16711")) + 40
    prefix = os.environ.get("ISOWEB_TEST_FLEET_PREFIX", "isotest") + "life"
    fleet = Fleet(prefix=prefix, hosts=1, base_port=base, state_dir=tmp_path / "fleet", guests=GUESTS, burner_on=())
    if port_open(base):
        pytest.fail(f"port {base} for the lifecycle fleet is taken: is another run using the same ports?")
    fleet.up()
    seen = {**recorded_qemus(fleet), **daemons(fleet)}
    try:
        yield fleet
    finally:
        # Whatever the test did, leave nothing behind: down again (a no-op after a good down), then SIGKILL by
        # pid anything of this fleet that is still there (only after a failed test).
        seen.update(recorded_qemus(fleet, strict=False))
        try:
            fleet.down()
        finally:
            _kill_leftovers(seen)


def test_down_ends_the_guests_qemu_processes_and_the_daemon(small_fleet: Fleet) -> None:
    member = small_fleet.host(0)
    # A guest the fleet's spec does not name (as a test or a bench defines): down must end it too.
    define_and_start(member.uri, member.guest_xml(GuestSpec("adhoc", vcpus=1, iothreads=0)))
    qemus = recorded_qemus(small_fleet)
    assert sorted(qemus) == sorted([*member.guest_names, f"{small_fleet.prefix}1-adhoc"])
    assert sorted(virsh(member.uri, "list", "--name").split()) == sorted(qemus)
    watched = {**qemus, **daemons(small_fleet)}

    small_fleet.down()

    assert wait_gone(watched) == {}, "down() left processes of its fleet running"
    assert not member.pid_file.exists()
    assert not port_open(member.port)


def test_down_ends_the_guests_of_a_daemon_that_already_died(small_fleet: Fleet) -> None:
    """A daemon killed (or crashed) before `down` cannot destroy its guests: down ends their qemu by pid."""
    member = small_fleet.host(0)
    qemus = recorded_qemus(small_fleet)
    assert len(qemus) == 2
    (daemon,) = daemons(small_fleet).values()
    os.kill(daemon[0], signal.SIGKILL)
    assert wait_gone({"libvirtd": daemon}) == {}
    assert still_there(qemus).keys() == qemus.keys(), "the guests should outlive their killed daemon"

    small_fleet.down()

    assert wait_gone(qemus) == {}, "down() left the guests of a dead daemon running"
    assert not port_open(member.port)


def test_down_ends_a_daemon_left_stopped_and_its_guests(small_fleet: Fleet) -> None:
    """A daemon under SIGSTOP (as the hung-host tests leave one) is continued, then stopped with its guests."""
    member = small_fleet.host(0)
    qemus = recorded_qemus(small_fleet)
    watched = {**qemus, **daemons(small_fleet)}
    (daemon,) = daemons(small_fleet).values()
    os.kill(daemon[0], signal.SIGSTOP)

    started = time.monotonic()
    small_fleet.down()

    assert wait_gone(watched) == {}, "down() left processes of a stopped daemon's fleet running"
    assert time.monotonic() - started < 30, "down() waited on the stopped daemon"
    assert not port_open(member.port)
