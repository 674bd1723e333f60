"""Compare what a guest reports with what a change wanted (pure: no libvirt, no database)."""

from __future__ import annotations

from typing import Any

from hosts.libvirt.facts import DomainFacts
from hosts.vocabulary import same_cpus


class VerifyError(Exception):
    """What libvirt or the kernel reports after applying differs from the plan."""


def verify(
    desired: dict[str, Any], facts: DomainFacts, scopes: tuple[str, ...], *, expected: str = "planned"
) -> list[str]:
    """Return what differs between the plan and what the guest reports now (empty when all took effect).

    Live vCPU pins are also checked against the kernel's real affinity of the vCPU threads.
    """
    problems: list[str] = []
    for scope in scopes:
        tuning = facts.live if scope == "live" else facts.config
        if tuning is None:
            problems.append(f"{scope}: libvirt reports no {scope} tuning for this guest")
            continue
        for vcpu, cpus in (desired.get("vcpupin") or {}).items():
            if not same_cpus(tuning.vcpupin.get(int(vcpu)), cpus):
                problems.append(f"{scope} vcpupin {vcpu} is {tuning.vcpupin.get(int(vcpu))}, {expected} {cpus}")
            real = (facts.affinity or {}).get(int(vcpu))
            if scope == "live" and not same_cpus(real, cpus):
                problems.append(f"vCPU {vcpu} thread may run on CPUs {real} (kernel), {expected} {cpus}")
        if desired.get("emulatorpin") and not same_cpus(tuning.emulatorpin, desired["emulatorpin"]):
            problems.append(f"{scope} emulatorpin is {tuning.emulatorpin}, {expected} {desired['emulatorpin']}")
        for iothread, cpus in (desired.get("iothreadpin") or {}).items():
            if not same_cpus(tuning.iothreadpin.get(int(iothread)), cpus):
                problems.append(
                    f"{scope} iothreadpin {iothread} is {tuning.iothreadpin.get(int(iothread))}, {expected} {cpus}"
                )
        for name, value in (desired.get("sched") or {}).items():
            if tuning.sched.get(name) != int(value):
                problems.append(f"{scope} {name} is {tuning.sched.get(name)}, {expected} {value}")
    return problems


def touched(tuning: dict[str, Any] | None, desired: dict[str, Any]) -> dict[str, Any]:
    """The part of a snapshot's tuning that a change writes: what undoing the change puts back.

    Only the pins and caps the change touched are restored and checked; anything else (say, a cap someone
    set by hand meanwhile) is left as it is now.
    """
    tuning = tuning or {}
    out: dict[str, Any] = {}
    for key in ("vcpupin", "iothreadpin"):
        had = tuning.get(key) or {}
        picked = {k: had[k] for k in (desired.get(key) or {}) if k in had}
        if picked:
            out[key] = picked
    if desired.get("emulatorpin") and tuning.get("emulatorpin"):
        out["emulatorpin"] = tuning["emulatorpin"]
    had_sched = tuning.get("sched") or {}
    sched = {k: had_sched[k] for k in (desired.get("sched") or {}) if k in had_sched}
    if sched:
        out["sched"] = sched
    return out
