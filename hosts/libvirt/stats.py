"""Read CPU counters for the live charts: one bulk call for every running guest, one per host CPU."""

from __future__ import annotations

import time
from typing import Any

import libvirt

from hosts.libvirt.connection import RoundTrips, connect, disconnect
from hosts.libvirt.errors import TransientVirtError
from hosts.libvirt.facts import GuestCPUCounters, HostCPUCounters, StatsSample

CPU_STATS_FLAGS = libvirt.VIR_DOMAIN_STATS_CPU_TOTAL | libvirt.VIR_DOMAIN_STATS_VCPU


# Only active guests: a shut-off guest reports libvirtd's own CPU time in libvirt 9.0.
_ACTIVE_ONLY = libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE


def guest_counters(dom: libvirt.virDomain, stats: dict[str, Any]) -> GuestCPUCounters:
    vcpu_time: dict[int, int] = {}
    vcpu_delay: dict[int, int] = {}
    for key, value in stats.items():
        if not key.startswith("vcpu."):
            continue
        parts = key.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            continue  # vcpu.current, vcpu.maximum and KVM's per-vCPU "*.sum" counters
        if parts[2] == "time":
            vcpu_time[int(parts[1])] = int(value)
        elif parts[2] == "delay":
            vcpu_delay[int(parts[1])] = int(value)
    return GuestCPUCounters(
        uuid=dom.UUIDString(),
        name=dom.name(),
        cpu_time=int(stats.get("cpu.time", 0)),
        vcpu_time=vcpu_time,
        vcpu_delay=vcpu_delay,
    )


def _host_cpu_counters(rt: RoundTrips, conn: libvirt.virConnect, cpu_ids: tuple[int, ...]) -> list[HostCPUCounters]:
    # VIR_NODE_CPU_STATS_ALL_CPUS (-1) returns one sum over every CPU, not one entry per CPU, so painting
    # the CPU map needs one call per CPU (each well under a millisecond).
    result: list[HostCPUCounters] = []
    for cpu_id in cpu_ids:
        raw = rt.call(conn.getCPUStats, cpu_id)
        busy = int(raw.get("kernel", 0)) + int(raw.get("user", 0))
        result.append(HostCPUCounters(cpu_id, busy, busy + int(raw.get("idle", 0)) + int(raw.get("iowait", 0))))
    return result


def fetch_cpu_stats(uri: str, host_cpu_ids: tuple[int, ...] = (), *, name: str = "") -> StatsSample:
    """Read every running guest's CPU counters in one bulk call, then each listed host CPU's counters.

    This is the collector's whole per-tick cost on a host: one ``getAllDomainStats`` round trip for all
    guests plus one ``getCPUStats`` per host CPU.
    """
    conn = connect(uri, name=name)
    rt = RoundTrips(uri)
    try:
        wall = time.time()
        before = time.monotonic()
        records = rt.call(conn.getAllDomainStats, CPU_STATS_FLAGS, _ACTIVE_ONLY)
        mono = (before + time.monotonic()) / 2
        guests = tuple(guest_counters(dom, stats) for dom, stats in records)
        host_cpus = tuple(_host_cpu_counters(rt, conn, host_cpu_ids))
    except TransientVirtError:
        disconnect(uri)
        raise
    return StatsSample(mono=mono, wall=wall, guests=guests, host_cpus=host_cpus, round_trips=rt.count)
