"""Describe what the planner reads (a host's CPUs, a guest's tuning) and what it returns (plans and issues).

These are plain frozen dataclasses, without the database or libvirt, so planning stays pure and a test can
build a host by hand; hosts/planning/plans.py fills them from the inventory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# States in which a guest has QEMU threads, so live tuning exists and LIVE changes are accepted.
ACTIVE_STATES = frozenset({"running", "blocked", "paused", "pmsuspended"})


@dataclass(frozen=True)
class CPUInfo:
    """One host CPU as libvirt's capabilities describe it; ``siblings`` are its hyperthreads (itself included)."""

    cpu_id: int
    cell_id: int
    socket_id: int | None
    core_id: int | None
    siblings: frozenset[int]
    online: bool


@dataclass(frozen=True)
class HostLayout:
    """A host's CPUs and its housekeeping partition: the CPUs kept for the host and QEMU's helper threads.

    Guests may use the guest pool, which is every online CPU outside the housekeeping set.
    """

    host_id: int
    name: str
    cpus: tuple[CPUInfo, ...]
    housekeeping: frozenset[int] = frozenset()

    @property
    def cpu_ids(self) -> frozenset[int]:
        return frozenset(cpu.cpu_id for cpu in self.cpus)

    @property
    def online(self) -> frozenset[int]:
        return frozenset(cpu.cpu_id for cpu in self.cpus if cpu.online)

    @property
    def guest_pool(self) -> frozenset[int]:
        return self.online - self.housekeeping

    @property
    def cells(self) -> dict[int, frozenset[int]]:
        cells: dict[int, set[int]] = {}
        for cpu in self.cpus:
            cells.setdefault(cpu.cell_id, set()).add(cpu.cpu_id)
        return {cell: frozenset(ids) for cell, ids in sorted(cells.items())}

    def cpu(self, cpu_id: int) -> CPUInfo | None:
        return next((cpu for cpu in self.cpus if cpu.cpu_id == cpu_id), None)


@dataclass(frozen=True)
class GuestState:
    """A guest as the inventory last saw it: state, vCPUs, iothreads and its live and config tuning."""

    domain_id: int
    name: str
    host_id: int
    state: str
    vcpus_max: int
    vcpus_current: int
    placement: str = "static"
    iothread_ids: tuple[int, ...] = ()
    live: dict[str, Any] | None = None
    config: dict[str, Any] | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES


@dataclass(frozen=True)
class Issue:
    """A problem found while planning; ``code`` is stable for programs, ``message`` is for the operator."""

    field: str
    message: str
    code: str

    def as_json(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "code": self.code}


@dataclass(frozen=True)
class GuestPlan:
    """What applying the profile would set on one guest, and why it may not be applied.

    ``desired`` holds only the fields the profile sets, with concrete values; any error blocks the guest.
    """

    domain_id: int
    name: str
    host_id: int
    desired: dict[str, Any]
    errors: tuple[Issue, ...] = ()
    warnings: tuple[Issue, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_json(self) -> dict[str, Any]:
        return {
            "domain_id": self.domain_id,
            "name": self.name,
            "host_id": self.host_id,
            "desired": self.desired,
            "errors": [issue.as_json() for issue in self.errors],
            "warnings": [issue.as_json() for issue in self.warnings],
        }
