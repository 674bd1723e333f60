"""Time a full inventory sync of one host against the sequential virsh commands an operator would run.

The issue's target is that syncing a host with 50 guests is at least 10x faster through isoweb than through
a script calling ``virsh`` once per fact. Both sides run in the same process run, against the same private
libvirtd with N tiny real KVM guests (N growing, e.g. 5, 20, 50), so their numbers are comparable: isoweb's
side is ``hosts.services.sync_host`` (libvirt reads plus the database write, on a throwaway SQLite database,
with the connection a worker keeps open); the script's side is one ``virsh -c URI ...`` process per command,
run one after the other, gathering the same facts (host capabilities, node info, versions, guest list, and
per guest: info, live and config vCPU pins, emulator pins, iothreads, scheduler parameters, real affinity).
Each side is run ``--repeat`` times per N after an untimed warm-up and the median is reported.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

REPO_ROOT = Path(__file__).resolve().parent.parent
FLEET_STATE_DIR = REPO_ROOT / "var" / "fleet-isobench"
FLEET_PREFIX = "isobench"
FLEET_BASE_PORT = 16741

TARGET_SIZE = 50
TARGET_RATIO = 10.0
MAX_GUESTS = 100  # 64 MiB each; more than this is not what the issue asks for
MAX_REPEAT = 10

# Per host, once: what the script needs before looping over guests.
VIRSH_HOST_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("capabilities",),
    ("nodeinfo",),
    ("version",),
    ("list", "--all", "--name"),
)
# Per guest: the same facts isoweb's sync stores (live and config tuning, real vCPU affinity).
VIRSH_GUEST_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("dominfo",),
    ("vcpupin", "--live"),
    ("vcpupin", "--config"),
    ("emulatorpin", "--live"),
    ("emulatorpin", "--config"),
    ("iothreadinfo", "--live"),
    ("iothreadinfo", "--config"),
    ("schedinfo", "--live"),
    ("schedinfo", "--config"),
    ("vcpuinfo",),
)


class BenchError(RuntimeError):
    """The benchmark could not measure what it set out to (a command failed, a guest count is off)."""


@dataclass(frozen=True)
class IsowebRun:
    seconds: float  # wall clock of sync_host: libvirt reads and database write
    libvirt_seconds: float  # the libvirt part alone, as fetch_inventory measured it
    round_trips: int
    domains: int


@dataclass(frozen=True)
class VirshRun:
    seconds: float
    processes: int
    guests: int


R = TypeVar("R", IsowebRun, VirshRun)


@dataclass(frozen=True)
class Row:
    size: int
    isoweb: IsowebRun  # median run
    virsh: VirshRun  # median run

    @property
    def ratio(self) -> float:
        return self.virsh.seconds / self.isoweb.seconds if self.isoweb.seconds > 0 else float("inf")


def _positive_ints(text: str) -> list[int]:
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from exc
    if not sizes or sizes[0] < 1 or sizes[-1] > MAX_GUESTS:
        raise argparse.ArgumentTypeError(f"sizes must be between 1 and {MAX_GUESTS}")
    return sizes


def _repeat(text: str) -> int:
    value = int(text)
    if not 1 <= value <= MAX_REPEAT:
        raise argparse.ArgumentTypeError(f"repeat must be between 1 and {MAX_REPEAT}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_positive_ints, default=[5, 20, 50], help="guest counts (5,20,50)")
    parser.add_argument("--repeat", type=_repeat, default=3, help="timed runs per side and size (3)")
    parser.add_argument("--command-timeout", type=float, default=30.0, help="seconds one virsh process may take (30)")
    parser.add_argument("--budget", type=float, default=1800.0, help="seconds the whole benchmark may take (1800)")
    return parser.parse_args(argv)


def setup_django(var_dir: Path) -> None:
    """Point isoweb at a throwaway var directory and SQLite database, then start Django and migrate."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "isoweb.settings"
    os.environ["ISOWEB_VAR_DIR"] = str(var_dir)
    os.environ["DATABASE_URL"] = f"sqlite:///{var_dir / 'bench.sqlite3'}"
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


class Deadline:
    """The time budget of the whole run, checked between measurements."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def check(self, what: str) -> None:
        if time.monotonic() > self.end:
            raise BenchError(f"time budget exhausted before {what}")


def virsh(uri: str, args: tuple[str, ...], timeout: float) -> str:
    """Run one virsh command as its own process, as a shell script would, and return its output."""
    try:
        result = subprocess.run(
            ["virsh", "-q", "-c", uri, *args], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"virsh {' '.join(args)} took more than {timeout:g} s") from exc
    if result.returncode != 0:
        raise BenchError(f"virsh {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def virsh_script(uri: str, timeout: float) -> VirshRun:
    """Gather the host's and every guest's facts with sequential virsh processes; return the timing."""
    started = time.perf_counter()
    processes = 0
    names: list[str] = []
    for args in VIRSH_HOST_COMMANDS:
        output = virsh(uri, args, timeout)
        processes += 1
        if args[0] == "list":
            names = [line.strip() for line in output.splitlines() if line.strip()]
    for name in names:
        for command, *flags in VIRSH_GUEST_COMMANDS:
            virsh(uri, (command, name, *flags), timeout)
            processes += 1
    return VirshRun(seconds=time.perf_counter() - started, processes=processes, guests=len(names))


def isoweb_sync(host_id: int) -> IsowebRun:
    """Run isoweb's full sync of one host (libvirt reads and database write) and return its timing."""
    from hosts import services

    started = time.perf_counter()
    result = services.sync_host(host_id)
    seconds = time.perf_counter() - started
    if not result.ok:
        raise BenchError(f"isoweb sync failed: {result.error}")
    return IsowebRun(
        seconds=seconds,
        libvirt_seconds=result.seconds,
        round_trips=result.round_trips,
        domains=result.domains,
    )


def _median_run(runs: list[R]) -> R:
    """Return the run with the median time (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda run: run.seconds)
    return ordered[(len(ordered) - 1) // 2]


def trim_guests(uri: str, keep: set[str]) -> None:
    """Remove this fleet's guests that are not wanted (left over from an earlier, larger, aborted run)."""
    from hosts import libvirt_client

    for name in libvirt_client.list_domain_names(uri):
        if name.startswith(f"{FLEET_PREFIX}1-") and name not in keep:
            libvirt_client.destroy_and_undefine(uri, name)


def measure(size: int, host_id: int, uri: str, args: argparse.Namespace, deadline: Deadline) -> Row:
    """Warm up, then alternate isoweb syncs and virsh scripts ``repeat`` times; keep each side's median."""
    warm = isoweb_sync(host_id)  # first getCapabilities after a daemon start is slow; rows get created
    if warm.domains != size:
        raise BenchError(f"host has {warm.domains} guests, expected {size}")
    virsh(uri, ("version",), args.command_timeout)
    isoweb_runs: list[IsowebRun] = []
    virsh_runs: list[VirshRun] = []
    for attempt in range(args.repeat):
        deadline.check(f"run {attempt + 1} at {size} guests")
        isoweb_runs.append(isoweb_sync(host_id))
        virsh_runs.append(virsh_script(uri, args.command_timeout))
    for run in virsh_runs:
        if run.guests != size:
            raise BenchError(f"virsh listed {run.guests} guests, expected {size}")
    return Row(size=size, isoweb=_median_run(isoweb_runs), virsh=_median_run(virsh_runs))


def print_table(rows: list[Row], repeat: int) -> None:
    header = (
        f"{'N':>4} {'isoweb s':>9} {'ms/guest':>9} {'libvirt s':>9} {'round trips':>11} "
        f"{'virsh s':>9} {'ms/guest':>9} {'virsh procs':>11} {'ratio':>7}"
    )
    print(f"median of {repeat} run(s) per side; isoweb = services.sync_host (libvirt + DB write)")
    print(header)
    print("-" * len(header))
    for row in rows:
        iso, vsh = row.isoweb, row.virsh
        print(
            f"{row.size:>4} {iso.seconds:>9.3f} {1000 * iso.seconds / row.size:>9.1f} "
            f"{iso.libvirt_seconds:>9.3f} {iso.round_trips:>11} "
            f"{vsh.seconds:>9.3f} {1000 * vsh.seconds / row.size:>9.1f} {vsh.processes:>11} "
            f"{row.ratio:>6.1f}x"
        )


def print_verdict(rows: list[Row]) -> None:
    target = next((row for row in rows if row.size == TARGET_SIZE), None)
    if target is None:
        print(f"verdict: not measured (the target is at N={TARGET_SIZE}; pass it in --sizes)")
        return
    verdict = "PASS" if target.ratio >= TARGET_RATIO else "FAIL"
    print(
        f"verdict: {verdict}: at N={TARGET_SIZE} isoweb is {target.ratio:.1f}x faster than the virsh script "
        f"(target >= {TARGET_RATIO:g}x)"
    )


def run(args: argparse.Namespace, rows: list[Row]) -> None:
    """Grow the bench fleet through ``args.sizes``, appending one measured row per size to ``rows``."""
    from hosts import libvirt_client, services
    from hosts.fleet import Fleet

    deadline = Deadline(args.budget)

    def fleet_of(size: int) -> Fleet:
        return Fleet(
            prefix=FLEET_PREFIX,
            hosts=1,
            base_port=FLEET_BASE_PORT,
            state_dir=FLEET_STATE_DIR,
            guests=(),
            burner_on=(),
            extra_guests=size,
        )

    largest = fleet_of(max(args.sizes))
    uri = largest.members[0].uri
    try:
        host_id: int | None = None
        for size in args.sizes:
            deadline.check(f"starting {size} guests")
            fleet = fleet_of(size)
            started = time.perf_counter()
            fleet.up()
            trim_guests(uri, set(fleet.members[0].guest_names))
            print(f"fleet: {size} guests running on {uri} ({time.perf_counter() - started:.1f} s to start)")
            if host_id is None:
                host_id = services.create_host(name=f"{FLEET_PREFIX}-host1", uri=uri, actor=None).pk
            rows.append(measure(size, host_id, uri, args, deadline))
    finally:
        if largest.members[0].is_running():
            try:
                trim_guests(uri, set())
            except libvirt_client.VirtError as exc:
                print(f"warning: could not remove every bench guest: {exc.message}", file=sys.stderr)
        largest.down()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    var_dir = Path(tempfile.mkdtemp(prefix="isoweb-bench-"))
    rows: list[Row] = []
    try:
        setup_django(var_dir)
        from hosts.fleet import FleetError
        from hosts.libvirt_client import VirtError

        try:
            run(args, rows)
        except (BenchError, FleetError) as exc:
            error = str(exc)
        except VirtError as exc:
            error = exc.message
        else:
            error = ""
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)
    print()
    print_table(rows, args.repeat)
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print_verdict(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
