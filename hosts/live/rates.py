"""Turn two consecutive counter samples of a host into CPU percentages.

Pure arithmetic, no I/O, so every edge case is tested on recorded counter sequences: libvirt's counters
are cumulative nanoseconds, and between two samples a guest may have restarted (its counters went back),
gained or lost vCPUs (hotplug: sparse vCPU numbers), appeared or vanished, and the collector may have
stalled or the clock stepped. Rates use the samples' monotonic timestamps, so a wall-clock step cannot
distort them; a non-positive or overlong interval yields nothing rather than a made-up average, which
the chart shows as a gap. Every percentage is "% of one CPU".
"""

from __future__ import annotations

from dataclasses import dataclass

from hosts.libvirt.facts import GuestCPUCounters, StatsSample

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class GuestLoad:
    """One guest's load over one interval, each figure in % of one CPU.

    ``vcpu`` and ``delay`` are keyed by vCPU number and hold only vCPUs present in both samples.
    ``overhead`` (emulator + I/O threads: guest total minus the vCPUs) is ``None`` when the vCPU set
    changed in between, because a vCPU's time since its hotplug would otherwise count as overhead.
    """

    uuid: str
    vcpu: dict[int, float]
    delay: dict[int, float]
    overhead: float | None
    total: float


@dataclass(frozen=True)
class HostLoad:
    """A host's load over one interval: every guest whose counters allow it, and each host CPU's busy %."""

    wall: float
    dt: float
    guests: dict[str, GuestLoad]
    cpus: dict[int, float]


def _pct(delta_ns: int, dt: float) -> float:
    return delta_ns / (dt * NS_PER_S) * 100.0


def _clamp(value: float, upper: float) -> float:
    # One thread cannot use more than one CPU; small excesses come from RPC jitter and the counters'
    # 10 ms granularity, and must not draw a vCPU at 103 %.
    return min(max(value, 0.0), upper)


def guest_load(prev: GuestCPUCounters, cur: GuestCPUCounters, dt: float) -> GuestLoad | None:
    """Return a guest's load between two samples ``dt`` seconds apart, or ``None`` after a counter reset.

    Any counter going backwards means the guest restarted (same UUID, new QEMU process): the interval
    spans two processes and has no meaningful rate.
    """
    if cur.cpu_time < prev.cpu_time:
        return None
    vcpu: dict[int, float] = {}
    delay: dict[int, float] = {}
    vcpu_sum = 0
    for number, time_ns in cur.vcpu_time.items():
        before = prev.vcpu_time.get(number)
        if before is None:
            continue  # hotplugged since the last sample: no baseline yet
        if time_ns < before:
            return None
        vcpu_sum += time_ns - before
        vcpu[number] = _clamp(_pct(time_ns - before, dt), 100.0)
    for number, delay_ns in cur.vcpu_delay.items():
        before = prev.vcpu_delay.get(number)
        if before is None:
            continue
        if delay_ns < before:
            return None
        delay[number] = _clamp(_pct(delay_ns - before, dt), 100.0)
    cpu_delta = cur.cpu_time - prev.cpu_time
    total = max(_pct(cpu_delta, dt), 0.0)
    same_vcpus = cur.vcpu_time.keys() == prev.vcpu_time.keys()
    overhead = max(_pct(cpu_delta - vcpu_sum, dt), 0.0) if same_vcpus else None
    return GuestLoad(uuid=cur.uuid, vcpu=vcpu, delay=delay, overhead=overhead, total=total)


def host_cpu_busy(prev: StatsSample, cur: StatsSample) -> dict[int, float]:
    """Return each host CPU's busy % from its own busy and total counters.

    The host's counters carry their own clock (total time), so no collector timestamp is involved; a CPU
    whose counters went back (host rebooted) or did not advance, or that was not in both samples, is left out.
    """
    before = {c.cpu_id: c for c in prev.host_cpus}
    busy: dict[int, float] = {}
    for counters in cur.host_cpus:
        old = before.get(counters.cpu_id)
        if old is None:
            continue
        d_total = counters.total - old.total
        d_busy = counters.busy - old.busy
        if d_total <= 0 or d_busy < 0:
            continue
        busy[counters.cpu_id] = _clamp(d_busy / d_total * 100.0, 100.0)
    return busy


def host_load(prev: StatsSample, cur: StatsSample, *, max_dt: float) -> HostLoad | None:
    """Return a host's load between two samples, or ``None`` when the interval is unusable.

    An interval of zero or less (out-of-order samples, a monotonic clock reset across a restart) or longer
    than ``max_dt`` (a stall: averaging over it would hide the gap) is dropped. Guests in only one of
    the samples (started, stopped, migrated) are left out; a guest whose counters reset is left out too.
    """
    dt = cur.mono - prev.mono
    if dt <= 0 or dt > max_dt:
        return None
    before = {g.uuid: g for g in prev.guests}
    guests: dict[str, GuestLoad] = {}
    for counters in cur.guests:
        old = before.get(counters.uuid)
        if old is None:
            continue
        load = guest_load(old, counters, dt)
        if load is not None:
            guests[counters.uuid] = load
    return HostLoad(wall=cur.wall, dt=dt, guests=guests, cpus=host_cpu_busy(prev, cur))
