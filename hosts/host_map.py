"""Work out which guest threads may run on which host CPU, for the host page's CPU map and the guest page.

Everything here is a pure function over model rows that returns dataclasses, except ``load_host_cpu_map``,
which reads the rows in a fixed number of queries (three, however many guests the host has) and hands
them to ``build_cpu_map``.

A guest thread (a vCPU, the emulator thread, an I/O thread) may run on the CPUs of its pin set. On one
host CPU each such thread is classified as:

- **exclusive**: its set is narrower than the whole host and no other guest's thread may run on this CPU;
- **shared**: its set is narrower than the whole host, but another guest's thread may run here too;
- **floating**: its set covers every host CPU (it is, in effect, not pinned).

A running guest is placed by its live tuning. A guest that is not running has no live tuning; it is placed
by its persistent config and marked as such. Running threads compete only with running threads (that is
what the kernel schedules now); a shut-off guest's threads are compared with every guest, which answers
"would it be alone there if it started now?".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hosts.cpulist import CpulistError, format_cpulist, parse_cpulist
from hosts.models import Domain, Host, HostCPU, NumaCell
from hosts.vocabulary import CAP_GROUPS, housekeeping_set, quota_to_percent, same_cpus

EXCLUSIVE, SHARED, FLOATING, IDLE = "exclusive", "shared", "floating", "idle"
PLACEMENT_LABELS = {
    EXCLUSIVE: "pinned exclusively",
    SHARED: "shared",
    FLOATING: "floating",
    IDLE: "no guest thread",
}


@dataclass(frozen=True)
class GuestThread:
    """One thread of one guest and the host CPUs it may run on."""

    domain_id: int
    domain_name: str
    kind: str  # "vcpu", "emulator" or "iothread", as in libvirt's vcpupin / emulatorpin / iothreadpin
    number: int | None
    cpulist: str
    cpus: frozenset[int]
    from_config: bool
    floating: bool

    @property
    def label(self) -> str:
        if self.kind == "vcpu":
            return f"vCPU {self.number}"
        if self.kind == "iothread":
            return f"iothread {self.number}"
        return "emulator"


@dataclass(frozen=True)
class ThreadOnCPU:
    """A guest thread that may run on a given host CPU, with how it is placed there."""

    thread: GuestThread
    placement: str

    @property
    def placement_label(self) -> str:
        return PLACEMENT_LABELS[self.placement]


@dataclass(frozen=True)
class GuestOnCPU:
    """The threads of one guest that may run on one host CPU with the same placement, for compact display."""

    domain_id: int
    domain_name: str
    from_config: bool
    placement: str
    labels: tuple[str, ...]

    @property
    def placement_label(self) -> str:
        return PLACEMENT_LABELS[self.placement]


@dataclass
class CPUSlot:
    """One logical host CPU in the map, with every guest thread that may run on it."""

    cpu_id: int
    online: bool
    socket_id: int | None
    core_id: int | None
    siblings: str
    threads: list[ThreadOnCPU] = field(default_factory=list)

    @property
    def placement(self) -> str:
        """Summarise the CPU by its most specific thread: exclusive, then shared, then floating, else idle."""
        kinds = {t.placement for t in self.threads}
        for kind in (EXCLUSIVE, SHARED, FLOATING):
            if kind in kinds:
                return kind
        return IDLE

    @property
    def placement_label(self) -> str:
        return PLACEMENT_LABELS[self.placement]

    @property
    def guest_ids(self) -> list[int]:
        return sorted({t.thread.domain_id for t in self.threads})

    @property
    def by_guest(self) -> list[GuestOnCPU]:
        """Group the threads by guest and placement, most specific placement first."""
        order = {EXCLUSIVE: 0, SHARED: 1, FLOATING: 2}
        groups: dict[tuple[int, str], list[ThreadOnCPU]] = {}
        for item in self.threads:
            groups.setdefault((item.thread.domain_id, item.placement), []).append(item)
        out = [
            GuestOnCPU(
                items[0].thread.domain_id,
                items[0].thread.domain_name,
                items[0].thread.from_config,
                placement,
                tuple(i.thread.label for i in items),
            )
            for (_, placement), items in groups.items()
        ]
        return sorted(out, key=lambda g: (order[g.placement], g.from_config, g.domain_name))


@dataclass
class Core:
    """A physical core: its hyperthread siblings side by side."""

    socket_id: int | None
    core_id: int | None
    cpus: list[CPUSlot]


@dataclass
class Cell:
    """A NUMA cell and its cores."""

    cell_id: int
    memory_kib: int | None
    cores: list[Core]

    @property
    def memory_label(self) -> str:
        if not self.memory_kib:
            return ""
        gib = self.memory_kib / 1024 / 1024
        return f"{gib:.1f} GiB" if gib >= 1 else f"{self.memory_kib // 1024} MiB"


@dataclass
class GuestPlacement:
    """One guest on the host page: where its threads may run, and from which definition that was read."""

    domain: Domain
    threads: list[GuestThread]
    from_config: bool
    problems: list[str]


@dataclass
class HostCPUMap:
    """The whole CPU map of a host: cells of cores of CPUs, and the guests placed on them."""

    cells: list[Cell]
    guests: list[GuestPlacement]
    host_cpus: frozenset[int]
    problems: list[str]

    @property
    def cpu_count(self) -> int:
        return len(self.host_cpus)


def guest_threads(domain: Domain, host_cpus: frozenset[int]) -> tuple[list[GuestThread], list[str]]:
    """Return a guest's threads with their CPU sets, and a message for each pin set that cannot be read.

    The live tuning is used when the guest has one (it is running); otherwise the persistent config.
    """
    from_config = domain.tuning_live is None
    tuning: dict[str, Any] = (domain.tuning_config if from_config else domain.tuning_live) or {}
    threads: list[GuestThread] = []
    problems: list[str] = []

    def add(kind: str, number: int | None, cpulist: Any) -> None:
        if not cpulist:
            return
        try:
            cpus = parse_cpulist(str(cpulist))
        except CpulistError as exc:
            problems.append(f"{domain.name}: cannot read the {kind} pin set: {exc}")
            return
        threads.append(
            GuestThread(
                domain_id=domain.pk,
                domain_name=domain.name,
                kind=kind,
                number=number,
                cpulist=format_cpulist(cpus),
                cpus=cpus,
                from_config=from_config,
                floating=bool(host_cpus) and cpus >= host_cpus,
            )
        )

    for number, cpulist in sorted((tuning.get("vcpupin") or {}).items(), key=lambda item: int(item[0])):
        add("vcpu", int(number), cpulist)
    add("emulator", None, tuning.get("emulatorpin"))
    for number, cpulist in sorted((tuning.get("iothreadpin") or {}).items(), key=lambda item: int(item[0])):
        add("iothread", int(number), cpulist)
    return threads, problems


def classify(thread: GuestThread, cpu_id: int, rivals: Iterable[GuestThread]) -> str:
    """Return how ``thread`` is placed on host CPU ``cpu_id`` given the other threads that may compete.

    ``rivals`` are the threads this one competes with; those of the same guest never make it shared.
    """
    if thread.floating:
        return FLOATING
    for other in rivals:
        if other.domain_id != thread.domain_id and cpu_id in other.cpus:
            return SHARED
    return EXCLUSIVE


def _core_key(cpu: HostCPU) -> tuple[Any, ...]:
    if cpu.core_id is not None:
        return ("core", cpu.socket_id, cpu.die_id, cpu.core_id)
    try:
        return ("siblings", min(parse_cpulist(cpu.siblings)))
    except CpulistError:
        return ("alone", cpu.cpu_id)


def build_cpu_map(cells: Sequence[NumaCell], cpus: Sequence[HostCPU], domains: Sequence[Domain]) -> HostCPUMap:
    """Build a host's CPU map from its NUMA cells, its CPUs and its guests (rows already loaded).

    CPUs are grouped by cell, then by core (hyperthread siblings together), each sorted by CPU number.
    """
    host_cpus = frozenset(cpu.cpu_id for cpu in cpus)
    guests: list[GuestPlacement] = []
    problems: list[str] = []
    for domain in domains:
        threads, bad = guest_threads(domain, host_cpus)
        guests.append(GuestPlacement(domain, threads, domain.tuning_live is None, bad))
        problems.extend(bad)

    all_threads = [t for g in guests for t in g.threads]
    running_threads = [t for t in all_threads if not t.from_config]
    by_cpu: dict[int, list[ThreadOnCPU]] = {cpu_id: [] for cpu_id in host_cpus}
    for thread in all_threads:
        rivals = all_threads if thread.from_config else running_threads
        for cpu_id in sorted(thread.cpus):
            if cpu_id in by_cpu:
                by_cpu[cpu_id].append(ThreadOnCPU(thread, classify(thread, cpu_id, rivals)))
            else:
                problems.append(
                    f"{thread.domain_name} {thread.label} names CPU {cpu_id}, which this host does not have"
                )

    cpus_by_cell: dict[int, list[HostCPU]] = {}
    for cpu in cpus:
        cpus_by_cell.setdefault(cpu.cell_id, []).append(cpu)
    out_cells: list[Cell] = []
    for cell in sorted(cells, key=lambda c: c.cell_id):
        cores: dict[tuple[Any, ...], list[CPUSlot]] = {}
        for cpu in sorted(cpus_by_cell.get(cell.pk, []), key=lambda c: c.cpu_id):
            slot = CPUSlot(cpu.cpu_id, cpu.online, cpu.socket_id, cpu.core_id, cpu.siblings, by_cpu[cpu.cpu_id])
            cores.setdefault(_core_key(cpu), []).append(slot)
        out_cells.append(
            Cell(
                cell.cell_id,
                cell.memory_kib,
                [
                    Core(slots[0].socket_id, slots[0].core_id, slots)
                    for slots in sorted(cores.values(), key=lambda s: s[0].cpu_id)
                ],
            )
        )
    return HostCPUMap(out_cells, guests, host_cpus, problems)


def load_host_cpu_map(host: Host) -> HostCPUMap:
    """Read a host's cells, CPUs and guests in three queries and build its CPU map."""
    cells = list(NumaCell.objects.filter(host=host).order_by("cell_id"))
    cpus = list(HostCPU.objects.filter(host=host).order_by("cpu_id"))
    domains = list(Domain.objects.filter(host=host).order_by("name"))
    for domain in domains:
        domain.host = host  # spares a query per guest when the page links back to the host
    return build_cpu_map(cells, cpus, domains)


@dataclass(frozen=True)
class VcpuRow:
    """One vCPU on the guest page: its pin live and in the config, and where the kernel really lets it run."""

    vcpu: int
    live: str | None
    config: str | None
    affinity: str | None
    state: str | None
    mismatch: bool


def vcpu_rows(domain: Domain) -> list[VcpuRow]:
    """Return one row per vCPU, flagging a live pin that the thread's real affinity does not match.

    The affinity is what the kernel enforces; a difference means something (``taskset``, a cgroup change)
    moved the thread behind libvirt's back, or libvirt did not apply the pin.
    """
    live = (domain.tuning_live or {}).get("vcpupin") or {}
    config = (domain.tuning_config or {}).get("vcpupin") or {}
    affinity = domain.affinity or {}
    states = domain.vcpu_states or {}
    numbers = {*live, *config, *affinity, *states}
    numbers.update(str(n) for n in range(domain.vcpus_max))
    rows = []
    for key in sorted(numbers, key=int):
        pin, real = live.get(key), affinity.get(key)
        rows.append(
            VcpuRow(
                vcpu=int(key),
                live=pin,
                config=config.get(key),
                affinity=real,
                state=states.get(key),
                mismatch=bool(pin and real) and not same_cpus(pin, real),
            )
        )
    return rows


@dataclass(frozen=True)
class CapRow:
    """A CFS bandwidth cap of one thread group (vcpu, emulator, iothread, global) in plain words."""

    group: str
    period: int | None
    quota: int | None
    meaning: str


def cap_rows(sched: dict[str, Any] | None) -> list[CapRow]:
    """Describe each ``*_period``/``*_quota`` pair: unlimited, not set, or the share of one CPU it allows."""
    sched = sched or {}
    rows = []
    for group in CAP_GROUPS:
        period, quota = sched.get(f"{group}_period"), sched.get(f"{group}_quota")
        if period is None and quota is None:
            continue
        if not quota:
            meaning = "not set (default: unlimited)"
        elif quota < 0:
            meaning = "unlimited"
        elif period:
            per = " per vCPU" if group == "vcpu" else ""
            meaning = f"at most {quota_to_percent(quota, period):.0f}% of one CPU{per}"
        else:
            meaning = f"quota {quota} µs per default period"
        rows.append(CapRow(group, period, quota, meaning))
    return rows


def partition_summary(host: Host, cpu_map: HostCPUMap) -> dict[str, str]:
    """Return a host's housekeeping CPUs and guest pool as cpulists, for the line above its CPU map."""
    online = {cpu.cpu_id for cell in cpu_map.cells for core in cell.cores for cpu in core.cpus if cpu.online}
    housekeeping = housekeeping_set(host.housekeeping_cpus)
    return {"housekeeping": format_cpulist(housekeeping), "pool": format_cpulist(online - housekeeping)}
