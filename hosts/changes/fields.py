"""A change's tuning one field at a time, named as its diff rows name them (pure: no libvirt, no database).

A change's ``desired`` and a guest's tuning share one shape (``{"vcpupin": {"0": "2"}, "emulatorpin": "0-1",
"iothreadpin": {"1": "3"}, "sched": {"vcpu_quota": 50000}}``); rollback, the desired state and the pages
walk it field by field with the labels the plan's diff rows use: ``vcpupin 0``, ``emulatorpin``,
``iothreadpin 1``, ``vcpu_quota``.
"""

from __future__ import annotations

from typing import Any

from hosts.vocabulary import same_cpus

PIN_MAPS = ("vcpupin", "iothreadpin")


def labels(desired: dict[str, Any] | None) -> list[str]:
    """Every field a change (or a tuning) sets, in a stable order: pins, then scheduler parameters."""
    desired = desired or {}
    out = [f"vcpupin {n}" for n in sorted(desired.get("vcpupin") or {}, key=int)]
    if desired.get("emulatorpin"):
        out.append("emulatorpin")
    out += [f"iothreadpin {n}" for n in sorted(desired.get("iothreadpin") or {}, key=int)]
    out += list(desired.get("sched") or {})
    return out


def value(tuning: dict[str, Any] | None, label: str) -> Any:
    """The value of one field in a tuning (or a change's ``desired``); None where it has none."""
    if not tuning:
        return None
    name, _, number = label.partition(" ")
    if name in PIN_MAPS:
        return (tuning.get(name) or {}).get(number)
    if name == "emulatorpin":
        return tuning.get("emulatorpin")
    return (tuning.get("sched") or {}).get(name)


def put(tuning: dict[str, Any], label: str, new: Any) -> None:
    """Set one field in a tuning-shaped dict (created as needed)."""
    name, _, number = label.partition(" ")
    if name in PIN_MAPS:
        tuning.setdefault(name, {})[number] = new
    elif name == "emulatorpin":
        tuning["emulatorpin"] = new
    else:
        tuning.setdefault("sched", {})[name] = new


def same(label: str, a: Any, b: Any) -> bool:
    """Whether two values of a field are equal: CPU lists by the CPUs they name, caps as integers."""
    if a is None or b is None:
        return a is b
    if label.partition(" ")[0] in (*PIN_MAPS, "emulatorpin"):
        return same_cpus(a, b)
    try:
        return int(a) == int(b)
    except (TypeError, ValueError):
        return False


def is_pin(label: str) -> bool:
    """Whether a field is a CPU pin (a cpulist) rather than a scheduler parameter."""
    return label.partition(" ")[0] in (*PIN_MAPS, "emulatorpin")
