"""Plan what applying a pin profile to guests would set, and what stands in the way.

Planning is pure: it reads a snapshot of the hosts' CPU layout and the guests' tuning and returns, per guest,
the concrete tuning to set (``desired``, in the shape the inventory stores) with blocking errors and warnings.
The same plan is shown to the requester, checked again by the approver and applied by the worker, so it must
be deterministic and must never need libvirt or the database to answer.

``plan_change`` is the entry point; the steps it runs per guest live beside it: hosts/planning/holdings.py
(who holds which CPU), placement.py (choosing CPUs for vCPUs, emulator and iothreads) and sched.py (caps).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hosts.planning.draft import GuestDraft
from hosts.planning.holdings import dedicated_holders, move_holdings, scope_tuning, tuning_after
from hosts.planning.placement import plan_threadpin, plan_vcpupin
from hosts.planning.sched import plan_sched
from hosts.planning.schema import ProfileSpec
from hosts.planning.types import GuestPlan, GuestState, HostLayout, Issue
from hosts.vocabulary import SCHED_NAMES, SCOPE_PARTS, same_cpus


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
    if scope not in SCOPE_PARTS:
        raise ValueError(f"scope {scope!r} is unknown; use one of {', '.join(SCOPE_PARTS)}")
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
        plan = _plan_guest(GuestDraft(spec, guest, host, host_held, names, scope))
        plans.append(plan)
        after = tuning_after(scope_tuning(guest, scope), plan.desired)
        move_holdings(host_held, guest.domain_id, after, host.guest_pool)
    return plans


def _plan_guest(draft: GuestDraft) -> GuestPlan:
    """Run every planning step on one guest, in the order their issues are listed."""
    _check_scope(draft)
    plan_vcpupin(draft)
    plan_threadpin(draft, "emulatorpin")
    plan_threadpin(draft, "iothreadpin")
    plan_sched(draft)
    return draft.plan()


def _check_scope(draft: GuestDraft) -> None:
    """Refuse a live change to a guest that does not run, since it has no live tuning."""
    guest, scope = draft.guest, draft.scope
    if "live" in SCOPE_PARTS[scope] and not guest.active:
        draft.error(
            "scope",
            "guest_not_running",
            f"scope '{scope}': {guest.name} is {guest.state}, so it has no live tuning to change; "
            "use scope 'config' to change what it gets at its next start",
        )


def diff(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return one row per field the plan sets: its current value, the desired one and whether it changes.

    Pages and change requests show these rows as "current -> desired", so reviewers see only what moves.
    A pin changes when it names other CPUs, which is how the apply's verification compares pins too.
    """
    now = current or {}
    rows: list[dict[str, Any]] = []

    def add(label: str, before: Any, after: Any, changes: bool) -> None:
        rows.append({"field": label, "current": before, "desired": after, "changes": changes})

    def add_pin(label: str, before: Any, after: Any) -> None:
        add(label, before, after, not same_cpus(before, after))

    for n, pin in sorted(desired.get("vcpupin", {}).items(), key=lambda item: int(item[0])):
        add_pin(f"vcpupin {n}", now.get("vcpupin", {}).get(n), pin)
    if "emulatorpin" in desired:
        add_pin("emulatorpin", now.get("emulatorpin"), desired["emulatorpin"])
    for n, pin in sorted(desired.get("iothreadpin", {}).items(), key=lambda item: int(item[0])):
        add_pin(f"iothreadpin {n}", now.get("iothreadpin", {}).get(n), pin)
    sched = desired.get("sched", {})
    for name in [*SCHED_NAMES, *(k for k in sched if k not in SCHED_NAMES)]:
        if name in sched:
            before = now.get("sched", {}).get(name)
            add(name, before, sched[name], before != sched[name])
    return rows
