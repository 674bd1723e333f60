"""The tuning vocabulary every layer speaks the same way.

libvirt's scheduler parameter names, change scopes, CPU-list equality, quota <-> percent of one CPU,
snapshot redaction and a host's housekeeping set: one definition each, used by the planner, the apply
engine, the forms, the API and the charts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hosts.cpulist import CpulistError, parse_cpulist

# libvirt's scheduler parameters, in its order.
SCHED_NAMES = (
    "cpu_shares",
    "vcpu_period",
    "vcpu_quota",
    "emulator_period",
    "emulator_quota",
    "global_period",
    "global_quota",
    "iothread_period",
    "iothread_quota",
)

# A change request's scope, and the parts of a guest's tuning each one writes.
SCOPE_PARTS = {"live": ("live",), "config": ("config",), "both": ("live", "config")}

# The thread groups libvirt caps with a *_period/*_quota pair.
CAP_GROUPS = ("vcpu", "emulator", "iothread", "global")

# libvirt's ranges (DESIGN.md): cpu_shares, every *_period and every *_quota (negative = unlimited).
SHARES_MIN, SHARES_MAX = 2, 262144
PERIOD_MIN, PERIOD_MAX = 1000, 1000000
QUOTA_MIN, QUOTA_MAX = 1000, 17592186044415
DEFAULT_PERIOD = 100000
UNLIMITED_QUOTA = -1


def percent_to_quota(percent: float, period: int) -> int:
    """Return the quota that lets a thread use ``percent`` % of one CPU in each ``period``.

    The UI speaks in percent of one CPU; libvirt speaks in microseconds per period (20 % at 100000 is 20000).
    """
    if isinstance(period, bool) or not isinstance(period, int) or not PERIOD_MIN <= period <= PERIOD_MAX:
        raise ValueError(f"period {period!r} must be an integer between {PERIOD_MIN} and {PERIOD_MAX} µs")
    if isinstance(percent, bool) or not isinstance(percent, int | float) or not percent > 0:
        raise ValueError(f"percent {percent!r} must be a number above 0")
    quota = round(percent * period / 100)
    if not QUOTA_MIN <= quota <= QUOTA_MAX:
        raise ValueError(
            f"{percent}% of period {period} is a quota of {quota} µs; libvirt needs {QUOTA_MIN}..{QUOTA_MAX}"
        )
    return quota


def quota_to_percent(quota: int | None, period: int | None) -> float | None:
    """Return the share of one CPU a quota allows, or None when the thread is not capped.

    A negative quota is unlimited and 0 is "not set", so both have no percentage; a missing period is
    libvirt's default of 100000 µs.
    """
    if quota is None or quota <= 0:
        return None
    return quota * 100 / (period if period and period > 0 else DEFAULT_PERIOD)


def caps_percent(sched: dict[str, Any] | None) -> dict[str, float]:
    """Return each capped thread group's cap in % of one CPU (``vcpu``: per vCPU) from scheduler parameters.

    Groups without a positive quota are not capped and are left out.
    """
    sched = sched or {}
    caps: dict[str, float] = {}
    for group in CAP_GROUPS:
        percent = quota_to_percent(sched.get(f"{group}_quota"), sched.get(f"{group}_period"))
        if percent is not None:
            caps[group] = round(percent, 1)
    return caps


def same_cpus(a: object, b: object) -> bool:
    """Whether two cpulists name the same CPUs (``0-2`` and ``0,1,2`` do); an unparsable one equals nothing."""
    try:
        return parse_cpulist(str(a)) == parse_cpulist(str(b))
    except CpulistError:
        return False


def public_snapshot(snapshot: dict[str, Any] | None) -> dict[str, Any] | None:
    """A guest snapshot without its persistent XML (which holds secrets), for the audit log, pages and the API."""
    return None if snapshot is None else {k: v for k, v in snapshot.items() if k != "config_xml"}


def housekeeping_set(text: str, host_cpus: Iterable[int] | None = None) -> frozenset[int]:
    """A host's housekeeping CPUs from its stored cpulist; empty when unset or unreadable (all CPUs are guests')."""
    try:
        return parse_cpulist(text, host_cpus=host_cpus) if text.strip() else frozenset()
    except CpulistError:
        return frozenset()
