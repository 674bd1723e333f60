"""Choose the host CPUs for a guest's vCPUs, its emulator and its iothreads, as the profile's strategies say.

Each strategy picks from the CPUs that exist, are online and are not dedicated to another guest, and says
why when it cannot: one NUMA cell and whole cores are preferred, a dedicated CPU is never handed out twice,
and a thread that may disturb another guest's dedicated CPU is warned about.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hosts.cpulist import format_cpulist, parse_cpulist
from hosts.planning.draft import GuestDraft
from hosts.planning.holdings import pinned_cpus, tuning_after


def plan_vcpupin(draft: GuestDraft) -> None:
    """Set ``vcpupin`` by the profile's strategy, and warn when dedicated vCPUs span NUMA cells."""
    rule = draft.spec.vcpupin
    if rule is None:
        return
    strategy = rule["strategy"]
    if strategy == "dedicated":
        pins = _dedicated(draft)
    elif strategy == "pool":
        pins = _pool(draft, rule)
    else:
        pins = _explicit(draft, rule["cpus"])
    if pins is None:
        return
    draft.desired["vcpupin"] = {str(n): format_cpulist(cpus) for n, cpus in sorted(pins.items())}
    # A pool is a shared float by choice; only CPUs picked for these vCPUs can be "split".
    used = frozenset().union(*pins.values()) if pins else frozenset()
    spanned = sorted(cell for cell, ids in draft.host.cells.items() if ids & used)
    if strategy != "pool" and len(spanned) > 1:
        draft.warn(
            "vcpupin",
            "numa_split",
            f"vcpupin: the vCPUs of {draft.guest.name} would run on NUMA cells "
            f"{', '.join(map(str, spanned))}; memory on the far cell is slower to reach",
        )


def plan_threadpin(draft: GuestDraft, section: str) -> None:
    """Set ``emulatorpin`` or ``iothreadpin`` by the profile's strategy, keeping off this guest's own vCPUs."""
    rule = draft.spec.content.get(section)
    if rule is None:
        return
    if section == "emulatorpin" and draft.guest.placement == "auto":
        draft.error(
            "emulatorpin",
            "placement_auto",
            f"emulatorpin: {draft.guest.name} has placement='auto' (numad chooses its CPUs) and libvirt "
            "refuses to pin its emulator; remove emulatorpin from the profile or set placement='static'",
        )
        return
    if section == "iothreadpin" and not draft.guest.iothread_ids:
        draft.warn("iothreadpin", "no_iothreads", f"iothreadpin: {draft.guest.name} has no iothreads; skipped")
        return
    cpus = _thread_cpus(draft, section, rule)
    if cpus is None:
        return
    own = cpus & _own_vcpu_cpus(draft)
    if own and not draft.spec.allow_shared_emulator:
        draft.error(
            section,
            "isolation_broken",
            f"{section}: {format_cpulist(cpus)} includes CPU {format_cpulist(own)}, dedicated to a vCPU of "
            f"{draft.guest.name}; choose other CPUs or set allow_shared_emulator",
        )
        return
    value = format_cpulist(cpus)
    if section == "emulatorpin":
        draft.desired["emulatorpin"] = value
    else:
        draft.desired["iothreadpin"] = {str(i): value for i in sorted(draft.guest.iothread_ids)}


# vCPU strategies


def _dedicated(draft: GuestDraft) -> dict[int, frozenset[int]] | None:
    """Give each vCPU a free CPU of its own, warning where a core is shared with another guest's CPU."""
    need = draft.guest.vcpus_max
    free = draft.free() - _named_for_threads(draft)
    if len(free) < need:
        draft.error(
            "vcpupin",
            "not_enough_cpus",
            f"vcpupin: {draft.guest.name} needs {need} dedicated CPUs on {draft.host.name} but only {len(free)} "
            f"of its guest pool ({format_cpulist(draft.host.guest_pool) or 'empty'}) are free",
        )
        return None
    chosen = _allocate(draft, free, need)
    draft.taken.update(chosen)
    for n, cpu in enumerate(chosen):
        sharers = sorted({draft.others[s] for s in _siblings(draft, cpu) if s in draft.others})
        if sharers:
            draft.warn(
                f"vcpupin {n}",
                "sibling_shared",
                f"vcpupin {n}: CPU {cpu} shares its core with CPUs dedicated to "
                f"{', '.join(draft.guest_name(d) for d in sharers)}",
            )
    return {n: frozenset({cpu}) for n, cpu in enumerate(chosen)}


def _named_for_threads(draft: GuestDraft) -> set[int]:
    """Return the CPUs the profile names for the emulator or iothreads, which dedicated vCPUs must avoid."""
    if draft.spec.allow_shared_emulator:
        return set()
    rules = (draft.spec.emulatorpin, draft.spec.iothreadpin)
    return {cpu for rule in rules if rule and rule["strategy"] == "cpulist" for cpu in parse_cpulist(rule["cpus"])}


def _pool(draft: GuestDraft, rule: Mapping[str, Any]) -> dict[int, frozenset[int]] | None:
    """Let every vCPU float over the profile's cpulist, or over the host's guest pool when it names none."""
    cpus = parse_cpulist(rule["cpus"]) if rule.get("cpus") else draft.host.guest_pool
    if not cpus:
        draft.error("vcpupin", "cpu_absent", f"vcpupin: host {draft.host.name} has no guest pool to pin to")
        return None
    field = "vcpupin.cpus" if rule.get("cpus") else "vcpupin"
    if not _check_present(draft, field, cpus):
        return None
    _warn_shared_dedicated(draft, field, cpus)
    return dict.fromkeys(range(draft.guest.vcpus_max), cpus)


def _explicit(draft: GuestDraft, wanted: Mapping[str, str]) -> dict[int, frozenset[int]] | None:
    """Pin the vCPUs the profile names where it says; any refused pin leaves vcpupin unset for the guest."""
    pins: dict[int, frozenset[int]] = {}
    for key, text in wanted.items():
        n, cpus, field = int(key), parse_cpulist(text), f"vcpupin.cpus.{key}"
        if n >= draft.guest.vcpus_max:
            draft.error(
                field,
                "vcpu_out_of_range",
                f"{field}: {draft.guest.name} has vCPUs 0-{draft.guest.vcpus_max - 1}, there is no vCPU {n}",
            )
            continue
        if _check_present(draft, field, cpus) and _check_not_held(draft, field, cpus):
            _warn_shared_dedicated(draft, field, cpus)
            pins[n] = cpus
            draft.take_if_alone(cpus)
    return pins if len(pins) == len(wanted) else None


# Emulator and iothread strategies


def _thread_cpus(draft: GuestDraft, section: str, rule: Mapping[str, Any]) -> frozenset[int] | None:
    """Return the CPUs for the emulator or iothreads by strategy, or None after recording why there are none."""
    strategy = rule["strategy"]
    if strategy == "housekeeping":
        return _housekeeping(draft, section)
    if strategy == "isolate":
        return _isolate(draft, section)
    field = f"{section}.cpus"
    cpus = parse_cpulist(rule["cpus"])
    if not (_check_present(draft, field, cpus) and _check_not_held(draft, field, cpus)):
        return None
    _warn_shared_dedicated(draft, field, cpus)
    draft.take_if_alone(cpus)
    return cpus


def _housekeeping(draft: GuestDraft, section: str) -> frozenset[int] | None:
    """Return the host's housekeeping CPUs, which the admin keeps for the host and QEMU's helper threads."""
    housekeeping = draft.host.housekeeping
    if not housekeeping:
        draft.error(
            f"{section}.strategy",
            "no_housekeeping",
            f"{section}.strategy 'housekeeping': host {draft.host.name} has no housekeeping CPUs set; "
            "ask an admin to set the host's CPU partition first",
        )
        return None
    return housekeeping if _check_present(draft, section, housekeeping) else None


def _isolate(draft: GuestDraft, section: str) -> frozenset[int] | None:
    """Take one free CPU for the thread alone, in the NUMA cell of the guest's vCPUs when one is free there."""
    free = draft.free() - _own_vcpu_cpus(draft)
    if not free:
        draft.error(
            section,
            "not_enough_cpus",
            f"{section}.strategy 'isolate': {draft.guest.name} needs 1 free CPU on {draft.host.name}, 0 are free",
        )
        return None
    # Near the guest's vCPUs if possible: the emulator touches the same memory.
    vcpu_cpus = {cpu for pin in _vcpu_pins(draft).values() for cpu in pinned_cpus(pin)}
    vcpu_cells = [ids for ids in draft.host.cells.values() if ids & vcpu_cpus]
    near = free & set().union(*vcpu_cells) if vcpu_cells else set()
    cpu = _allocate(draft, near or free, 1)[0]
    draft.taken.add(cpu)
    return frozenset({cpu})


def _vcpu_pins(draft: GuestDraft) -> dict[str, Any]:
    """Return this guest's vCPU pins as they will be once the plan is applied."""
    pins: dict[str, Any] = tuning_after(draft.current, draft.desired)["vcpupin"]
    return pins


def _own_vcpu_cpus(draft: GuestDraft) -> set[int]:
    """Return the CPUs this guest's vCPUs will be pinned to alone once the plan is applied."""
    return {cpu for pin in _vcpu_pins(draft).values() if len(cpus := pinned_cpus(pin)) == 1 for cpu in cpus}


# Choosing among free CPUs


def _allocate(draft: GuestDraft, free: set[int], need: int) -> list[int]:
    """Pick ``need`` CPUs from ``free``: one NUMA cell if possible, whole cores before hyperthreads."""
    by_cell = sorted(
        ((cell, free & ids) for cell, ids in draft.host.cells.items()),
        key=lambda item: (-len(item[1]), item[0]),
    )
    fitting = [cpus for _, cpus in by_cell if len(cpus) >= need]
    candidates = [fitting[0]] if fitting else [cpus for _, cpus in by_cell if cpus]
    chosen: list[int] = []
    for cell_cpus in candidates:
        remaining = set(cell_cpus)
        while remaining and len(chosen) < need:
            cpu = min(remaining, key=lambda c: (_core_rank(draft, c, chosen), c))
            chosen.append(cpu)
            remaining.discard(cpu)
    return chosen


def _core_rank(draft: GuestDraft, cpu: int, chosen: list[int]) -> int:
    """Rank a CPU: 0 alone on its core, 1 sharing it with this guest, 2 sharing it with another guest."""
    siblings = _siblings(draft, cpu)
    if siblings & set(draft.others):
        return 2
    if siblings & (draft.taken | set(chosen)):
        return 1
    return 0


def _siblings(draft: GuestDraft, cpu_id: int) -> frozenset[int]:
    """Return the other hyperthreads of a CPU's core, which share its caches and execution units."""
    cpu = draft.host.cpu(cpu_id)
    return (cpu.siblings - {cpu_id}) if cpu else frozenset()


# Checks on the CPUs a profile names


def _check_present(draft: GuestDraft, field: str, cpus: frozenset[int]) -> bool:
    """Refuse CPUs the host does not have or that are offline."""
    host = draft.host
    absent = cpus - host.cpu_ids
    if absent:
        draft.error(
            field,
            "cpu_absent",
            f"{field}: CPU {format_cpulist(absent)} does not exist on host {host.name} "
            f"(it has CPU {format_cpulist(host.cpu_ids) or 'none'})",
        )
        return False
    offline = cpus - host.online
    if offline:
        draft.error(field, "cpu_offline", f"{field}: CPU {format_cpulist(offline)} is offline on {host.name}")
        return False
    return True


def _check_not_held(draft: GuestDraft, field: str, cpus: frozenset[int]) -> bool:
    """Refuse a single-CPU pin onto a CPU that another guest holds dedicated."""
    if len(cpus) != 1:
        return True
    (cpu,) = cpus
    owner = draft.others.get(cpu)
    if owner is None:
        return True
    draft.error(field, "cpu_held", f"{field}: CPU {cpu} is already dedicated to guest {draft.guest_name(owner)}")
    return False


def _warn_shared_dedicated(draft: GuestDraft, field: str, cpus: frozenset[int]) -> None:
    """Warn when a multi-CPU pin lets this thread run on CPUs dedicated to other guests."""
    if len(cpus) == 1:
        return
    shared = sorted(cpu for cpu in cpus if cpu in draft.others)
    if shared:
        owners = sorted({draft.guest_name(draft.others[cpu]) for cpu in shared})
        draft.warn(
            field,
            "shares_dedicated",
            f"{field}: {format_cpulist(cpus)} includes CPU {format_cpulist(shared)}, dedicated to "
            f"{', '.join(owners)}; this thread can disturb them",
        )
