"""Celery tasks: thin wrappers that take primary keys and call one service."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from hosts import services
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
