"""Record what happened to each guest of a change, and settle the request once every job is done."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from hosts.audit import Actor, audit_user
from hosts.changes.rollback import conflicts
from hosts.models import ApplyJob, AuditEvent, ChangeRequest, ChangeTarget


def record_request_event(cr: ChangeRequest, action: str, actor: Actor = None, **fields: Any) -> None:
    """Write an audit row about a whole change request (who acted, which request, what changed)."""
    AuditEvent.objects.create(
        actor=audit_user(actor), action=action, change_request=cr, object_repr=f"CR-{cr.pk}", **fields
    )


def target_event(target: ChangeTarget, action: str, message: str = "", **fields: Any) -> AuditEvent:
    """An audit row about one guest of a change request, not yet saved."""
    return AuditEvent(
        action=action,
        change_request_id=target.change_request_id,
        host_id=target.host_id,
        domain_id=target.domain_id,
        object_repr=target.domain_name,
        message=message,
        **fields,
    )


def fail_target(target: ChangeTarget, message: str) -> None:
    """Record that a guest was not changed, and why."""
    target.status, target.error, target.finished_at = ChangeTarget.Status.FAILED, message, timezone.now()
    target.save(update_fields=["status", "error", "finished_at"])
    target_event(target, AuditEvent.Action.CHANGE_FAILED, message).save()


def finish_change_request(cr_id: int) -> None:
    """Set a request's final status once every job is done (no-op while some still run)."""
    with transaction.atomic():
        cr = ChangeRequest.objects.select_for_update().get(pk=cr_id)
        jobs = list(cr.jobs.values_list("kind", "status"))
        if any(status != ApplyJob.Status.DONE for _kind, status in jobs):
            return
        statuses = list(cr.targets.values_list("status", flat=True))
        S = ChangeTarget.Status
        if any(kind == ApplyJob.Kind.ROLLBACK for kind, _status in jobs):
            # The apply's finish time stays; the rollback's is kept per guest (hosts/changes/rollback.py).
            restored = all(s in (S.ROLLED_BACK, S.FAILED, S.SKIPPED) for s in statuses)
            cr.status = ChangeRequest.Status.ROLLED_BACK if restored else cr.status
            cr.status_message = (
                _rollback_verdict(cr) if restored else "Some guests could not be rolled back; see below."
            )
            cr.save(update_fields=["status", "status_message"])
            return
        cr.status, cr.status_message = _apply_verdict(statuses)
        cr.finished_at = timezone.now()
        cr.save(update_fields=["status", "status_message", "finished_at"])


def _rollback_verdict(cr: ChangeRequest) -> str:
    """A finished rollback's message: everything put back, or which fields were left alone and why."""
    left = [
        f"{target.domain_name}: {item['scope']} {item['field']}"
        for target in cr.targets.filter(status=ChangeTarget.Status.ROLLED_BACK).only("domain_name", "after")
        for item in conflicts(target.after)
    ]
    if not left:
        return "Every field this request changed was put back and verified."
    return (
        f"Put back and verified, except {len(left)} field{'s' if len(left) != 1 else ''} changed since this "
        f"request, left as they are ({', '.join(left[:5])}{', ...' if len(left) > 5 else ''}); see below."
    )


def _apply_verdict(statuses: list[str]) -> tuple[str, str]:
    """A finished apply's status and message from its guests' statuses."""
    S = ChangeTarget.Status
    applied, unknown = statuses.count(S.APPLIED), statuses.count(S.UNKNOWN)
    if applied == len(statuses):
        return ChangeRequest.Status.APPLIED, "Every guest changed and verified."
    if not applied and not unknown:
        return ChangeRequest.Status.FAILED, "No guest was changed; see below."
    message = f"{applied} of {len(statuses)} guests changed; the others are unchanged."
    if unknown:
        message = (
            f"{applied} of {len(statuses)} guests changed; {unknown} unknown (their host stopped answering "
            "mid-change: they are verified when it answers again); the others are unchanged."
        )
    return ChangeRequest.Status.PARTIALLY_APPLIED, message
