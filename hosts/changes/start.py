"""Start an approved change request: read its hosts, re-plan, and create one job per host."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeGuard

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from hosts.changes.jobs import JOB_LEASE_SECONDS, create_jobs
from hosts.changes.records import fail_target, finish_change_request, record_request_event
from hosts.host_lifecycle import refusal_for_hosts
from hosts.inventory import HostRead, SyncResult, begin_reading_hosts, hosts_answering, store_reads
from hosts.libvirt.facts import DomainFacts
from hosts.models import ApplyJob, AuditEvent, ChangeRequest, ChangeTarget, Domain
from hosts.models.rows import update_rows
from hosts.planning.plans import plan_for_domains
from hosts.planning.schema import validate_profile
from hosts.vocabulary import SCOPE_PARTS

# Planner findings that concern one guest's availability rather than the plan as a whole: at apply time they
# fail that guest alone (unchanged) while the others go ahead.
AVAILABILITY_CODES = {"guest_not_running"}


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
        record_request_event(cr, AuditEvent.Action.CHANGE_ABORTED, message=reason)


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
    # A host known not to answer (found hung by a sync, or waiting out its retry delay) is not read: its guests
    # fail at once, unchanged, instead of holding the others back for its deadline.
    readable = hosts_answering(host_ids)
    # A host in maintenance (or removed) since the approval refuses the whole request, and is not even read.
    refused = refusal_for_hosts(host_ids)

    def begin_reading() -> Callable[[], list[HostRead]]:
        # Re-plan from what the hosts say now: the guests' live state, and their config if the change writes it.
        return begin_reading_hosts(readable, light=True, keep_config="config" in scopes)

    # The reads start before the claim below and run while it commits; if it is lost, they are wasted.
    reading = begin_reading() if cr.status == ChangeRequest.Status.SCHEDULED and readable and not refused else None
    with transaction.atomic():
        claimed = ChangeRequest.objects.filter(pk=cr_id, status=ChangeRequest.Status.SCHEDULED).update(
            status=ChangeRequest.Status.APPLYING, started_at=timezone.now()
        )
        cr.refresh_from_db(fields=["status", "started_at"])
        if claimed:
            record_request_event(cr, AuditEvent.Action.CHANGE_APPLY)
    if not claimed:
        if cr.status != ChangeRequest.Status.APPLYING:
            return Started()
        unfinished = cr.jobs.filter(kind=ApplyJob.Kind.APPLY).exclude(status=ApplyJob.Status.DONE)
        return Started(waiting=list(unfinished.values_list("pk", flat=True)))
    if refused:
        _abort(cr, f"Not applied: {refused} Nothing was changed.")
        return Started()
    if reading is None and readable:  # approved between the look above and the claim
        reading = begin_reading()
    answered = reading() if reading is not None else []
    with transaction.atomic():
        synced = store_reads(answered)
        problem, unavailable = _replan(cr, targets, host_ids)
        if problem:
            _abort(cr, problem)
            return Started()
        _record_unavailable(targets, unavailable)
        reachable = sorted({t.host_id for t in targets if t.pk not in unavailable})
        jobs, busy_hosts = create_jobs(cr, reachable, JOB_LEASE_SECONDS)
        _store_snapshots(targets, synced, scopes, skip_targets=set(unavailable), skip_hosts=busy_hosts)
    if not jobs:
        finish_change_request(cr.pk)
    return Started(
        claimed=[job for job in jobs if job.host_id not in busy_hosts],
        waiting=[job.pk for job in jobs if job.host_id in busy_hosts],
    )


def _store_snapshots(
    targets: list[ChangeTarget],
    synced: list[SyncResult],
    scopes: tuple[str, ...],
    *,
    skip_targets: set[int],
    skip_hosts: set[int],
) -> None:
    """Store the re-plan's read as each guest's snapshot and mark the guest applying.

    The change touches only what this read just saw, so the worker writes without reading every guest
    again. A guest whose host is busy is read again once its job is claimed: by then this read is old.
    """
    read = {(r.host_id, f.uuid): f for r in synced if r.inventory for f in r.inventory.domains}
    now = timezone.now()
    starting = []
    for t in targets:
        facts = read.get((t.host_id, str(t.domain_uuid)))
        if t.pk in skip_targets or t.host_id in skip_hosts or not _snapshot_holds(facts, scopes):
            continue
        t.before = facts.snapshot_json()
        t.status, t.started_at = ChangeTarget.Status.APPLYING, now
        starting.append(t)
    update_rows(starting, ["before", "status", "started_at"])


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
