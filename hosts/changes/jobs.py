"""Apply jobs: one per host and change, claimed with a conditional update and held under a lease."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from datetime import timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from hosts.models import ApplyJob, ChangeRequest, ChangeTarget, Host

# A running job renews its lease after every batch of guests; one that stops renewing for this long is reclaimed.
JOB_LEASE_SECONDS = 60


def create_jobs(cr: ChangeRequest, host_ids: list[int], lease_seconds: int) -> tuple[list[ApplyJob], set[int]]:
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


# A rollback job nobody claimed this long after it was asked for was never queued (the broker was down).
NEVER_SENT_AFTER_SECONDS = 60


def stalled_jobs(quiet_seconds: int) -> list[int]:
    """Jobs left running by nobody: their claimant died, or has not renewed the claim for ``quiet_seconds``
    (its task failed or hit its time limit, and a failed task is not redelivered). Handed to run_jobs
    again, they finish from the progress stored so far."""
    running = ApplyJob.objects.filter(status=ApplyJob.Status.RUNNING).order_by("pk")
    stalled = [job.pk for job in running if not _holder_alive(job, quiet_seconds)]
    # A rollback asked for while the task queue was unreachable: its jobs were never handed to a worker.
    never_sent = ApplyJob.objects.filter(
        status=ApplyJob.Status.QUEUED,
        kind=ApplyJob.Kind.ROLLBACK,
        attempts=0,
        change_request__rolled_back_at__lt=timezone.now() - timedelta(seconds=NEVER_SENT_AFTER_SECONDS),
    )
    return stalled + list(never_sent.order_by("pk").values_list("pk", flat=True))


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


@transaction.atomic
def create_settle_jobs(host_id: int) -> list[int]:
    """Queue settling the guests of this host that a change left unknown (its host stopped answering
    mid-write): one job per change request, unless one is waiting already. Returns the new jobs' ids."""
    unknown = ChangeTarget.objects.filter(host_id=host_id, status=ChangeTarget.Status.UNKNOWN)
    cr_ids = set(unknown.values_list("change_request_id", flat=True))
    if not cr_ids:
        return []
    earlier = ApplyJob.objects.filter(host_id=host_id, kind=ApplyJob.Kind.SETTLE, change_request_id__in=cr_ids)
    cr_ids -= set(earlier.exclude(status=ApplyJob.Status.DONE).values_list("change_request_id", flat=True))
    # A request and host have one settle job (a constraint): one that settled before and found the host gone
    # again is queued anew.
    again = list(earlier.filter(status=ApplyJob.Status.DONE, change_request_id__in=cr_ids).values_list("pk", flat=True))
    ApplyJob.objects.filter(pk__in=again).update(status=ApplyJob.Status.QUEUED, finished_at=None)
    cr_ids -= set(ApplyJob.objects.filter(pk__in=again).values_list("change_request_id", flat=True))
    jobs = ApplyJob.objects.bulk_create(
        ApplyJob(change_request_id=cr_id, host_id=host_id, kind=ApplyJob.Kind.SETTLE) for cr_id in sorted(cr_ids)
    )
    return sorted([*again, *(job.pk for job in jobs)])
