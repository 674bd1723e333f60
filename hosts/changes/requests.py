"""Change requests: propose, approve or reject (four eyes), and ask for a rollback.

The plan is computed when the request is made and shown to the approver; hosts/changes/start.py computes
it again from fresh inventory when the apply starts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from celery import current_app
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from hosts.audit import Actor, audit_user
from hosts.changes.records import record_request_event
from hosts.host_lifecycle import refusal_for_hosts, refuse_guests_out_of_service
from hosts.models import ApplyJob, AuditEvent, ChangeRequest, ChangeTarget, PinProfileRevision
from hosts.planning.plans import TargetPlan
from hosts.planning.preview import preview_plan


class PlanError(ValidationError):
    """The plan has errors for some guests; ``plans`` holds every guest's plan for showing them."""

    def __init__(self, message: str, plans: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.plans = plans


def _check_request(scope: str, reason: str, domain_ids: Sequence[int]) -> None:
    """Refuse a request without a known scope, a reason or a guest, before anything is planned."""
    if scope not in ChangeRequest.Scope.values:
        raise ValidationError({"scope": [f"Scope must be one of {', '.join(ChangeRequest.Scope.values)}."]})
    if not (reason or "").strip():
        raise ValidationError({"reason": ["Say why this change is needed."]})
    if not domain_ids:
        raise ValidationError({"domains": ["Pick at least one guest."]})


def _create_targets(cr: ChangeRequest, targets: Sequence[TargetPlan]) -> None:
    """Store each guest's plan as a target of the request, with what identifies the guest if it goes."""
    ChangeTarget.objects.bulk_create(
        ChangeTarget(
            change_request=cr,
            host=t.domain.host,
            domain=t.domain,
            domain_uuid=t.domain.uuid,
            domain_name=t.domain.name,
            desired=t.plan.desired,
            diff=t.diff,
            warnings=[i.as_json() for i in t.plan.warnings],
        )
        for t in targets
    )


@transaction.atomic
def create_change_request(
    *,
    revision: PinProfileRevision,
    domain_ids: Sequence[int],
    scope: str,
    reason: str,
    apply_at: datetime | None = None,
    actor: Actor,
) -> ChangeRequest:
    """Plan a profile revision for guests and record the request, pending approval.

    Refused (nothing saved) when a guest is unknown or its host is down, in maintenance or removed, the reason is
    empty, or the plan has errors for any guest; warnings are kept and shown to the approver.
    """
    requester = audit_user(actor)
    if requester is None:
        raise PermissionDenied("Log in to request a change.")
    _check_request(scope, reason, domain_ids)
    refuse_guests_out_of_service(domain_ids)  # a host in maintenance or removed: refused, naming it and why
    preview = preview_plan(revision.content, domain_ids, scope, refuse_stale=True)
    if not preview.ok:
        bad = [f"{t.domain.name}: {t.plan.errors[0].message}" for t in preview.targets if not t.ok]
        raise PlanError("The plan has errors: " + "; ".join(bad), preview.rows)
    cr = ChangeRequest.objects.create(
        profile_revision=revision, scope=scope, reason=reason.strip(), apply_at=apply_at, requested_by=requester
    )
    _create_targets(cr, preview.targets)
    record_request_event(
        cr,
        AuditEvent.Action.CHANGE_CREATE,
        actor,
        after={
            "profile": str(revision),
            "scope": scope,
            "reason": cr.reason,
            "targets": preview.rows,
            "apply_at": apply_at.isoformat() if apply_at else None,
        },
    )
    return cr


def _decide(cr_id: int, *, approve: bool, comment: str, actor: Actor) -> ChangeRequest:
    cr = ChangeRequest.objects.select_for_update().get(pk=cr_id)
    user = audit_user(actor)
    if user is None:
        raise PermissionDenied("Log in to decide on a change request.")
    if cr.requested_by_id == user.pk:
        raise PermissionDenied("You cannot approve or reject your own change request: someone else must.")
    if cr.status != ChangeRequest.Status.PENDING:
        raise ValidationError(f"This change request is {cr.get_status_display().lower()}, not pending.")
    was = cr.status
    cr.decided_by, cr.decided_at, cr.decision_comment = user, timezone.now(), comment or ""
    cr.status = ChangeRequest.Status.SCHEDULED if approve else ChangeRequest.Status.REJECTED
    cr.save()
    action = AuditEvent.Action.CHANGE_APPROVE if approve else AuditEvent.Action.CHANGE_REJECT
    record_request_event(
        cr,
        action,
        actor,
        message=comment or "",
        before={"status": was},
        after={"status": cr.status},
    )
    return cr


@transaction.atomic
def approve_change_request(cr_id: int, *, comment: str = "", actor: Actor) -> ChangeRequest:
    """Approve someone else's pending request; it is applied at once, or at its apply time."""
    cr = _decide(cr_id, approve=True, comment=comment, actor=actor)
    if cr.apply_at is None or cr.apply_at <= timezone.now():
        queue_after_commit("hosts.tasks.start_change_request", cr.pk)
    return cr


@transaction.atomic
def reject_change_request(cr_id: int, *, comment: str = "", actor: Actor) -> ChangeRequest:
    """Reject someone else's pending request; nothing is applied."""
    return _decide(cr_id, approve=False, comment=comment, actor=actor)


@transaction.atomic
def request_rollback(cr_id: int, *, actor: Actor) -> list[int]:
    """Queue rolling back every changed guest of a request (field by field, conflicts left alone: see
    hosts/changes/rollback.py); return the job ids."""
    cr = ChangeRequest.objects.select_for_update().get(pk=cr_id)
    if cr.status not in ChangeRequest.ROLLBACKABLE:
        raise ValidationError(f"A change request that is {cr.get_status_display().lower()} cannot be rolled back.")
    touched = cr.targets.filter(status__in=ChangeTarget.ROLLBACKABLE, before__isnull=False)
    host_ids = set(touched.values_list("host_id", flat=True))
    if not host_ids:
        raise ValidationError("No guest of this change request was changed; there is nothing to roll back.")
    if refusal := refusal_for_hosts(host_ids):
        raise ValidationError(f"No rollback now: {refusal}")
    if cr.jobs.filter(kind=ApplyJob.Kind.ROLLBACK).exists():
        raise ValidationError("A rollback of this change request has already been requested.")
    cr.rolled_back_by, cr.rolled_back_at = audit_user(actor), timezone.now()
    cr.status_message = "Rolling back."
    cr.save()
    record_request_event(
        cr,
        AuditEvent.Action.CHANGE_ROLLBACK,
        actor,
        before={"status": cr.status},
        after={"status": "rolling back", "hosts": sorted(host_ids)},
    )
    jobs = [ApplyJob.objects.create(change_request=cr, host_id=h, kind=ApplyJob.Kind.ROLLBACK) for h in host_ids]
    queue_after_commit("hosts.tasks.run_apply_jobs", [job.pk for job in jobs])
    return [job.pk for job in jobs]


def queue_after_commit(task_name: str, *args: Any) -> None:
    """Hand a task to the workers once this transaction commits, by name: hosts/tasks.py calls these services
    and is never imported back by them. A broker that is down makes the commit's caller raise; the decision is
    recorded all the same and beat picks the work up from the database once the broker is back."""
    transaction.on_commit(lambda: current_app.send_task(task_name, args=args))
