"""Show an audit event's before/after as a readable diff: one line per field, ``field: old → new``.

Audit rows keep before and after as JSON (snapshots of a guest's tuning, a status, a profile's content); a
reader wants to see what changed, not two boxes of JSON to compare by eye. Nested objects are walked down
to their leaves (``live vcpupin 0``, ``config sched vcpu_quota``); lists are shown whole, compactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MAX_ROWS = 40
MAX_TEXT = 160
MISSING = object()


@dataclass(frozen=True)
class DiffRow:
    """One changed field of an audit event."""

    field: str
    old: str  # "" when the field did not exist before
    new: str  # "" when it does not exist after


def _leaves(value: Any, path: tuple[str, ...] = ()) -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_leaves(inner, (*path, str(key))))
        return out
    return {" ".join(path) or "value": value}


def _text(value: Any) -> str:
    if value is MISSING:
        return ""
    if value is None:
        return "—"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def diff_rows(before: Any, after: Any) -> tuple[list[DiffRow], int]:
    """Return the fields that differ between ``before`` and ``after`` (at most MAX_ROWS) and how many more.

    A side that is absent (None: an event with only an after, say) shows every field of the other side.
    """
    old = _leaves(before) if before is not None else {}
    new = _leaves(after) if after is not None else {}
    rows = [
        DiffRow(key, _text(old.get(key, MISSING)), _text(new.get(key, MISSING)))
        for key in dict.fromkeys([*old, *new])
        if old.get(key, MISSING) != new.get(key, MISSING)
    ]
    return rows[:MAX_ROWS], max(0, len(rows) - MAX_ROWS)
