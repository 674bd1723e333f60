"""Plan what applying a pin profile to guests would set, and what stands in the way.

Planning is pure: it reads a snapshot of the hosts' CPU layout and the guests' tuning and returns, per guest,
the concrete tuning to set (``desired``, in the shape the inventory stores) with blocking errors and warnings.
The same plan is shown to the requester, checked again by the approver and applied by the worker, so it must
be deterministic and must never need libvirt or the database to answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hosts.cpulist import format_cpulist, parse_cpulist
from hosts.planning.schema import SHARES_CGROUP_V2_MAX, ProfileError, ProfileSpec, cgroup_v1_conflicts, validate_profile
from hosts.vocabulary import SCHED_NAMES, percent_to_quota, quota_to_percent

__all__ = [
    "SCOPES",
    "CPUInfo",
    "GuestPlan",
    "GuestState",
    "HostLayout",
    "Issue",
    "ProfileError",
    "ProfileSpec",
    "dedicated_holders",
    "diff",
    "percent_to_quota",
    "plan_change",
    "quota_to_percent",
    "validate_profile",
]

SCOPES = ("live", "config", "both")
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


def _cpus(text: Any) -> frozenset[int]:
    """Parse a stored cpulist; the inventory only stores what libvirt reported, so garbage counts as empty."""
    if not isinstance(text, str):
        return frozenset()
    try:
        return parse_cpulist(text)
    except ValueError:
        return frozenset()


def _held_by_tuning(tuning: Mapping[str, Any] | None, pool: frozenset[int]) -> set[int]:
    """Return the guest-pool CPUs that some thread of this tuning is pinned to alone."""
    if not tuning:
        return set()
    pins = [
        *tuning.get("vcpupin", {}).values(),
        tuning.get("emulatorpin"),
        *tuning.get("iothreadpin", {}).values(),
    ]
    held: set[int] = set()
    for pin in pins:
        cpus = _cpus(pin)
        if len(cpus) == 1:
            held |= cpus & pool
    return held


def _state_tuning(guest: GuestState) -> dict[str, Any] | None:
    """Return the tuning that decides what the guest holds now: live while it runs, config otherwise."""
    return (guest.live or guest.config) if guest.active else (guest.config or guest.live)


def _scope_tuning(guest: GuestState, scope: str) -> dict[str, Any]:
    """Return the tuning a change in ``scope`` starts from (for 'both', the live one, which runs now)."""
    if scope == "config":
        return guest.config or {}
    return guest.live or guest.config or {}


def dedicated_holders(guests: Iterable[GuestState], host: HostLayout) -> dict[int, set[int]]:
    """Return ``cpu_id -> {domain_id, ...}`` for every guest-pool CPU that some guest holds dedicated.

    A guest holds a CPU when one of its threads is pinned to that CPU alone. Several guests can claim one
    CPU (someone pinned by hand); every one of them is kept, so a guest re-planned onto that CPU still sees
    the others whatever the order of their ids.
    """
    pool = host.guest_pool
    holders: dict[int, set[int]] = {}
    for guest in guests:
        if guest.host_id != host.host_id:
            continue
        for cpu in _held_by_tuning(_state_tuning(guest), pool):
            holders.setdefault(cpu, set()).add(guest.domain_id)
    return holders


class _GuestPlanner:
    """Plan one guest on its host, given what the other guests hold; collects issues as it goes."""

    def __init__(
        self,
        spec: ProfileSpec,
        guest: GuestState,
        host: HostLayout,
        held: Mapping[int, set[int]],
        names: Mapping[int, str],
        scope: str,
    ) -> None:
        self.spec, self.guest, self.host, self.scope = spec, guest, host, scope
        self.others = {cpu: min(ids - {guest.domain_id}) for cpu, ids in held.items() if ids - {guest.domain_id}}
        self.names = names
        self.current = _scope_tuning(guest, scope)
        self.desired: dict[str, Any] = {}
        self.errors: list[Issue] = []
        self.warnings: list[Issue] = []
        # CPUs this guest keeps or takes alone: unavailable to its own later allocations as well.
        self.taken: set[int] = self._kept_holdings()

    def _error(self, field: str, code: str, message: str) -> None:
        self.errors.append(Issue(field=field, message=message, code=code))

    def _warn(self, field: str, code: str, message: str) -> None:
        self.warnings.append(Issue(field=field, message=message, code=code))

    def _guest_name(self, domain_id: int) -> str:
        return self.names.get(domain_id, f"guest #{domain_id}")

    def _kept_holdings(self) -> set[int]:
        """Return the CPUs held by this guest's threads that the profile leaves as they are."""
        kept: dict[str, Any] = {}
        vcpupin = self.spec.vcpupin
        if vcpupin is None:
            kept["vcpupin"] = self.current.get("vcpupin", {})
        elif vcpupin["strategy"] == "explicit":
            kept["vcpupin"] = {n: p for n, p in self.current.get("vcpupin", {}).items() if n not in vcpupin["cpus"]}
        if self.spec.emulatorpin is None:
            kept["emulatorpin"] = self.current.get("emulatorpin")
        if self.spec.iothreadpin is None:
            kept["iothreadpin"] = self.current.get("iothreadpin", {})
        return _held_by_tuning(kept, self.host.guest_pool)

    def _free(self) -> set[int]:
        return set(self.host.guest_pool) - set(self.others) - self.taken

    def _check_present(self, field: str, cpus: frozenset[int]) -> bool:
        absent = cpus - self.host.cpu_ids
        if absent:
            self._error(
                field,
                "cpu_absent",
                f"{field}: CPU {format_cpulist(absent)} does not exist on host {self.host.name} "
                f"(it has CPU {format_cpulist(self.host.cpu_ids) or 'none'})",
            )
            return False
        offline = cpus - self.host.online
        if offline:
            self._error(field, "cpu_offline", f"{field}: CPU {format_cpulist(offline)} is offline on {self.host.name}")
            return False
        return True

    def _check_not_held(self, field: str, cpus: frozenset[int]) -> bool:
        """Refuse a single-CPU pin onto a CPU that another guest holds dedicated."""
        if len(cpus) != 1:
            return True
        (cpu,) = cpus
        owner = self.others.get(cpu)
        if owner is None:
            return True
        self._error(field, "cpu_held", f"{field}: CPU {cpu} is already dedicated to guest {self._guest_name(owner)}")
        return False

    def _warn_shared_dedicated(self, field: str, cpus: frozenset[int]) -> None:
        """Warn when a multi-CPU pin lets this thread run on CPUs dedicated to other guests."""
        if len(cpus) == 1:
            return
        shared = sorted(cpu for cpu in cpus if cpu in self.others)
        if shared:
            owners = sorted({self._guest_name(self.others[cpu]) for cpu in shared})
            self._warn(
                field,
                "shares_dedicated",
                f"{field}: {format_cpulist(cpus)} includes CPU {format_cpulist(shared)}, dedicated to "
                f"{', '.join(owners)}; this thread can disturb them",
            )

    # vCPUs

    def plan_vcpupin(self) -> None:
        rule = self.spec.vcpupin
        if rule is None:
            return
        strategy = rule["strategy"]
        if strategy == "dedicated":
            pins = self._dedicated()
        elif strategy == "pool":
            pins = self._pool(rule)
        else:
            pins = self._explicit(rule["cpus"])
        if pins is None:
            return
        self.desired["vcpupin"] = {str(n): format_cpulist(cpus) for n, cpus in sorted(pins.items())}
        # A pool is a shared float by choice; only CPUs picked for these vCPUs can be "split".
        used = frozenset().union(*pins.values()) if pins else frozenset()
        spanned = sorted(cell for cell, ids in self.host.cells.items() if ids & used)
        if strategy != "pool" and len(spanned) > 1:
            self._warn(
                "vcpupin",
                "numa_split",
                f"vcpupin: the vCPUs of {self.guest.name} would run on NUMA cells "
                f"{', '.join(map(str, spanned))}; memory on the far cell is slower to reach",
            )

    def _dedicated(self) -> dict[int, frozenset[int]] | None:
        need = self.guest.vcpus_max
        free = self._free() - self._thread_cpulists()
        if len(free) < need:
            self._error(
                "vcpupin",
                "not_enough_cpus",
                f"vcpupin: {self.guest.name} needs {need} dedicated CPUs on {self.host.name} but only {len(free)} "
                f"of its guest pool ({format_cpulist(self.host.guest_pool) or 'empty'}) are free",
            )
            return None
        chosen = self._allocate(free, need)
        self.taken.update(chosen)
        for n, cpu in enumerate(chosen):
            sharers = sorted({self.others[s] for s in self._siblings(cpu) if s in self.others})
            if sharers:
                self._warn(
                    f"vcpupin {n}",
                    "sibling_shared",
                    f"vcpupin {n}: CPU {cpu} shares its core with CPUs dedicated to "
                    f"{', '.join(self._guest_name(d) for d in sharers)}",
                )
        return {n: frozenset({cpu}) for n, cpu in enumerate(chosen)}

    def _thread_cpulists(self) -> set[int]:
        """Return the CPUs the profile names for the emulator or iothreads, which dedicated vCPUs must avoid."""
        if self.spec.allow_shared_emulator:
            return set()
        rules = (self.spec.emulatorpin, self.spec.iothreadpin)
        return {cpu for rule in rules if rule and rule["strategy"] == "cpulist" for cpu in parse_cpulist(rule["cpus"])}

    def _siblings(self, cpu_id: int) -> frozenset[int]:
        cpu = self.host.cpu(cpu_id)
        return (cpu.siblings - {cpu_id}) if cpu else frozenset()

    def _allocate(self, free: set[int], need: int) -> list[int]:
        """Pick ``need`` CPUs from ``free``: one NUMA cell if possible, whole cores before hyperthreads."""
        by_cell = sorted(
            ((cell, free & ids) for cell, ids in self.host.cells.items()),
            key=lambda item: (-len(item[1]), item[0]),
        )
        fitting = [cpus for _, cpus in by_cell if len(cpus) >= need]
        candidates = [fitting[0]] if fitting else [cpus for _, cpus in by_cell if cpus]
        chosen: list[int] = []
        for cell_cpus in candidates:
            remaining = set(cell_cpus)
            while remaining and len(chosen) < need:
                cpu = min(remaining, key=lambda c: (self._core_rank(c, chosen), c))
                chosen.append(cpu)
                remaining.discard(cpu)
        return chosen

    def _core_rank(self, cpu: int, chosen: list[int]) -> int:
        """Rank a CPU: 0 alone on its core, 1 sharing it with this guest, 2 sharing it with another guest."""
        siblings = self._siblings(cpu)
        if siblings & set(self.others):
            return 2
        if siblings & (self.taken | set(chosen)):
            return 1
        return 0

    def _pool(self, rule: Mapping[str, Any]) -> dict[int, frozenset[int]] | None:
        cpus = parse_cpulist(rule["cpus"]) if rule.get("cpus") else self.host.guest_pool
        if not cpus:
            self._error("vcpupin", "cpu_absent", f"vcpupin: host {self.host.name} has no guest pool to pin to")
            return None
        field = "vcpupin.cpus" if rule.get("cpus") else "vcpupin"
        if not self._check_present(field, cpus):
            return None
        self._warn_shared_dedicated(field, cpus)
        return dict.fromkeys(range(self.guest.vcpus_max), cpus)

    def _explicit(self, wanted: Mapping[str, str]) -> dict[int, frozenset[int]] | None:
        pins: dict[int, frozenset[int]] = {}
        for key, text in wanted.items():
            n, cpus, field = int(key), parse_cpulist(text), f"vcpupin.cpus.{key}"
            if n >= self.guest.vcpus_max:
                self._error(
                    field,
                    "vcpu_out_of_range",
                    f"{field}: {self.guest.name} has vCPUs 0-{self.guest.vcpus_max - 1}, there is no vCPU {n}",
                )
                continue
            if self._check_present(field, cpus) and self._check_not_held(field, cpus):
                self._warn_shared_dedicated(field, cpus)
                pins[n] = cpus
                if len(cpus) == 1:
                    self.taken |= cpus & self.host.guest_pool
        return pins if len(pins) == len(wanted) else None

    # Emulator and iothreads

    def own_vcpu_cpus(self) -> set[int]:
        """Return the CPUs this guest's vCPUs will be pinned to alone once the plan is applied."""
        pins = {**self.current.get("vcpupin", {}), **self.desired.get("vcpupin", {})}
        return {cpu for pin in pins.values() if len(cpus := _cpus(pin)) == 1 for cpu in cpus}

    def _vcpu_cpus(self) -> set[int]:
        pins = {**self.current.get("vcpupin", {}), **self.desired.get("vcpupin", {})}
        return {cpu for pin in pins.values() for cpu in _cpus(pin)}

    def plan_threadpin(self, section: str) -> None:
        rule = self.spec.content.get(section)
        if rule is None:
            return
        if section == "emulatorpin" and self.guest.placement == "auto":
            self._error(
                "emulatorpin",
                "placement_auto",
                f"emulatorpin: {self.guest.name} has placement='auto' (numad chooses its CPUs) and libvirt "
                "refuses to pin its emulator; remove emulatorpin from the profile or set placement='static'",
            )
            return
        if section == "iothreadpin" and not self.guest.iothread_ids:
            self._warn("iothreadpin", "no_iothreads", f"iothreadpin: {self.guest.name} has no iothreads; skipped")
            return
        cpus = self._thread_cpus(section, rule)
        if cpus is None:
            return
        own = cpus & self.own_vcpu_cpus()
        if own and not self.spec.allow_shared_emulator:
            self._error(
                section,
                "isolation_broken",
                f"{section}: {format_cpulist(cpus)} includes CPU {format_cpulist(own)}, dedicated to a vCPU of "
                f"{self.guest.name}; choose other CPUs or set allow_shared_emulator",
            )
            return
        value = format_cpulist(cpus)
        if section == "emulatorpin":
            self.desired["emulatorpin"] = value
        else:
            self.desired["iothreadpin"] = {str(i): value for i in sorted(self.guest.iothread_ids)}

    def _thread_cpus(self, section: str, rule: Mapping[str, Any]) -> frozenset[int] | None:
        strategy = rule["strategy"]
        if strategy == "housekeeping":
            if not self.host.housekeeping:
                self._error(
                    f"{section}.strategy",
                    "no_housekeeping",
                    f"{section}.strategy 'housekeeping': host {self.host.name} has no housekeeping CPUs set; "
                    "ask an admin to set the host's CPU partition first",
                )
                return None
            return self.host.housekeeping if self._check_present(section, self.host.housekeeping) else None
        if strategy == "isolate":
            free = self._free() - self.own_vcpu_cpus()
            if not free:
                self._error(
                    section,
                    "not_enough_cpus",
                    f"{section}.strategy 'isolate': {self.guest.name} needs 1 free CPU on {self.host.name}, 0 are free",
                )
                return None
            # Near the guest's vCPUs if possible: the emulator touches the same memory.
            vcpu_cells = [ids for ids in self.host.cells.values() if ids & self._vcpu_cpus()]
            near = free & set().union(*vcpu_cells) if vcpu_cells else set()
            cpu = self._allocate(near or free, 1)[0]
            self.taken.add(cpu)
            return frozenset({cpu})
        field = f"{section}.cpus"
        cpus = parse_cpulist(rule["cpus"])
        if not (self._check_present(field, cpus) and self._check_not_held(field, cpus)):
            return None
        self._warn_shared_dedicated(field, cpus)
        if len(cpus) == 1:
            self.taken |= cpus & self.host.guest_pool
        return cpus

    # Scheduler

    def plan_sched(self) -> None:
        sched = self.spec.sched
        if not sched:
            return
        self.desired["sched"] = sched
        # The caps the guest already has stay in force next to the profile's: check the combination.
        parts = ("live", "config") if self.scope == "both" else (self.scope,)
        for part in parts:
            tuning = (self.guest.live if part == "live" else self.guest.config) or {}
            current = {k: v for k, v in (tuning.get("sched") or {}).items() if isinstance(v, int) and v > 0}
            for problem in cgroup_v1_conflicts({**current, **sched}):
                self._error("sched", "cgroup_v1_ratio", f"with the guest's current {part} caps, {problem}")
        shares = sched.get("cpu_shares", 0)
        if shares > SHARES_CGROUP_V2_MAX:
            self._warn(
                "sched.cpu_shares",
                "shares_cgroup_v2",
                f"sched.cpu_shares {shares} is above {SHARES_CGROUP_V2_MAX}: hosts with cgroup v2 accept only "
                f"1..{SHARES_CGROUP_V2_MAX} and will refuse it",
            )

    def check_scope(self) -> None:
        if self.scope in ("live", "both") and not self.guest.active:
            self._error(
                "scope",
                "guest_not_running",
                f"scope '{self.scope}': {self.guest.name} is {self.guest.state}, so it has no live tuning to change; "
                "use scope 'config' to change what it gets at its next start",
            )

    def run(self) -> GuestPlan:
        self.check_scope()
        self.plan_vcpupin()
        self.plan_threadpin("emulatorpin")
        self.plan_threadpin("iothreadpin")
        self.plan_sched()
        return GuestPlan(
            domain_id=self.guest.domain_id,
            name=self.guest.name,
            host_id=self.guest.host_id,
            desired=self.desired,
            errors=tuple(self.errors),
            warnings=tuple(self.warnings),
        )


def _apply(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """Return the tuning a guest ends up with when ``desired`` is set over ``current``."""
    return {
        "vcpupin": {**current.get("vcpupin", {}), **desired.get("vcpupin", {})},
        "emulatorpin": desired.get("emulatorpin", current.get("emulatorpin")),
        "iothreadpin": {**current.get("iothreadpin", {}), **desired.get("iothreadpin", {})},
    }


def plan_change(
    spec: ProfileSpec,
    targets: Sequence[GuestState],
    hosts: Mapping[int, HostLayout],
    guests_by_host: Mapping[int, Sequence[GuestState]],
    scope: str,
) -> list[GuestPlan]:
    """Return one plan per target, in target order, as if the targets were changed one after another.

    CPUs an earlier target is planned to hold count as held for later targets on the same host, so applying
    the plans in order never dedicates one CPU twice; a target's own current holdings are free for itself.
    """
    if scope not in SCOPES:
        raise ValueError(f"scope {scope!r} is unknown; use one of {', '.join(SCOPES)}")
    held: dict[int, dict[int, set[int]]] = {}
    names: dict[int, str] = {}
    for guests in guests_by_host.values():
        names.update({g.domain_id: g.name for g in guests})
    names.update({g.domain_id: g.name for g in targets})
    plans: list[GuestPlan] = []
    for guest in targets:
        host = hosts.get(guest.host_id)
        if host is None:
            issue = Issue("host", f"host #{guest.host_id} of {guest.name} is not in the inventory", "host_unknown")
            plans.append(GuestPlan(guest.domain_id, guest.name, guest.host_id, {}, errors=(issue,)))
            continue
        if host.host_id not in held:
            held[host.host_id] = dedicated_holders(guests_by_host.get(host.host_id, ()), host)
        host_held = held[host.host_id]
        plan = _GuestPlanner(spec, guest, host, host_held, names, scope).run()
        plans.append(plan)
        after = _apply(_scope_tuning(guest, scope), plan.desired)
        for ids in host_held.values():
            ids.discard(guest.domain_id)
        for cpu in _held_by_tuning(after, host.guest_pool):
            host_held.setdefault(cpu, set()).add(guest.domain_id)
    return plans


def diff(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return one row per field the plan sets: its current value, the desired one and whether it changes.

    Pages and change requests show these rows as "current -> desired", so reviewers see only what moves.
    """
    now = current or {}
    rows: list[dict[str, Any]] = []

    def add(label: str, before: Any, after: Any) -> None:
        rows.append({"field": label, "current": before, "desired": after, "changes": before != after})

    for n, pin in sorted(desired.get("vcpupin", {}).items(), key=lambda item: int(item[0])):
        add(f"vcpupin {n}", now.get("vcpupin", {}).get(n), pin)
    if "emulatorpin" in desired:
        add("emulatorpin", now.get("emulatorpin"), desired["emulatorpin"])
    for n, pin in sorted(desired.get("iothreadpin", {}).items(), key=lambda item: int(item[0])):
        add(f"iothreadpin {n}", now.get("iothreadpin", {}).get(n), pin)
    sched = desired.get("sched", {})
    for name in [*SCHED_NAMES, *(k for k in sched if k not in SCHED_NAMES)]:
        if name in sched:
            add(name, now.get("sched", {}).get(name), sched[name])
    return rows
