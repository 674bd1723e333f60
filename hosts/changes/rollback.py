"""Decide, field by field, what rolling back one guest's change puts back and what it leaves alone (pure).

A rollback restores only the fields its request changed, and only where the guest still holds the value the
request wrote. A field that holds something else now (a later change request, a hand change with ``virsh``)
is a **conflict**: it is left as it is and reported with the reason. A field already back at its value from
before the change needs nothing. The same plan serves the preview an approver reads before confirming and
the rollback itself, which re-reads the guests and plans again at that moment.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from hosts.changes import fields

RESTORE, CONFLICT, ALREADY = "restore", "conflict", "already"

# Where a rolled-back target keeps its rollback's result, in ChangeTarget.after beside what the apply read
# back: {"finished_at": iso time, "fields": [FieldPlan.as_json(), ...]}.
ROLLBACK_KEY = "rollback"

# (scope, field label) -> (change request id, value it set), for in-force requests applied after this one.
LaterWrites = dict[tuple[str, str], tuple[int, Any]]


@dataclass(frozen=True)
class FieldPlan:
    """One field of one guest in one scope: what the request wrote, what it holds now, and what to do."""

    scope: str
    field: str
    wrote: Any  # what the change request wrote
    now: Any  # what the guest holds now
    restore_to: Any  # the value from before the change
    action: str  # RESTORE, CONFLICT or ALREADY
    why: str = ""

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _why_conflict(scope: str, label: str, now: Any, later: LaterWrites) -> str:
    setter = later.get((scope, label))
    if setter is not None and fields.same(label, setter[1], now):
        return f"CR-{setter[0]}, applied later, set it to {now}"
    if setter is not None:
        return f"changed since: CR-{setter[0]} set it to {setter[1]} later, and it was changed again outside isoweb"
    return "changed since outside this request (by hand or another tool)"


def plan_rollback(
    desired: dict[str, Any],
    before: dict[str, Any],
    now: dict[str, Any],
    scopes: tuple[str, ...],
    later: LaterWrites | None = None,
) -> list[FieldPlan]:
    """Plan one guest's rollback from the change's ``desired``, its snapshot ``before`` and the guest ``now``.

    ``before`` and ``now`` have a snapshot's shape (``{"live": tuning, "config": tuning}``, a scope None where
    the guest had none). Fields the change did not really change (its value equalled the snapshot's) are
    left out: there is nothing to put back.
    """
    later = later or {}
    plan: list[FieldPlan] = []
    for scope in scopes:
        was_tuning = before.get(scope)
        if not was_tuning:
            continue  # nothing was snapshotted in this scope, so nothing was written there
        now_tuning = now.get(scope)
        for label in fields.labels(desired):
            wrote, was = fields.value(desired, label), fields.value(was_tuning, label)
            if fields.same(label, wrote, was):
                continue
            if now_tuning is None:
                why = (
                    "the guest is not running: its live values went when it stopped"
                    if scope == "live"
                    else "the guest has no persistent config now"
                )
                plan.append(FieldPlan(scope, label, wrote, None, was, CONFLICT, why))
                continue
            current = fields.value(now_tuning, label)
            if fields.same(label, current, wrote):
                plan.append(FieldPlan(scope, label, wrote, current, was, RESTORE))
            elif fields.same(label, current, was):
                plan.append(FieldPlan(scope, label, wrote, current, was, ALREADY, "already back as before the change"))
            else:
                why = _why_conflict(scope, label, current, later)
                plan.append(FieldPlan(scope, label, wrote, current, was, CONFLICT, why))
    return plan


def restoring(plan: list[FieldPlan], scope: str) -> dict[str, Any]:
    """The values a plan puts back in one scope, in a change's ``desired`` shape."""
    out: dict[str, Any] = {}
    for item in plan:
        if item.scope == scope and item.action == RESTORE:
            fields.put(out, item.field, item.restore_to)
    return out


def by_scope(items: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """``{scope: tuning}`` of one value (``now``, ``restore_to``, ...) of the restored items (for the audit log)."""
    out: dict[str, Any] = {}
    for item in items:
        if item["action"] == RESTORE:
            fields.put(out.setdefault(item["scope"], {}), item["field"], item[key])
    return out


def rollback_result(after: dict[str, Any] | None) -> dict[str, Any] | None:
    """A target's rollback record from its ``after`` (None if it was never rolled back)."""
    result = (after or {}).get(ROLLBACK_KEY)
    return result if isinstance(result, dict) else None


def apply_after(after: dict[str, Any] | None) -> dict[str, Any] | None:
    """A target's ``after`` as the apply read it back, without the rollback's record."""
    if after is None:
        return None
    rest = {k: v for k, v in after.items() if k != ROLLBACK_KEY}
    return rest or None


def conflicts(after: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The fields a target's rollback left alone because they changed since."""
    result = rollback_result(after) or {}
    return [item for item in result.get("fields") or [] if item.get("action") == CONFLICT]
