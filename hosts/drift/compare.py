"""Compare a guest's desired state with what libvirt and the kernel report: the fields that drifted.

Pure: no libvirt, no database. The desired state is ``Domain.desired_state`` (``{"live": {...}, "config":
{...}}`` in the shape of ``ChangeTarget.desired``); only fields some applied request set are compared, so an
unmanaged field never drifts. What is compared, per scope:

- live: the pins libvirt reports for the running guest, and for each vCPU also the kernel's real affinity of
  its thread (``dom.vcpus()``): a ``taskset -pc`` on a vCPU thread leaves libvirt's pin as it was and shows
  only there, as drift of that vCPU's pin with the real affinity observed. Scheduler values are the live
  ones libvirt reads from the guest's cgroups, so a direct write to ``cpu.cfs_quota_us`` / ``cpu.max`` shows;
- config: the persistent definition's pins and scheduler values (0 there means "not set").

A running vCPU that no request placed, on a guest whose last applied profile places vCPUs ``dedicated``,
is reported apart (:func:`unplaced_vcpus`): a hot-added vCPU that came up floating.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hosts.libvirt.facts import DomainFacts, Tuning
from hosts.vocabulary import QUOTA_MAX, same_cpus

LIVE, CONFIG = "live", "config"

# What a hot-added vCPU of a ``dedicated`` guest is expected to get: a CPU of its own, chosen by the planner.
DEDICATED = "a dedicated CPU"


@dataclass(frozen=True)
class Finding:
    """One managed field of one guest, in one scope, that does not hold its desired value."""

    scope: str
    field: str
    expected: Any
    observed: Any


def _same_sched(name: str, expected: Any, observed: Any) -> bool:
    """Whether two scheduler values mean the same; every way of saying "unlimited quota" is one value."""
    if expected == observed:
        return True
    if name.endswith("_quota") and isinstance(expected, int) and isinstance(observed, int):

        def unlimited(value: int) -> bool:
            return value < 0 or value >= QUOTA_MAX

        return unlimited(expected) and unlimited(observed)
    return False


def _compare_pins(
    scope: str,
    section: str,
    desired: Mapping[str, Any],
    reported: Mapping[int, str],
    affinity: Mapping[int, str] | None,
) -> list[Finding]:
    out = []
    for key, expected in sorted(desired.items(), key=lambda kv: int(kv[0])):
        number = int(key)
        pin = reported.get(number)
        if not same_cpus(pin, expected):
            out.append(Finding(scope, f"{section} {number}", expected, pin))
            continue
        real = (affinity or {}).get(number)
        if real is not None and not same_cpus(real, expected):
            out.append(Finding(scope, f"{section} {number}", expected, real))
    return out


def compare_tuning(
    scope: str, desired: Mapping[str, Any], tuning: Tuning, affinity: Mapping[int, str] | None = None
) -> list[Finding]:
    """Return the fields of ``desired`` (one scope's) that ``tuning`` does not hold.

    ``affinity`` (live only) is each running vCPU thread's real affinity; a vCPU missing from it (offline, or
    not read) is judged by its pin alone.
    """
    out: list[Finding] = []
    out += _compare_pins(scope, "vcpupin", desired.get("vcpupin") or {}, tuning.vcpupin, affinity)
    if "emulatorpin" in desired and not same_cpus(tuning.emulatorpin, desired["emulatorpin"]):
        out.append(Finding(scope, "emulatorpin", desired["emulatorpin"], tuning.emulatorpin))
    out += _compare_pins(scope, "iothreadpin", desired.get("iothreadpin") or {}, tuning.iothreadpin, None)
    for name, expected in (desired.get("sched") or {}).items():
        observed = tuning.sched.get(name)
        if not _same_sched(name, expected, observed):
            out.append(Finding(scope, name, expected, observed))
    return out


def compared_scopes(facts: DomainFacts) -> set[str]:
    """The scopes a read of this guest lets us judge: live while it runs, config when the read included it."""
    scopes = set()
    if facts.live is not None:
        scopes.add(LIVE)
    if facts.config is not None:
        scopes.add(CONFIG)
    return scopes


def compare_guest(desired_state: Mapping[str, Any] | None, facts: DomainFacts) -> list[Finding]:
    """Return every managed field of the guest, in the scopes read, that differs from its desired state."""
    desired_state = desired_state or {}
    out: list[Finding] = []
    if facts.live is not None and desired_state.get(LIVE):
        out += compare_tuning(LIVE, desired_state[LIVE], facts.live, facts.affinity)
    if facts.config is not None and desired_state.get(CONFIG):
        out += compare_tuning(CONFIG, desired_state[CONFIG], facts.config)
    return out


def unplaced_vcpus(desired_state: Mapping[str, Any] | None, facts: DomainFacts) -> list[Finding]:
    """Return the running vCPUs that no applied request placed, observed where they may really run.

    Only meaningful for a guest whose last applied profile places vCPUs ``dedicated`` (the caller decides):
    each of its vCPUs is meant to have a CPU of its own, so one that came online unplaced (hot-added with
    ``virsh setvcpus --live``) is drift until a request places it.
    """
    placed = (desired_state or {}).get(LIVE, {}).get("vcpupin") or {}
    if facts.live is None or not placed or facts.affinity is None:
        return []
    out = []
    for number, real in sorted(facts.affinity.items()):
        if str(number) not in placed:
            out.append(Finding(LIVE, f"vcpupin {number}", DEDICATED, real))
    return out
