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
import sys
import time
from dataclasses import dataclass

from common import (
    BenchError,
    Deadline,
    add_repeat_argument,
    bench_fleet,
    median_run,
    remove_fleet,
    run_in_sandbox,
    sizes_type,
    trim_guests,
    virsh,
)

FLEET_PREFIX = "isobench"
FLEET_BASE_PORT = 16741

TARGET_SIZE = 50
TARGET_RATIO = 10.0
MAX_GUESTS = 100  # 64 MiB each; more than this is not what the issue asks for

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


@dataclass(frozen=True)
class Row:
    size: int
    isoweb: IsowebRun  # median run
    virsh: VirshRun  # median run

    @property
    def ratio(self) -> float:
        return self.virsh.seconds / self.isoweb.seconds if self.isoweb.seconds > 0 else float("inf")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=sizes_type(MAX_GUESTS), default=[5, 20, 50], help="guest counts (5,20,50)")
    add_repeat_argument(parser)
    parser.add_argument("--command-timeout", type=float, default=30.0, help="seconds one virsh process may take (30)")
    parser.add_argument("--budget", type=float, default=1800.0, help="seconds the whole benchmark may take (1800)")
    return parser.parse_args(argv)


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
    from hosts.inventory import sync_host

    started = time.perf_counter()
    result = sync_host(host_id)
    seconds = time.perf_counter() - started
    if not result.ok:
        raise BenchError(f"isoweb sync failed: {result.error}")
    return IsowebRun(
        seconds=seconds,
        libvirt_seconds=result.seconds,
        round_trips=result.round_trips,
        domains=result.domains,
    )


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
    return Row(size=size, isoweb=median_run(isoweb_runs), virsh=median_run(virsh_runs))


def print_table(rows: list[Row], repeat: int) -> None:
    header = (
        f"{'N':>4} {'isoweb s':>9} {'ms/guest':>9} {'libvirt s':>9} {'round trips':>11} "
        f"{'virsh s':>9} {'ms/guest':>9} {'virsh procs':>11} {'ratio':>7}"
    )
    print(f"median of {repeat} run(s) per side; isoweb = sync_host (libvirt + DB write)")
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
    from hosts.inventory import create_host

    deadline = Deadline(args.budget)
    largest = bench_fleet(FLEET_PREFIX, FLEET_BASE_PORT, 1, max(args.sizes))
    uri = largest.members[0].uri
    try:
        host_id: int | None = None
        for size in args.sizes:
            deadline.check(f"starting {size} guests")
            fleet = bench_fleet(FLEET_PREFIX, FLEET_BASE_PORT, 1, size)
            started = time.perf_counter()
            fleet.up()
            trim_guests(fleet)
            print(f"fleet: {size} guests running on {uri} ({time.perf_counter() - started:.1f} s to start)")
            if host_id is None:
                host_id = create_host(name=f"{FLEET_PREFIX}-host1", uri=uri, actor=None).pk
            rows.append(measure(size, host_id, uri, args, deadline))
    finally:
        remove_fleet(largest)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows: list[Row] = []
    error = run_in_sandbox("isoweb-bench-", lambda _var_dir: run(args, rows))
    print()
    print_table(rows, args.repeat)
    if error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print_verdict(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
