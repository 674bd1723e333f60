"""Template tags that word scheduler values through hosts/units.py ("unlimited", "50% of one CPU (...)")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django import template

from hosts import units

register = template.Library()


@register.simple_tag
def sched_text(name: str, value: Any, sched: Mapping[str, Any] | None = None, scope: str = "live") -> str:
    """Word one scheduler parameter; a quota takes its period from ``sched`` (the same tuning)."""
    return units.sched_value(name, value, sched, config=scope == "config")


@register.filter
def is_sched(name: str) -> bool:
    """Whether a field name is a scheduler parameter (a pin field is a cpulist and needs no words)."""
    return units.is_sched(str(name))
