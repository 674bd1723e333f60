"""Validate pin profile content before anything is planned or sent to libvirt.

A pin profile is JSON written by a person. Every check that does not depend on a host lives here, so a profile
is refused when it is saved, with a message per field that names the field and the value at fault, rather than
when a worker is half-way through a change. The ranges are libvirt's own (see DESIGN.md): what passes here,
libvirt accepts.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hosts.cpulist import format_cpulist, parse_cpulist
from hosts.vocabulary import (
    DEFAULT_PERIOD,
    PERIOD_MAX,
    PERIOD_MIN,
    QUOTA_MAX,
    QUOTA_MIN,
    SCHED_NAMES,
    SHARES_MAX,
    SHARES_MIN,
    UNLIMITED_QUOTA,
)

SHARES_CGROUP_V2_MAX = 10000


VCPUPIN_STRATEGIES = ("dedicated", "pool", "explicit")


THREADPIN_STRATEGIES = ("housekeeping", "isolate", "cpulist")


PROFILE_KEYS = ("vcpupin", "emulatorpin", "iothreadpin", "sched", "allow_shared_emulator")


# libvirt's vCPU numbers stay far below this; it also keeps int() away from absurdly long digit strings.
MAX_VCPU_INDEX = 16383


class ProfileError(ValueError):
    """A profile that cannot be used, with every problem found listed under its field path.

    Callers show ``errors`` next to the fields of a form or return them from the API as they are, so the
    person can fix everything in one go rather than one error per attempt.
    """

    def __init__(self, errors: dict[str, list[str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{field}: {msg}" for field, msgs in errors.items() for msg in msgs))


@dataclass(frozen=True)
class ProfileSpec:
    """Hold a profile that passed validation, in its normalised form.

    Normalised means cpulists in canonical ``0-3,6`` form, explicit vCPU numbers without leading zeros and
    every unlimited quota spelled ``-1``, so two profiles that mean the same thing compare equal.
    """

    content: dict[str, Any]

    @property
    def vcpupin(self) -> dict[str, Any] | None:
        return self.content.get("vcpupin")

    @property
    def emulatorpin(self) -> dict[str, Any] | None:
        return self.content.get("emulatorpin")

    @property
    def iothreadpin(self) -> dict[str, Any] | None:
        return self.content.get("iothreadpin")

    @property
    def sched(self) -> dict[str, int]:
        return dict(self.content.get("sched", {}))

    @property
    def allow_shared_emulator(self) -> bool:
        return bool(self.content.get("allow_shared_emulator", False))

    def as_json(self) -> dict[str, Any]:
        """Return a copy of the normalised content, safe to store or to change."""
        return copy.deepcopy(self.content)


class _Collector:
    """Gather errors by field path while the whole profile is checked."""

    def __init__(self) -> None:
        self.errors: dict[str, list[str]] = {}

    def add(self, field: str, message: str) -> None:
        self.errors.setdefault(field, []).append(message)


def _cpulist(value: Any, field: str, out: _Collector) -> str | None:
    if not isinstance(value, str):
        out.add(field, f"{field} is {value!r}; it must be a cpulist string such as '2-5,8'")
        return None
    try:
        return format_cpulist(parse_cpulist(value))
    except ValueError as exc:  # CpulistError, or int() refusing an absurdly long number
        # The cpulist error already quotes the value (and the token at fault): say the field, then that, once.
        out.add(field, f"{field}: {exc}")
        return None


def _strategy(section: str, value: Any, choices: tuple[str, ...], out: _Collector) -> str | None:
    if not isinstance(value, dict):
        out.add(section, f"{section} is {value!r}; it must be an object such as {{'strategy': '{choices[0]}'}}")
        return None
    strategy = value.get("strategy")
    if "strategy" not in value:
        out.add(f"{section}.strategy", f"{section}.strategy is missing; choose one of {', '.join(choices)}")
        return None
    if not isinstance(strategy, str) or strategy not in choices:
        out.add(
            f"{section}.strategy", f"{section}.strategy {strategy!r} is unknown; choose one of {', '.join(choices)}"
        )
        return None
    allowed = {"strategy", "cpus"} if strategy in ("pool", "explicit", "cpulist") else {"strategy"}
    for key in value:
        if key not in allowed:
            out.add(f"{section}.{key}", f"{section}.{key} is not used by the '{strategy}' strategy; remove it")
    return strategy


def _vcpu_index(key: Any, field: str, out: _Collector) -> int | None:
    text = str(key) if isinstance(key, int) and not isinstance(key, bool) else key
    if not isinstance(text, str) or not text.isascii() or not text.isdigit() or len(text) > 5:
        out.add(field, f"{field}: {key!r} is not a vCPU number (0, 1, 2, ...)")
        return None
    index = int(text)
    if index > MAX_VCPU_INDEX:
        out.add(field, f"{field}: vCPU {index} is beyond the largest vCPU number libvirt allows ({MAX_VCPU_INDEX})")
        return None
    return index


def _vcpupin(value: Any, out: _Collector) -> dict[str, Any] | None:
    strategy = _strategy("vcpupin", value, VCPUPIN_STRATEGIES, out)
    if strategy is None:
        return None
    result: dict[str, Any] = {"strategy": strategy}
    if strategy == "pool" and "cpus" in value:
        result["cpus"] = _cpulist(value["cpus"], "vcpupin.cpus", out)
    elif strategy == "explicit":
        cpus = value.get("cpus")
        if not isinstance(cpus, dict) or not cpus:
            out.add("vcpupin.cpus", f"vcpupin.cpus is {cpus!r}; explicit pins need an object such as {{'0': '2'}}")
            return None
        pins: dict[int, str | None] = {}
        for key, pin in cpus.items():
            index = _vcpu_index(key, f"vcpupin.cpus.{key}", out)
            if index is None:
                continue
            if index in pins:
                out.add(f"vcpupin.cpus.{key}", f"vcpupin.cpus.{key}: vCPU {index} is listed more than once")
                continue
            pins[index] = _cpulist(pin, f"vcpupin.cpus.{key}", out)
        result["cpus"] = {str(i): pins[i] for i in sorted(pins)}
    return result


def _threadpin(section: str, value: Any, out: _Collector) -> dict[str, Any] | None:
    strategy = _strategy(section, value, THREADPIN_STRATEGIES, out)
    if strategy is None:
        return None
    result: dict[str, Any] = {"strategy": strategy}
    if strategy == "cpulist":
        if "cpus" not in value:
            out.add(f"{section}.cpus", f"{section}.cpus is missing; the 'cpulist' strategy needs e.g. '0-1'")
        else:
            result["cpus"] = _cpulist(value["cpus"], f"{section}.cpus", out)
    return result


def _sched_value(name: str, value: Any, out: _Collector) -> int | None:
    field = f"sched.{name}"
    if isinstance(value, bool) or not isinstance(value, int):
        out.add(field, f"{field} is {value!r}; it must be a whole number")
        return None
    if value == 0:
        out.add(field, f"{field} is 0, which libvirt reads as 'leave unset'; omit {name} to leave it unchanged")
        return None
    if name == "cpu_shares":
        if not SHARES_MIN <= value <= SHARES_MAX:
            out.add(field, f"{field} is {value}; it must be between {SHARES_MIN} and {SHARES_MAX}")
            return None
    elif name.endswith("_period"):
        if not PERIOD_MIN <= value <= PERIOD_MAX:
            out.add(field, f"{field} is {value}; a period must be between {PERIOD_MIN} and {PERIOD_MAX} µs")
            return None
    elif value < 0:
        return UNLIMITED_QUOTA
    elif not QUOTA_MIN <= value <= QUOTA_MAX:
        out.add(
            field,
            f"{field} is {value}; a quota must be between {QUOTA_MIN} and {QUOTA_MAX} µs, or negative for unlimited",
        )
        return None
    return value


def _sched(value: Any, out: _Collector) -> dict[str, int] | None:
    if not isinstance(value, dict) or not value:
        out.add("sched", f"sched is {value!r}; it must be an object such as {{'vcpu_quota': 20000}}")
        return None
    result: dict[str, int] = {}
    for key in value:
        if key not in SCHED_NAMES:
            out.add(f"sched.{key}", f"sched.{key} is not a scheduler parameter; use one of {', '.join(SCHED_NAMES)}")
    for name in SCHED_NAMES:
        if name in value:
            checked = _sched_value(name, value[name], out)
            if checked is not None:
                result[name] = checked
    _check_cgroup_v1_ratios(result, out)
    return result


def cgroup_v1_conflicts(sched: Mapping[str, int]) -> list[str]:
    """Return why a set of caps breaks the cgroup v1 rule (a child's ratio may not exceed its parent's).

    The vCPU, emulator and iothread cgroups are children of the guest's cgroup, which ``global_*`` caps.
    Quotas of 0 or below (unset, unlimited) take no part.
    """
    global_quota, global_period = sched.get("global_quota", 0), sched.get("global_period") or DEFAULT_PERIOD
    if global_quota <= 0:
        return []
    global_ratio = global_quota / global_period
    problems = []
    for kind in ("vcpu", "emulator", "iothread"):
        quota = sched.get(f"{kind}_quota", 0)
        if quota <= 0:
            continue
        period = sched.get(f"{kind}_period") or DEFAULT_PERIOD
        if global_ratio < quota / period:
            problems.append(
                f"global_quota {global_quota} per {global_period} µs ({global_ratio:.0%} of a CPU) is below "
                f"{kind}_quota {quota} per {period} µs ({quota / period:.0%}); cgroup v1 kernels refuse that"
            )
    return problems


def _check_cgroup_v1_ratios(sched: dict[str, int], out: _Collector) -> None:
    """Refuse a global cap tighter than a per-thread cap within the profile itself."""
    if sched.get("global_quota", 0) > 0 and sched.get("global_period") is None:
        return  # the period comes from the guest; the planner checks the combination
    for problem in cgroup_v1_conflicts(sched):
        out.add("sched.global_quota", f"sched.{problem}")


def validate_profile(content: Any) -> ProfileSpec:
    """Return the normalised profile, or raise ProfileError listing every problem by field path.

    Only host-independent checks happen here (syntax, ranges, combinations); whether the CPUs exist and are
    free is the planner's job, because it differs from host to host.
    """
    out = _Collector()
    if not isinstance(content, dict):
        raise ProfileError({"profile": [f"the profile is {content!r}; it must be a JSON object"]})
    for key in content:
        if key not in PROFILE_KEYS:
            out.add(str(key), f"{key!r} is not a profile field; use {', '.join(PROFILE_KEYS)}")
    result: dict[str, Any] = {}
    if "vcpupin" in content:
        result["vcpupin"] = _vcpupin(content["vcpupin"], out)
    for section in ("emulatorpin", "iothreadpin"):
        if section in content:
            result[section] = _threadpin(section, content[section], out)
    if "sched" in content:
        result["sched"] = _sched(content["sched"], out)
    if "allow_shared_emulator" in content:
        flag = content["allow_shared_emulator"]
        if not isinstance(flag, bool):
            out.add("allow_shared_emulator", f"allow_shared_emulator is {flag!r}; it must be true or false")
        result["allow_shared_emulator"] = flag
    if not out.errors and not any(key in content for key in ("vcpupin", "emulatorpin", "iothreadpin", "sched")):
        out.add("profile", "the profile changes nothing: set at least one of vcpupin, emulatorpin, iothreadpin, sched")
    if out.errors:
        raise ProfileError(out.errors)
    return ProfileSpec(content=result)
