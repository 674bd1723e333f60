"""Celery tasks: thin wrappers that take primary keys and call one service."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any

from celery import shared_task

from hosts import inventory
from hosts.changes import start
from hosts.changes.engine import give_up_waiting, run_jobs
from hosts.changes.jobs import JOB_LEASE_SECONDS, create_settle_jobs, stalled_jobs
from hosts.changes.start import due_change_requests
from hosts.drift.verify import check_after_sync
from hosts.models import ApplyJob, Host

log = logging.getLogger(__name__)


# The read itself is bounded by the host's deadline (hosts.libvirt.deadlines); these limits are the backstop.
@shared_task(soft_time_limit=300, time_limit=330)
def sync_host(host_id: int) -> dict[str, Any]:
    """Sync one host's inventory; a host that does not answer is marked down or unresponsive (retried later).

    A host that answers again gets its guests that a change left unknown verified and settled.
    """
    host = Host.objects.filter(pk=host_id).values("maintenance_since").first()
    if host is None:
        return {"host_id": host_id, "ok": False, "error": "host no longer registered"}
    if host["maintenance_since"] is not None:  # not contacted at all until it is back in service
        return {"host_id": host_id, "ok": False, "error": "host in maintenance"}
    result = inventory.sync_host(host_id)
    if result.inventory is not None:
        # The periodic verification: each guest read against its desired state (drift), with the facts just read.
        check_after_sync([(result.host_id, result.inventory)])
    if result.ok:
        settle = create_settle_jobs(host_id)
        if settle:
            run_apply_jobs.delay(settle)
    return {
        "host_id": result.host_id,
        "ok": result.ok,
        "domains": result.domains,
        "round_trips": result.round_trips,
        "error": result.error,
    }


@shared_task(soft_time_limit=10, time_limit=20)
def sync_all_hosts() -> int:
    """Queue one sync per host so the workers sync hosts in parallel (not those waiting out a retry delay)."""
    host_ids = inventory.hosts_due_for_sync()
    for host_id in host_ids:
        sync_host.delay(host_id)
    return len(host_ids)


# A job whose host runs another change is tried again about every 1.5 s, for up to this many tries.
BUSY_RETRIES = 200
# Celery stops an apply task after this many seconds. A job whose claim has not been renewed for that long
# and one lease more was left by a task that failed or hit the limit: nobody runs it any more.
APPLY_TIME_LIMIT = 330
STALLED_AFTER_SECONDS = APPLY_TIME_LIMIT + JOB_LEASE_SECONDS


def _run_jobs(job_ids: list[int], attempt: int, claimed: Sequence[ApplyJob] = ()) -> None:
    busy = run_jobs(job_ids, claimed)
    if not busy:
        return
    if attempt >= BUSY_RETRIES:
        give_up_waiting(busy, f"{attempt} tries")
        return
    run_apply_jobs.apply_async((busy, attempt + 1), countdown=1 + random.random())  # noqa: S311 - jitter only


# The apply runs inside these tasks, so they are acknowledged only when done and redelivered if their worker
# dies: every step is idempotent (the request and each job are claimed, each guest's progress is stored).
@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=300, time_limit=APPLY_TIME_LIMIT)
def start_change_request(change_request_id: int) -> int:
    """Re-plan an approved change request, then apply it on its hosts in parallel, here and now."""
    started = start.start_change_request(change_request_id)
    _run_jobs(started.waiting, 0, started.claimed)
    return len(started.claimed) + len(started.waiting)


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=300, time_limit=APPLY_TIME_LIMIT)
def run_apply_jobs(job_ids: list[int], attempt: int = 0) -> int:
    """Apply or roll back per-host jobs (hosts in parallel); jobs whose host is busy are tried again later."""
    _run_jobs(job_ids, attempt)
    return len(job_ids)


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=300, time_limit=APPLY_TIME_LIMIT)
def resume_stalled_jobs() -> int:
    """Finish apply and rollback jobs that nobody runs any more (run by beat), so no request stays applying
    for ever; each guest goes on from its stored snapshot and status."""
    job_ids = stalled_jobs(STALLED_AFTER_SECONDS)
    if job_ids:
        log.warning("resuming %d stalled apply job(s): %s", len(job_ids), job_ids)
        _run_jobs(job_ids, 0)
    return len(job_ids)


@shared_task(soft_time_limit=10, time_limit=20)
def apply_due_change_requests() -> int:
    """Start approved change requests whose apply time has come (run by beat)."""
    due = due_change_requests()
    for cr_id in due:
        start_change_request.delay(cr_id)
    return len(due)
