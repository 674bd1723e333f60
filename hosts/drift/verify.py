"""Check guests read from libvirt against their desired state: after every sync, and on a libvirt event.

A guest that a change request is working on (its host has an unfinished apply, rollback or settle job, or
the guest is left applying or unknown) is not judged: its values are in motion and its desired state is
refreshed only when the change lands. The event watcher checks such a guest again once the work is done.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from django.db.models import Q

from hosts.drift.compare import Finding, compare_guest, compared_scopes, unplaced_vcpus
from hosts.drift.record import GuestCheck, Recorded, record_checks
from hosts.libvirt.facts import DomainFacts, Inventory
from hosts.models import ApplyJob, ChangeTarget, Domain, Drift

log = logging.getLogger(__name__)


def managed_fields(desired_state: dict[str, Any] | None) -> frozenset[tuple[str, str]]:
    """Every ``(scope, field)`` the desired state manages, named as drifts name them."""
    out: set[tuple[str, str]] = set()
    for scope, desired in (desired_state or {}).items():
        for section in ("vcpupin", "iothreadpin"):
            out |= {(scope, f"{section} {n}") for n in (desired or {}).get(section) or {}}
        if "emulatorpin" in (desired or {}):
            out.add((scope, "emulatorpin"))
        out |= {(scope, name) for name in (desired or {}).get("sched") or {}}
    return frozenset(out)


def busy_domains(domain_ids: Iterable[int]) -> set[int]:
    """The guests a change request is working on now (see the module's docstring)."""
    ids = list(domain_ids)
    rows = Domain.objects.filter(pk__in=ids)
    busy_hosts = ApplyJob.objects.exclude(status=ApplyJob.Status.DONE).values("host_id")
    in_motion = ChangeTarget.objects.filter(
        status__in=(ChangeTarget.Status.APPLYING, ChangeTarget.Status.UNKNOWN)
    ).values("domain_id")
    return set(rows.filter(Q(host_id__in=busy_hosts) | Q(pk__in=in_motion)).values_list("pk", flat=True))


def dedicated_guests(domain_ids: Iterable[int]) -> set[int]:
    """The guests whose last applied change request that placed vCPUs used the ``dedicated`` strategy."""
    ids = list(domain_ids)
    if not ids:
        return set()
    seen: set[int] = set()
    out: set[int] = set()
    targets = (
        ChangeTarget.objects.filter(domain_id__in=ids, status=ChangeTarget.Status.APPLIED)
        .exclude(change_request__scope="config")
        .order_by("-finished_at", "-pk")
        .values_list("domain_id", "change_request__profile_revision__content")
    )
    for domain_id, content in targets:
        if domain_id in seen or "vcpupin" not in (content or {}):
            continue
        seen.add(domain_id)
        if content["vcpupin"].get("strategy") == "dedicated":
            out.add(domain_id)
    return out


def check_guests(host_id: int, guests: Sequence[DomainFacts], detected_by: str) -> tuple[Recorded, set[int]]:
    """Judge these guests of one host (as just read) against their desired state and record the result.

    Returns what was recorded and the ids of the guests skipped because a change is working on them.
    """
    by_uuid = {facts.uuid: facts for facts in guests}
    rows = list(
        Domain.objects.filter(host_id=host_id, uuid__in=list(by_uuid)).values_list("pk", "uuid", "desired_state")
    )
    with_open = set(
        Drift.objects.filter(domain_id__in=[pk for pk, _u, _d in rows], resolved_at__isnull=True).values_list(
            "domain_id", flat=True
        )
    )
    judged = [(pk, by_uuid[str(uuid)], desired) for pk, uuid, desired in rows if desired or pk in with_open]
    busy = busy_domains(pk for pk, _f, _d in judged)
    judged = [row for row in judged if row[0] not in busy]
    findings: dict[int, list[Finding]] = {pk: compare_guest(desired, facts) for pk, facts, desired in judged}
    maybe_hotplug = [pk for pk, facts, desired in judged if unplaced_vcpus(desired, facts)]
    for pk in dedicated_guests(maybe_hotplug):
        facts, desired = next((f, d) for p, f, d in judged if p == pk)
        findings[pk] += unplaced_vcpus(desired, facts)
    checks = [
        GuestCheck(
            domain_id=pk,
            findings=findings[pk],
            scopes=frozenset(compared_scopes(facts)),
            detected_by=detected_by,
            running=facts.live is not None,
            managed=managed_fields(desired),
        )
        for pk, facts, desired in judged
    ]
    return record_checks(checks), busy


def check_after_sync(answered: Sequence[tuple[int, Inventory]]) -> None:
    """Verify every guest of the hosts a complete sync just read (the periodic verification).

    A failure here is logged and costs the sync nothing: the inventory is already stored.
    """
    for host_id, inventory in answered:
        if not inventory.complete:
            continue  # a light read has no affinity and no config of running guests
        try:
            check_guests(host_id, inventory.domains, Drift.DetectedBy.POLL)
        except Exception:
            log.exception("drift check of host %s after its sync failed", host_id)
