"""Celery tasks: thin wrappers that take primary keys and call one service."""

from __future__ import annotations

import logging
import random
from typing import Any

from celery import Task, shared_task

from hosts import apply, change_requests, services
from hosts.models import Host

log = logging.getLogger(__name__)


@shared_task(soft_time_limit=60, time_limit=90)
def sync_host(host_id: int) -> dict[str, Any]:
    """Sync one host's inventory; a host that does not answer is marked down (the next beat retries)."""
    if not Host.objects.filter(pk=host_id).exists():
        return {"host_id": host_id, "ok": False, "error": "host no longer registered"}
    result = services.sync_host(host_id)
    return {
        "host_id": result.host_id,
        "ok": result.ok,
        "domains": result.domains,
        "round_trips": result.round_trips,
        "error": result.error,
    }


@shared_task(soft_time_limit=10, time_limit=20)
def sync_all_hosts() -> int:
    """Queue one sync per host so the workers sync hosts in parallel."""
    host_ids = list(Host.objects.values_list("pk", flat=True))
    for host_id in host_ids:
        sync_host.delay(host_id)
    return len(host_ids)


@shared_task(soft_time_limit=120, time_limit=150)
def start_change_request(change_request_id: int) -> int:
    """Re-plan an approved change request and queue one apply job per host (hosts run in parallel)."""
    job_ids = change_requests.start_change_request(change_request_id)
    for job_id in job_ids:
        run_apply_job.delay(job_id)
    return len(job_ids)


@shared_task(
    bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=120, soft_time_limit=300, time_limit=330
)
def run_apply_job(self: Task, job_id: int) -> str:
    """Apply or roll back one change request on one host.

    Idempotent (the job row is claimed, each guest's progress is stored), so it is acknowledged only when
    done and redelivered if its worker dies. Waits while another change runs on the same host.
    """
    try:
        return apply.run_job(job_id)
    except change_requests.HostBusy as exc:
        raise self.retry(countdown=1 + random.random(), exc=exc) from exc  # noqa: S311 - jitter only


@shared_task(soft_time_limit=10, time_limit=20)
def apply_due_change_requests() -> int:
    """Start approved change requests whose apply time has come (run by beat)."""
    due = change_requests.due_change_requests()
    for cr_id in due:
        start_change_request.delay(cr_id)
    return len(due)
