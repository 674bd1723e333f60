"""What libvirt tells about hosts, guests and CPU counters, as plain frozen dataclasses.

Nothing here imports the libvirt binding, so the planner, the stats arithmetic and tests can use these
types without it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class HostCPU:
    """One host CPU as libvirt's capabilities describe it."""

    cpu_id: int
    socket_id: int | None
    die_id: int | None
    core_id: int | None
    siblings: str
    online: bool


@dataclass(frozen=True)
class NumaCell:
    """One NUMA cell: its memory and CPUs."""

    cell_id: int
    memory_kib: int | None
    cpus: tuple[HostCPU, ...]


@dataclass(frozen=True)
class HostFacts:
    """What a host says about itself."""

    hostname: str
    libvirt_version: str
    hypervisor_version: str
    cpu_model: str
    cells: tuple[NumaCell, ...]
    online: frozenset[int] = frozenset()  # the host CPUs online now (a light read has no cells)

    @property
    def cpu_ids(self) -> frozenset[int]:
        return frozenset(cpu.cpu_id for cell in self.cells for cpu in cell.cpus)


@dataclass(frozen=True)
class Tuning:
    """A guest's CPU tuning as libvirt's getters report it (live or persistent config)."""

    vcpupin: dict[int, str]
    emulatorpin: str
    iothreadpin: dict[int, str]
    sched: dict[str, int]

    def as_json(self) -> dict[str, Any]:
        return {
            "vcpupin": {str(k): v for k, v in sorted(self.vcpupin.items())},
            "emulatorpin": self.emulatorpin,
            "iothreadpin": {str(k): v for k, v in sorted(self.iothreadpin.items())},
            "sched": dict(self.sched),
        }


@dataclass(frozen=True)
class DomainFacts:
    """A guest: its identity, state, vCPUs and tuning, and its vCPU threads' real affinity."""

    uuid: str
    name: str
    state: str
    persistent: bool
    vcpus_current: int
    vcpus_max: int
    placement: str
    iothread_ids: tuple[int, ...]
    live: Tuning | None
    config: Tuning | None
    affinity: dict[int, str] | None = field(default_factory=dict)  # None: not read this time
    vcpu_states: dict[int, str] = field(default_factory=dict)
    # The persistent definition with its secrets, kept only when asked for (a change's snapshot, for an exact
    # restore); never stored in the inventory.
    config_xml: str | None = field(default=None, repr=False)

    def snapshot_json(self) -> dict[str, Any]:
        """The guest as a change request stores it before writing (what an undo puts back) or after."""
        out = {
            "state": self.state,
            "live": self.live.as_json() if self.live else None,
            "config": self.config.as_json() if self.config else None,
            "config_xml": self.config_xml,
        }
        if self.affinity is not None:
            out["affinity"] = {str(k): v for k, v in sorted(self.affinity.items())}
        return out


@dataclass(frozen=True)
class Inventory:
    """Everything one sync learns about a host, and what it cost."""

    host: HostFacts
    domains: tuple[DomainFacts, ...]
    round_trips: int
    seconds: float
    # A light read (before re-planning a change) skips the host's identity and the guests' vCPU affinity, and
    # running guests' config unless asked for.
    complete: bool = True


@dataclass(frozen=True)
class GuestCPUCounters:
    """One running guest's cumulative CPU counters in nanoseconds, as libvirt's bulk stats report them.

    ``cpu_time`` covers every thread of the QEMU process (vCPUs, emulator, I/O threads); ``vcpu_time`` and
    ``vcpu_delay`` (run-queue wait, i.e. steal) are keyed by vCPU number, which may be sparse after hotplug.
    """

    uuid: str
    name: str
    cpu_time: int
    vcpu_time: dict[int, int]
    vcpu_delay: dict[int, int]


@dataclass(frozen=True)
class HostCPUCounters:
    """One host CPU's cumulative time in nanoseconds: busy (kernel + user) and total (busy + idle + iowait)."""

    cpu_id: int
    busy: int
    total: int


@dataclass(frozen=True)
class StatsSample:
    """One tick's counters for a host, stamped with the collector's monotonic and wall clocks.

    ``mono`` is the midpoint of the bulk guest call, so rates are computed over the interval libvirt
    really sampled, immune to wall-clock steps; ``wall`` places the sample on the chart's time axis.
    """

    mono: float
    wall: float
    guests: tuple[GuestCPUCounters, ...]
    host_cpus: tuple[HostCPUCounters, ...]
    round_trips: int
