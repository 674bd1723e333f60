"""Service functions for change requests: propose, approve or reject (four eyes), start, finish, roll back.

The plan is computed when the request is made, shown to the approver, and computed again from fresh
inventory when the apply starts; if it no longer holds, the request fails with the reason and nothing is
touched. The per-host work itself is in hosts/apply.py.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeGuard

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from hosts import services
from hosts.libvirt_client import DomainFacts
from hosts.models import ApplyJob, AuditEvent, ChangeRequest, ChangeTarget, Domain, Host, PinProfileRevision
from hosts.models.rows import update_rows
from hosts.planning import SCOPE_PARTS, plan_for_domains
from hosts.profile_schema import validate_profile
from hosts.services import Actor, audit_user

log = logging.getLogger(__name__)

# Planner findings that concern one guest's availability rather than the plan as a whole: at apply time they
# fail that guest alone (unchanged) while the others go ahead.
AVAILABILITY_CODES = {"guest_not_running"}
# A running job renews its lease after every batch of guests; one that stops renewing for this long is reclaimed.
JOB_LEASE_SECONDS = 60


class PlanError(ValidationError):
    """The plan has errors for some guests; ``plans`` holds every guest's plan for showing them."""

    def __init__(self, message: str, plans: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.plans = plans


def _audit(cr: ChangeRequest, action: str, actor: Actor = None, **fields: Any) -> None:
    AuditEvent.objects.create(
        actor=audit_user(actor), action=action, change_request=cr, object_repr=f"CR-{cr.pk}", **fields
    )


def plan_rows(targets: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {
            "domain": t.domain.pk,
            "name": t.domain.name,
            "host": t.domain.host.name,
            "desired": t.plan.desired,
            "diff": t.diff,
            "errors": [i.as_json() for i in t.plan.errors],
            "warnings": [i.as_json() for i in t.plan.warnings],
        }
        for t in targets
    ]


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

    Refused (nothing saved) when a guest is unknown, the reason is empty, or the plan has errors for any
    guest; warnings are kept and shown to the approver.
    """
    requester = audit_user(actor)
    if requester is None:
        raise PermissionDenied("Log in to request a change.")
    if scope not in ChangeRequest.Scope.values:
        raise ValidationError({"scope": [f"Scope must be one of {', '.join(ChangeRequest.Scope.values)}."]})
    if not (reason or "").strip():
        raise ValidationError({"reason": ["Say why this change is needed."]})
    ids = list(dict.fromkeys(int(i) for i in domain_ids))
    if not ids:
        raise ValidationError({"domains": ["Pick at least one guest."]})
    domains = {d.pk: d for d in Domain.objects.filter(pk__in=ids).select_related("host")}
    missing = [i for i in ids if i not in domains]
    if missing:
        raise ValidationError({"domains": [f"No such guest: {', '.join(map(str, missing))}."]})
    stale = [d.name for d in domains.values() if d.is_stale]
    if stale:
        raise ValidationError({"domains": [f"The host of {', '.join(stale)} is down; its state is not known."]})
    spec = validate_profile(revision.content)
    planned = plan_for_domains(spec, [domains[i] for i in ids], scope)
    if not all(t.ok for t in planned):
        bad = [f"{t.domain.name}: {t.plan.errors[0].message}" for t in planned if not t.ok]
        raise PlanError("The plan has errors: " + "; ".join(bad), plan_rows(planned))
    cr = ChangeRequest.objects.create(
        profile_revision=revision,
        scope=scope,
        reason=reason.strip(),
        apply_at=apply_at,
        requested_by=requester,
    )
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
        for t in planned
    )
    _audit(
        cr,
        AuditEvent.Action.CHANGE_CREATE,
        actor,
        after={
            "profile": str(revision),
            "scope": scope,
            "reason": cr.reason,
            "targets": plan_rows(planned),
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
    _audit(
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
        from hosts import tasks

        tasks.start_change_request.delay_on_commit(cr.pk)
    return cr


@transaction.atomic
def reject_change_request(cr_id: int, *, comment: str = "", actor: Actor) -> ChangeRequest:
    """Reject someone else's pending request; nothing is applied."""
    return _decide(cr_id, approve=False, comment=comment, actor=actor)


def due_change_requests() -> list[int]:
    """Return the approved requests whose apply time has come."""
    now = timezone.now()
    return list(
        ChangeRequest.objects.filter(status=ChangeRequest.Status.SCHEDULED)
        .filter(Q(apply_at__isnull=True) | Q(apply_at__lte=now))
        .values_list("pk", flat=True)
    )


def _abort(cr: ChangeRequest, reason: str) -> None:
    with transaction.atomic():
        ChangeRequest.objects.filter(pk=cr.pk).update(
            status=ChangeRequest.Status.FAILED, status_message=reason, finished_at=timezone.now()
        )
        cr.targets.update(status=ChangeTarget.Status.SKIPPED, error=reason)
        _audit(cr, AuditEvent.Action.CHANGE_ABORTED, message=reason)


@dataclass
class Started:
    """What starting a change request left to run.

    ``claimed``: jobs this process claimed as it created them, to run now. ``waiting``: ids of jobs to
    claim first (their host was busy with another change, or the request was already applying: a
    redelivered task picks up its unfinished jobs).
    """

    claimed: list[ApplyJob] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)


def start_change_request(cr_id: int) -> Started:
    """Begin applying an approved request: read its hosts, re-plan, and create one job per host.

    Claimed with a conditional UPDATE so a redelivered task does not start it twice; a request already
    applying only has its unfinished jobs handed back. Storing the read, the re-plan's verdict and the jobs
    are one transaction. A job whose host is free is claimed by this process as it is created; its guests'
    snapshots (this very read) are stored with it and they are marked applying: the caller writes them
    straight away.
    """
    cr = ChangeRequest.objects.select_related("profile_revision").get(pk=cr_id)
    scopes = SCOPE_PARTS[cr.scope]
    targets = list(cr.targets.select_related("host"))
    host_ids = sorted({t.host_id for t in targets})

    def begin_reading() -> Callable[[], list[services.HostRead]]:
        # Re-plan from what the hosts say now: the guests' live state, and their config if the change writes it.
        return services.begin_reading_hosts(host_ids, light=True, keep_config="config" in scopes)

    # The reads start before the claim below and run while it commits; if it is lost, they are wasted.
    reading = begin_reading() if cr.status == ChangeRequest.Status.SCHEDULED and host_ids else None
    with transaction.atomic():
        claimed = ChangeRequest.objects.filter(pk=cr_id, status=ChangeRequest.Status.SCHEDULED).update(
            status=ChangeRequest.Status.APPLYING, started_at=timezone.now()
        )
        cr.refresh_from_db(fields=["status", "started_at"])
        if claimed:
            _audit(cr, AuditEvent.Action.CHANGE_APPLY)
    if not claimed:
        if cr.status != ChangeRequest.Status.APPLYING:
            return Started()
        unfinished = cr.jobs.filter(kind=ApplyJob.Kind.APPLY).exclude(status=ApplyJob.Status.DONE)
        return Started(waiting=list(unfinished.values_list("pk", flat=True)))
    if reading is None and host_ids:  # approved between the look above and the claim
        reading = begin_reading()
    answered = reading() if reading is not None else []
    with transaction.atomic():
        synced = services.store_reads(answered)
        problem, unavailable = _replan(cr, targets, host_ids)
        if problem:
            _abort(cr, problem)
            return Started()
        _record_unavailable(targets, unavailable)
        reachable = sorted({t.host_id for t in targets if t.pk not in unavailable})
        jobs, busy_hosts = _create_jobs(cr, reachable, JOB_LEASE_SECONDS)
        # The change touches only what this read just saw: it is each guest's snapshot, stored with the jobs,
        # so the worker writes without reading every guest again. A guest whose host is busy is read again
        # once its job is claimed: by then this read is old.
        read = {(r.host_id, f.uuid): f for r in synced if r.inventory for f in r.inventory.domains}
        now = timezone.now()
        starting = []
        for t in targets:
            facts = read.get((t.host_id, str(t.domain_uuid)))
            if t.pk in unavailable or t.host_id in busy_hosts or not _snapshot_holds(facts, scopes):
                continue
            t.before = facts.snapshot_json()
            t.status, t.started_at = ChangeTarget.Status.APPLYING, now
            starting.append(t)
        update_rows(starting, ["before", "status", "started_at"])
    if not jobs:
        finish_change_request(cr.pk)
    return Started(
        claimed=[job for job in jobs if job.host_id not in busy_hosts],
        waiting=[job.pk for job in jobs if job.host_id in busy_hosts],
    )


def _snapshot_holds(facts: DomainFacts | None, scopes: tuple[str, ...]) -> TypeGuard[DomainFacts]:
    """Whether a re-plan's read of a guest has all a snapshot of these scopes needs (else the worker reads it,
    and says why it cannot change it)."""
    if facts is None:
        return False
    return ("live" not in scopes or facts.live is not None) and (
        "config" not in scopes or (facts.config is not None and facts.config_xml is not None)
    )


def _replan(cr: ChangeRequest, targets: list[ChangeTarget], host_ids: list[int]) -> tuple[str, dict[int, str]]:
    """Plan the request again from the stored inventory.

    Returns why the whole request must stop ('' if it may go on) and, per target that cannot be changed
    now (its guest is gone, its host down, or the guest not running for a live change), the reason.
    """
    everyone = list(Domain.objects.filter(host_id__in=host_ids).select_related("host"))
    current = {(d.host_id, d.uuid): d for d in everyone}
    unavailable: dict[int, str] = {}
    live_targets = []
    for t in targets:
        domain = current.get((t.host_id, t.domain_uuid))
        if domain is None:
            unavailable[t.pk] = f"{t.domain_name} no longer exists on {t.host.name}; it was not changed."
        elif domain.is_stale:
            reason = domain.host.last_error or "it is down"
            unavailable[t.pk] = f"{t.host.name} cannot be reached ({reason}); {t.domain_name} was not changed."
        else:
            live_targets.append((t, domain))
    spec = validate_profile(cr.profile_revision.content)
    replanned = plan_for_domains(spec, [d for _t, d in live_targets], cr.scope, neighbours=everyone)
    for (t, _d), fresh in zip(live_targets, replanned, strict=True):
        availability = [i for i in fresh.plan.errors if i.code in AVAILABILITY_CODES]
        others = [i for i in fresh.plan.errors if i.code not in AVAILABILITY_CODES]
        if others:
            return f"The plan no longer holds for {t.domain_name}: {others[0].message} Nothing was changed.", {}
        if availability:
            unavailable[t.pk] = f"{t.domain_name}: {availability[0].message} It was not changed."
        elif fresh.plan.desired != t.desired:
            return (
                f"The plan for {t.domain_name} changed since it was approved (the hosts changed); "
                "nothing was changed. Submit the change again.",
                {},
            )
    return "", unavailable


def _record_unavailable(targets: list[ChangeTarget], unavailable: dict[int, str]) -> None:
    for target in targets:
        if target.pk in unavailable:
            fail_target(target, unavailable[target.pk])


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


def _create_jobs(cr: ChangeRequest, host_ids: list[int], lease_seconds: int) -> tuple[list[ApplyJob], set[int]]:
    """Create one apply job per host, claimed by this process unless another live job holds its host.

    Returns the jobs (their host and request loaded: the worker's threads read them without the database)
    and the hosts that were busy (their jobs are left to claim later).
    """
    hosts = list(Host.objects.select_for_update().filter(pk__in=host_ids).order_by("pk"))
    busy = set(_live_holders(host_ids, lease_seconds).values())
    now, me = timezone.now(), _worker_identity()
    jobs = [
        ApplyJob(change_request=cr, host=host, kind=ApplyJob.Kind.APPLY)
        if host.pk in busy
        else ApplyJob(
            change_request=cr,
            host=host,
            kind=ApplyJob.Kind.APPLY,
            status=ApplyJob.Status.RUNNING,
            claimed_at=now,
            claimed_by=me,
            attempts=1,
        )
        for host in hosts
    ]
    return ApplyJob.objects.bulk_create(jobs), busy


@transaction.atomic
def request_rollback(cr_id: int, *, actor: Actor) -> list[int]:
    """Queue putting every changed guest of a request back as its snapshot found it; return the job ids."""
    cr = ChangeRequest.objects.select_for_update().get(pk=cr_id)
    rollbackable = (ChangeRequest.Status.APPLIED, ChangeRequest.Status.PARTIALLY_APPLIED, ChangeRequest.Status.FAILED)
    if cr.status not in rollbackable:
        raise ValidationError(f"A change request that is {cr.get_status_display().lower()} cannot be rolled back.")
    touched = cr.targets.filter(
        status__in=[ChangeTarget.Status.APPLIED, ChangeTarget.Status.RESTORE_FAILED], before__isnull=False
    )
    host_ids = set(touched.values_list("host_id", flat=True))
    if not host_ids:
        raise ValidationError("No guest of this change request was changed; there is nothing to roll back.")
    if cr.jobs.filter(kind=ApplyJob.Kind.ROLLBACK).exists():
        raise ValidationError("A rollback of this change request has already been requested.")
    cr.rolled_back_by, cr.rolled_back_at = audit_user(actor), timezone.now()
    cr.status_message = "Rolling back."
    cr.save()
    _audit(
        cr,
        AuditEvent.Action.CHANGE_ROLLBACK,
        actor,
        before={"status": cr.status},
        after={"status": "rolling back", "hosts": sorted(host_ids)},
    )
    jobs = [ApplyJob.objects.create(change_request=cr, host_id=h, kind=ApplyJob.Kind.ROLLBACK) for h in host_ids]
    from hosts import tasks

    tasks.run_apply_jobs.delay_on_commit([job.pk for job in jobs])
    return [job.pk for job in jobs]


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
            restored = all(s in (S.ROLLED_BACK, S.FAILED, S.SKIPPED) for s in statuses)
            cr.status = ChangeRequest.Status.ROLLED_BACK if restored else cr.status
            cr.status_message = "Rolled back." if restored else "Some guests could not be rolled back; see below."
        else:
            applied = statuses.count(S.APPLIED)
            if applied == len(statuses):
                cr.status, cr.status_message = ChangeRequest.Status.APPLIED, "Every guest changed and verified."
            elif applied:
                cr.status = ChangeRequest.Status.PARTIALLY_APPLIED
                cr.status_message = f"{applied} of {len(statuses)} guests changed; the others are unchanged."
            else:
                cr.status, cr.status_message = ChangeRequest.Status.FAILED, "No guest was changed; see below."
        cr.finished_at = timezone.now()
        cr.save(update_fields=["status", "status_message", "finished_at"])


def _worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _claimant_is_dead(claimed_by: str) -> bool:
    """Whether a job's claimant was a process on this machine that no longer exists."""
    host, _, pid = claimed_by.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _holder_alive(job: ApplyJob, lease_seconds: int) -> bool:
    if job.status != ApplyJob.Status.RUNNING or job.claimed_at is None:
        return False
    fresh = job.claimed_at > timezone.now() - timedelta(seconds=lease_seconds)
    return fresh and not _claimant_is_dead(job.claimed_by)


def _live_holders(host_ids: Sequence[int] | set[int], lease_seconds: int) -> dict[int, int]:
    """Running jobs on these hosts whose holder is alive and renewing its lease: job id -> host id."""
    running = ApplyJob.objects.filter(host_id__in=host_ids, status=ApplyJob.Status.RUNNING)
    return {job.pk: job.host_id for job in running if _holder_alive(job, lease_seconds)}


def stalled_jobs(quiet_seconds: int) -> list[int]:
    """Jobs left running by nobody: their claimant died, or has not renewed the claim for ``quiet_seconds``
    (its task failed or hit its time limit, and a failed task is not redelivered). Handed to run_jobs
    again, they finish from the progress stored so far."""
    running = ApplyJob.objects.filter(status=ApplyJob.Status.RUNNING).order_by("pk")
    return [job.pk for job in running if not _holder_alive(job, quiet_seconds)]


@transaction.atomic
def claim_jobs(job_ids: Sequence[int], lease_seconds: int) -> tuple[list[ApplyJob], list[int]]:
    """Claim jobs for this worker process, all in one transaction; return (claimed jobs, ids of busy ones).

    A job that is done, or held by another live worker, is neither claimed nor busy. The jobs' host rows
    are locked while claiming, so one job at a time runs per host: a job whose host runs another live job
    is busy. A job held by a process on this machine that has died (a killed pool worker whose task was
    redelivered), or whose holder stopped renewing its lease, is free to claim.
    """
    host_ids = set(ApplyJob.objects.filter(pk__in=job_ids).values_list("host_id", flat=True))
    list(Host.objects.select_for_update().filter(pk__in=host_ids).order_by("pk"))
    jobs = ApplyJob.objects.filter(pk__in=job_ids).select_related("change_request", "host").order_by("pk")
    holders = _live_holders(host_ids, lease_seconds)
    claimed: list[ApplyJob] = []
    busy: list[int] = []
    for job in jobs:
        if job.status == ApplyJob.Status.DONE or job.pk in holders:
            continue
        taken = any(pk != job.pk and host_id == job.host_id for pk, host_id in holders.items())
        if taken or any(c.host_id == job.host_id for c in claimed):
            busy.append(job.pk)
        else:
            claimed.append(job)
    now, me = timezone.now(), _worker_identity()
    ApplyJob.objects.filter(pk__in=[job.pk for job in claimed]).update(
        status=ApplyJob.Status.RUNNING, claimed_at=now, claimed_by=me, attempts=F("attempts") + 1
    )
    for job in claimed:
        job.status, job.claimed_at, job.claimed_by, job.attempts = ApplyJob.Status.RUNNING, now, me, job.attempts + 1
    return claimed, busy
