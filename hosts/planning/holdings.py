"""Work out which guest holds which host CPU: a CPU that one of its threads is pinned to alone.

Two guests must never be dedicated the same CPU, so the planner keeps, per host, who holds what now and who
will once the earlier targets of a change are applied. This is that bookkeeping, apart from choosing CPUs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from hosts.cpulist import parse_cpulist
from hosts.planning.schema import ProfileSpec
from hosts.planning.types import GuestState, HostLayout


def pinned_cpus(text: Any) -> frozenset[int]:
    """Parse a stored cpulist; the inventory only stores what libvirt reported, so garbage counts as empty."""
    if not isinstance(text, str):
        return frozenset()
    try:
        return parse_cpulist(text)
    except ValueError:
        return frozenset()


def held_by_tuning(tuning: Mapping[str, Any] | None, pool: frozenset[int]) -> set[int]:
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
        cpus = pinned_cpus(pin)
        if len(cpus) == 1:
            held |= cpus & pool
    return held


def _state_tuning(guest: GuestState) -> dict[str, Any] | None:
    """Return the tuning that decides what the guest holds now: live while it runs, config otherwise."""
    return (guest.live or guest.config) if guest.active else (guest.config or guest.live)


def scope_tuning(guest: GuestState, scope: str) -> dict[str, Any]:
    """Return the tuning a change in ``scope`` starts from (for 'both', the live one, which runs now)."""
    if scope == "config":
        return guest.config or {}
    return guest.live or guest.config or {}


def tuning_after(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """Return the pins a guest ends up with when ``desired`` is set over ``current``."""
    return {
        "vcpupin": {**current.get("vcpupin", {}), **desired.get("vcpupin", {})},
        "emulatorpin": desired.get("emulatorpin", current.get("emulatorpin")),
        "iothreadpin": {**current.get("iothreadpin", {}), **desired.get("iothreadpin", {})},
    }


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
        for cpu in held_by_tuning(_state_tuning(guest), pool):
            holders.setdefault(cpu, set()).add(guest.domain_id)
    return holders


def holders_besides(holders: Mapping[int, set[int]], domain_id: int) -> dict[int, int]:
    """Return ``cpu_id -> domain_id`` for the CPUs other guests hold, naming the lowest id where several do.

    One name per CPU is enough to tell the operator who is in the way.
    """
    return {cpu: min(ids - {domain_id}) for cpu, ids in holders.items() if ids - {domain_id}}


def kept_holdings(spec: ProfileSpec, current: Mapping[str, Any], pool: frozenset[int]) -> set[int]:
    """Return the CPUs held by a guest's threads that the profile leaves as they are.

    The guest keeps them after the change, so its own new pins must not land on them either.
    """
    kept: dict[str, Any] = {}
    vcpupin = spec.vcpupin
    if vcpupin is None:
        kept["vcpupin"] = current.get("vcpupin", {})
    elif vcpupin["strategy"] == "explicit":
        kept["vcpupin"] = {n: p for n, p in current.get("vcpupin", {}).items() if n not in vcpupin["cpus"]}
    if spec.emulatorpin is None:
        kept["emulatorpin"] = current.get("emulatorpin")
    if spec.iothreadpin is None:
        kept["iothreadpin"] = current.get("iothreadpin", {})
    return held_by_tuning(kept, pool)


def move_holdings(
    holders: dict[int, set[int]], domain_id: int, tuning: Mapping[str, Any], pool: frozenset[int]
) -> None:
    """Record in ``holders`` that the guest now holds exactly the CPUs ``tuning`` pins alone.

    Called after each target is planned, so the next target on the host sees the CPUs as they will be.
    """
    for ids in holders.values():
        ids.discard(domain_id)
    for cpu in held_by_tuning(tuning, pool):
        holders.setdefault(cpu, set()).add(domain_id)
