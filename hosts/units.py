"""Say libvirt's scheduler values the way an approver reads them: "unlimited", "50% of one CPU (20 ms per 40 ms)".

libvirt speaks in microseconds (``vcpu_quota`` 20000 per ``vcpu_period`` 40000) and spells "no cap" as a
negative quota, or 0 ("not set") in the persistent config. Every page where someone decides (the change
form's preview, a change request's diff, profile pages, the guest page) shows these values through here, so
a quota is never shown without the period it is measured against. The arithmetic (quota <-> % of one CPU)
is hosts/vocabulary.py's; this module only words it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hosts.vocabulary import DEFAULT_PERIOD, SCHED_NAMES, quota_to_percent

UNLIMITED = "unlimited"
NOT_SET = "not set (unlimited)"


def duration(us: int) -> str:
    """Return microseconds as a person writes them: ``500 µs``, ``20 ms``, ``2.5 ms``, ``1 s``."""
    if us >= 1_000_000 and us % 1_000_000 == 0:
        return f"{us // 1_000_000} s"
    if us >= 1000:
        return f"{us / 1000:g} ms"
    return f"{us} µs"


def percent(value: float) -> str:
    """Return a share of one CPU without needless decimals: ``50%``, ``12.5%``, ``0.3%``."""
    return f"{round(value, 1):g}%"


def cap(quota: int | None, period: int | None, *, config: bool = False, guest_period: bool = False) -> str:
    """Describe a ``*_quota`` with its ``*_period``: ``unlimited`` or ``50% of one CPU (20 ms per 40 ms)``.

    ``config`` says the value comes from the persistent config, where 0 means "not set" (no cap). A missing
    period is libvirt's default, and the text says so; with ``guest_period`` (a profile that sets a quota but
    no period) it is whatever period each guest has, and the text says that instead.
    """
    if quota is None:
        return "—"
    if quota < 0:
        return UNLIMITED
    if quota == 0:
        return NOT_SET if config else "0"
    if period and period > 0:
        return f"{percent(quota_to_percent(quota, period) or 0)} of one CPU ({duration(quota)} per {duration(period)})"
    share = percent(quota_to_percent(quota, DEFAULT_PERIOD) or 0)
    if guest_period:
        default = duration(DEFAULT_PERIOD)
        return f"{duration(quota)} per each guest's own period ({share} of one CPU at the default {default})"
    return f"{share} of one CPU ({duration(quota)} per {duration(DEFAULT_PERIOD)}, libvirt's default period)"


def period_text(period: int | None, *, config: bool = False) -> str:
    """Describe a ``*_period``: ``40 ms``, or "not set" (0 in the config)."""
    if period is None:
        return "—"
    if period == 0 and config:
        return f"not set ({duration(DEFAULT_PERIOD)})"
    return duration(period)


def shares(value: int | None, *, config: bool = False) -> str:
    """Describe ``cpu_shares``: a plain number, and what it weighs against."""
    if value is None:
        return "—"
    if value == 0 and config:
        return "not set (the default weight)"
    return f"{value} (relative weight: counts only when guests compete for the same CPUs)"


def sched_value(
    name: str, value: Any, sched: Mapping[str, Any] | None = None, *, config: bool = False, guest_period: bool = False
) -> str:
    """Describe one scheduler parameter; a quota takes its period from ``sched`` (the same tuning's values)."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int):
        return str(value)
    if name == "cpu_shares":
        return shares(value, config=config)
    if name.endswith("_period"):
        return period_text(value, config=config)
    if name.endswith("_quota"):
        period = (sched or {}).get(name.replace("_quota", "_period"))
        return cap(value, period if isinstance(period, int) else None, config=config, guest_period=guest_period)
    return str(value)


def is_sched(name: str) -> bool:
    """Whether a diff row's field is a scheduler parameter (pins are shown as the cpulists they are)."""
    return name in SCHED_NAMES


def _row_sched(rows: list[dict[str, Any]], key: str, fallback: Mapping[str, Any] | None) -> dict[str, Any]:
    """The scheduler values a diff part holds under ``key`` (current, desired, before, after), over ``fallback``."""
    values = dict(fallback or {})
    for row in rows:
        if is_sched(row["field"]) and isinstance(row.get(key), int) and row.get(key) != 0:
            values[row["field"]] = row[key]
    return values


def describe_diff_part(
    scope: str,
    rows: list[dict[str, Any]],
    current_sched: Mapping[str, Any] | None = None,
    *,
    keys: tuple[str, ...] = ("current", "desired"),
) -> list[dict[str, Any]]:
    """Add ``<key>_text`` (e.g. ``desired_text``) to each scheduler row of one scope's diff.

    A quota's period is the one the same side sets (a profile that caps in percent stores its period too),
    else the guest's current period (``current_sched``), else libvirt's default, said as such. Pin rows get
    no text: a cpulist is already what a person reads.
    """
    config = scope == "config"
    sides = {key: _row_sched(rows, key, current_sched) for key in keys}
    # The desired side keeps the guest's period unless the profile sets its own.
    if "desired" in sides:
        sides["desired"] = {**_row_sched(rows, "current", current_sched), **_row_sched(rows, "desired", None)}
    out = []
    for row in rows:
        row = dict(row)
        if is_sched(row["field"]):
            for key in keys:
                row[f"{key}_text"] = sched_value(row["field"], row.get(key), sides[key], config=config)
        out.append(row)
    return out


def describe_sched(sched: Mapping[str, Any] | None, *, profile: bool = True) -> list[dict[str, str]]:
    """Return scheduler values as ``{"name", "value", "text"}`` rows, a quota worded with its period.

    ``profile``: the values are a profile's, where a quota without a period keeps each guest's own period.
    """
    sched = sched or {}
    return [
        {"name": name, "value": str(sched[name]), "text": sched_value(name, sched[name], sched, guest_period=profile)}
        for name in SCHED_NAMES
        if name in sched
    ]
