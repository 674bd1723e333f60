"""Turn guests' outcomes into rows: target fields, audit events, chart markers, inventory refresh."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from hosts.changes.desired_state import refresh_desired_state
from hosts.changes.guest import Outcome
from hosts.changes.records import target_event
from hosts.changes.rollback import CONFLICT, ROLLBACK_KEY, by_scope
from hosts.inventory import domain_values
from hosts.libvirt.facts import DomainFacts
from hosts.models import AuditEvent, ChangeTarget, Domain
from hosts.models.rows import update_rows
from hosts.vocabulary import public_snapshot

log = logging.getLogger(__name__)


def save_fields(target: ChangeTarget, **fields: Any) -> None:
    target.save(update_fields=list(set_fields(target, **fields)))


Marker = tuple[int, int | None, str, str, float]


def chart_marker(target: ChangeTarget, kind: str) -> Marker | None:
    """A chart marker for a guest whose change took effect (announced once its job is done)."""
    if target.domain_id is None:
        return None
    label = f"CR-{target.change_request_id} {kind.replace('_', ' ')}"
    return (target.domain_id, target.host_id, kind, label, timezone.now().timestamp())


@dataclass
class GuestRecord:
    """What one guest's outcome writes: its target row's changed fields, an audit row, and for a guest whose
    change (or rollback) took effect, its tuning now for the inventory and a chart marker."""

    target: ChangeTarget
    fields: tuple[str, ...]
    event: AuditEvent
    now: DomainFacts | None = None
    marker: Marker | None = None


def set_fields(target: ChangeTarget, **fields: Any) -> tuple[str, ...]:
    for name, value in fields.items():
        setattr(target, name, value)
    return tuple(sorted(fields))


def record_applied(target: ChangeTarget, outcome: Outcome) -> GuestRecord:
    """What an apply's outcome writes for one guest: applied, unknown (host gone mid-write), or failed."""
    if outcome.ok and outcome.guest is not None:
        after = public_snapshot(outcome.guest.snapshot_json())
        fields = set_fields(target, after=after, status=ChangeTarget.Status.APPLIED, finished_at=timezone.now())
        event = target_event(
            target, AuditEvent.Action.CHANGE_APPLIED, before=public_snapshot(target.before), after=after
        )
        return GuestRecord(target, fields, event, outcome.guest, chart_marker(target, "applied"))
    if outcome.unknown:
        message = (
            f"Its host stopped answering while it was being changed ({outcome.error}); whether it holds the change "
            "is not known. It is verified, and settled, the next time the host answers."
        )
        fields = set_fields(target, status=ChangeTarget.Status.UNKNOWN, error=message, finished_at=timezone.now())
        event = target_event(target, AuditEvent.Action.CHANGE_UNKNOWN, message, before=public_snapshot(target.before))
        return GuestRecord(target, fields, event)
    return _record_failed(target, outcome, "Applying failed")


def _record_failed(
    target: ChangeTarget, outcome: Outcome, what: str, action: str = AuditEvent.Action.CHANGE_FAILED
) -> GuestRecord:
    if outcome.untouched:
        status, message = ChangeTarget.Status.FAILED, f"{outcome.error}. It was not changed."
    elif outcome.restore_error:
        status = ChangeTarget.Status.RESTORE_FAILED
        message = f"{what}: {outcome.error}. Restoring it failed too: {outcome.restore_error}"
    else:
        status, message = ChangeTarget.Status.FAILED, f"{what}: {outcome.error}. It was restored to its snapshot."
    error = message if outcome.untouched else outcome.error
    fields = set_fields(
        target, status=status, error=error, restore_error=outcome.restore_error, finished_at=timezone.now()
    )
    event = target_event(target, action, message, before=public_snapshot(target.before))
    return GuestRecord(target, fields, event)


def record_settled(target: ChangeTarget, outcome: Outcome) -> GuestRecord:
    """What settling a guest left unknown writes: applied after all, restored, or still unknown."""
    if outcome.unknown:
        fields = set_fields(target, error=f"{target.error} Still not verified: {outcome.error}")
        return GuestRecord(target, fields, target_event(target, AuditEvent.Action.CHANGE_UNKNOWN, outcome.error))
    if outcome.ok and outcome.guest is not None:
        after = public_snapshot(outcome.guest.snapshot_json())
        message = "Verified when its host answered again: it holds the change."
        fields = set_fields(
            target, after=after, status=ChangeTarget.Status.APPLIED, error="", finished_at=timezone.now()
        )
        event = target_event(
            target, AuditEvent.Action.CHANGE_SETTLED, message, before=public_snapshot(target.before), after=after
        )
        return GuestRecord(target, fields, event, outcome.guest, chart_marker(target, "applied"))
    return _record_failed(target, outcome, "Settled when its host answered again", AuditEvent.Action.CHANGE_SETTLED)


def record_rolled_back(target: ChangeTarget, outcome: Outcome) -> GuestRecord:
    """What a rollback's outcome writes for one guest: rolled back (with what was restored and what was left
    alone, under ``after["rollback"]``), or the rollback's failure.

    The apply's own record stays as it was: ``after`` keeps what the apply read back and ``finished_at``
    the apply's finish time; the rollback's finish time is ``after["rollback"]["finished_at"]``.
    """
    if outcome.ok and outcome.guest is not None:
        items = outcome.rollback or []
        result = {"finished_at": timezone.now().isoformat(), "fields": items}
        fields = set_fields(
            target, status=ChangeTarget.Status.ROLLED_BACK, after={**(target.after or {}), ROLLBACK_KEY: result}
        )
        left_alone = [
            {k: item[k] for k in ("scope", "field", "wrote", "now", "why")}
            for item in items
            if item["action"] == CONFLICT
        ]
        after = {**by_scope(items, "restore_to"), **({"left_alone": left_alone} if left_alone else {})}
        event = target_event(target, AuditEvent.Action.CHANGE_ROLLED_BACK, before=by_scope(items, "now"), after=after)
        return GuestRecord(target, fields, event, outcome.guest, chart_marker(target, "rolled_back"))
    message = f"Rollback failed: {outcome.error}"
    fields = set_fields(target, restore_error=message)
    return GuestRecord(target, fields, target_event(target, AuditEvent.Action.CHANGE_FAILED, message))


def write_records(records: list[GuestRecord]) -> None:
    """Write a batch of guests' outcomes with a few statements, whatever the batch's size."""
    by_fields: dict[tuple[str, ...], list[ChangeTarget]] = {}
    for record in records:
        by_fields.setdefault(record.fields, []).append(record.target)
    for fields, targets in by_fields.items():
        update_rows(targets, fields)
    AuditEvent.objects.bulk_create([record.event for record in records])
    # A guest applied, settled or rolled back has a new desired state, stored in this same transaction.
    refresh_desired_state(record.target.domain_id for record in records if record.now is not None)


def refresh_inventory(changed: list[tuple[ChangeTarget, DomainFacts]]) -> None:
    """Show the guests as their last read found them in the inventory at once, without waiting for a sync."""
    rows = Domain.objects.filter(
        host_id__in={t.host_id for t, _g in changed}, uuid__in={t.domain_uuid for t, _g in changed}
    ).only("pk", "host_id", "uuid")
    pks = {(row.host_id, row.uuid): row.pk for row in rows}
    now = timezone.now()
    by_fields: dict[tuple[str, ...], list[Domain]] = {}
    for target, guest in changed:
        pk = pks.get((target.host_id, target.domain_uuid))
        if pk is None:
            continue  # the guest was undefined meanwhile: the next sync says so
        values = {**domain_values(guest, complete=False), "synced_at": now}
        by_fields.setdefault(tuple(values), []).append(Domain(pk=pk, **values))
    for names, domains in by_fields.items():
        update_rows(domains, names)
