"""Read a running guest's QEMU threads as an operator sees them in ``top -H`` and ``taskset -p``.

A guest is a QEMU process; its threads are the vCPUs, the I/O threads and the emulator (the main loop and
its helpers). Everything comes from libvirt, so it works on remote hosts too:

- ``dom.vcpus()``: per vCPU its state, CPU time, the host CPU it last ran on and its real affinity (what the
  kernel enforces on the thread);
- QEMU's ``query-cpus-fast`` and ``query-iothreads`` through ``libvirt_qemu.qemuMonitorCommand``: each vCPU's
  and I/O thread's thread id (libvirt marks the guest "custom-monitor" tainted in its log when this is used;
  both commands only read);
- ``dom.ioThreadInfo`` and ``dom.emulatorPinInfo``: where the I/O threads and the emulator may run;
- one ``domainListGetStats`` for the guest's total CPU time: the emulator and I/O threads together are the
  total minus the vCPUs (libvirt 9.0 has no per-thread time for them).

libvirt 9.0 has no call that gives the QEMU process id, so the emulator's thread id (the process id) is not
shown; its pin set is. The whole read has the live views' deadline (``ISOWEB_STATS_TIMEOUT``) and runs on a
thread of the call pool, so a hung host costs the caller that much and no more.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import libvirt
import libvirt_qemu
from django.conf import settings

from hosts.cpulist import cpumap_to_cpus, format_cpulist
from hosts.libvirt import connection, deadlines, pools
from hosts.libvirt.connection import RoundTrips, connect, disconnect
from hosts.libvirt.errors import HostTimeout, PermanentVirtError, TransientVirtError

VCPU_STATES = {
    libvirt.VIR_VCPU_OFFLINE: "offline",
    libvirt.VIR_VCPU_RUNNING: "running",
    libvirt.VIR_VCPU_BLOCKED: "blocked",
}
QUERY_CPUS = '{"execute":"query-cpus-fast"}'
QUERY_IOTHREADS = '{"execute":"query-iothreads"}'
_TOTAL_STATS = libvirt.VIR_DOMAIN_STATS_CPU_TOTAL | libvirt.VIR_DOMAIN_STATS_VCPU


@dataclass(frozen=True)
class GuestThread:
    """One QEMU thread of a guest: what it is, its thread id, where it may run and where it last ran."""

    kind: str  # "vcpu", "iothread" or "emulator", as in libvirt's vcpupin / iothreadpin / emulatorpin
    number: int | None
    thread_id: int | None  # what top -H and taskset -p show; None when libvirt cannot tell
    affinity: str  # the CPUs it may run on, as a cpulist
    last_cpu: int | None  # the host CPU it last ran on (vCPUs only)
    state: str | None  # running, blocked, offline (vCPUs only)
    cpu_time_ns: int | None  # CPU time used so far; the emulator's includes the I/O threads'

    @property
    def label(self) -> str:
        if self.kind == "vcpu":
            return f"vCPU {self.number}"
        if self.kind == "iothread":
            return f"I/O thread {self.number}"
        return "emulator"


@dataclass(frozen=True)
class GuestThreads:
    """A running guest's threads, and when (wall and monotonic seconds) they were read."""

    threads: tuple[GuestThread, ...]
    wall: float
    mono: float
    total_cpu_time_ns: int
    round_trips: int
    notes: tuple[str, ...] = field(default=())


def _monitor(rt: RoundTrips, dom: libvirt.virDomain, command: str) -> list[dict[str, Any]]:
    """Run a read-only QMP query and return its result list."""
    answer = json.loads(rt.call(libvirt_qemu.qemuMonitorCommand, dom, command, 0))
    result = answer.get("return")
    return result if isinstance(result, list) else []


def _iothread_number(qemu_id: Any) -> int | None:
    """QEMU names libvirt's I/O thread N ``iothreadN``."""
    text = str(qemu_id)
    return int(text[8:]) if text.startswith("iothread") and text[8:].isdigit() else None


def _read(uri: str, uuid: str, name: str) -> GuestThreads:
    conn = connect(uri, name=name)
    rt = RoundTrips(uri)
    try:
        dom = rt.call(conn.lookupByUUIDString, uuid)
        wall, before = time.time(), time.monotonic()
        info, cpumaps = rt.call(dom.vcpus)
        stats = rt.call(conn.domainListGetStats, [dom], _TOTAL_STATS, 0)
        mono = (before + time.monotonic()) / 2
        cpus = _monitor(rt, dom, QUERY_CPUS)
        iothreads = _monitor(rt, dom, QUERY_IOTHREADS)
        io_pins = rt.call(dom.ioThreadInfo, 0)
        emulator_pin = rt.call(dom.emulatorPinInfo, 0)
    except TransientVirtError:
        disconnect(uri)
        raise
    tids = {int(c["cpu-index"]): int(c["thread-id"]) for c in cpus if "cpu-index" in c and "thread-id" in c}
    io_tids = {n: int(t["thread-id"]) for t in iothreads if (n := _iothread_number(t.get("id"))) is not None}
    threads = [
        GuestThread(
            kind="vcpu",
            number=int(number),
            thread_id=tids.get(int(number)),
            affinity=format_cpulist(cpumap_to_cpus(cpumap)),
            last_cpu=int(real_cpu) if real_cpu is not None and real_cpu >= 0 else None,
            state=VCPU_STATES.get(state, str(state)),
            cpu_time_ns=int(cpu_time),
        )
        for (number, state, cpu_time, real_cpu), cpumap in zip(info, cpumaps, strict=True)
    ]
    total = int((stats[0][1] if stats else {}).get("cpu.time", 0))
    vcpu_total = sum(t.cpu_time_ns or 0 for t in threads)
    threads.append(
        GuestThread(
            kind="emulator",
            number=None,
            thread_id=None,
            affinity=format_cpulist(cpumap_to_cpus(emulator_pin)),
            last_cpu=None,
            state=None,
            cpu_time_ns=max(total - vcpu_total, 0),
        )
    )
    for number, cpumap in sorted(io_pins, key=lambda pin: pin[0]):
        threads.append(
            GuestThread(
                kind="iothread",
                number=int(number),
                thread_id=io_tids.get(int(number)),
                affinity=format_cpulist(cpumap_to_cpus(cpumap)),
                last_cpu=None,
                state=None,
                cpu_time_ns=None,
            )
        )
    return GuestThreads(tuple(threads), wall, mono, total, rt.count)


def fetch_guest_threads(uri: str, uuid: str, *, name: str = "") -> GuestThreads:
    """Read a running guest's threads within the live views' deadline.

    Raises HostTimeout when the host does not answer in time, PermanentVirtError when the guest is gone or
    not running (libvirt's "not valid in this state"), TransientVirtError when the host cannot be reached.
    """
    who = name or uri
    if not uuid:
        raise PermanentVirtError("the guest has no UUID")
    began = time.time()
    work = pools.call_pool().submit(_read, uri, uuid, name)
    try:
        return deadlines.wait(work, float(settings.ISOWEB_STATS_TIMEOUT), who)
    except HostTimeout:
        connection.mark_stuck(uri, work, began)
        raise
