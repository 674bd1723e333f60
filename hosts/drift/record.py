"""Record what a drift check found: open new drifts, update what is observed, resolve what holds again.

One service, :func:`record_checks`, atomic, for any number of guests in a fixed number of queries; each drift
found or resolved gets its audit row in the same transaction. Once committed, the open pages of the guests
and hosts concerned are told (hosts.live.push.announce_drift) and, on hosts with automatic re-assert, the
new drifts are repaired (hosts.drift.remediate).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from hosts.drift.compare import Finding
from hosts.drift.remediate import reassert_drifts
from hosts.live.push import announce_drift
from hosts.models import AuditEvent, ChangeRequest, Domain, Drift

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GuestCheck:
    """One guest's findings and what the check could judge.

    ``scopes`` are the scopes the read covered (live while the guest ran, config when it was read): an open
    drift of a scope not judged stays as it is, except live drift of a guest found stopped (its live state is
    gone). ``managed`` is every ``(scope, field)`` of the guest's desired state, to tell a field whose request
    was rolled back (no longer managed) from one that holds its value again.
    """

    domain_id: int
    findings: Sequence[Finding]
    scopes: frozenset[str]
    detected_by: str
    running: bool = True
    managed: frozenset[tuple[str, str]] = field(default_factory=frozenset)


@dataclass
class Recorded:
    """What one recording did: the drifts opened, updated and resolved (ids)."""

    found: list[int] = field(default_factory=list)
    updated: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)


def _say(value: Any) -> str:
    return "unset" if value is None else str(value)


def _resolution(drift: Drift, check: GuestCheck) -> str:
    if drift.scope == Drift.Scope.LIVE and not check.running:
        return "The guest stopped: its live state is gone."
    if (drift.scope, drift.field) not in check.managed:
        return "No longer managed: no applied change request sets this field any more."
    request = drift.remediation
    if request is not None and request.status in (ChangeRequest.Status.APPLIED, ChangeRequest.Status.PARTIALLY_APPLIED):
        return f"Holds the desired value again: CR-{request.pk} put it back."
    return "Holds the desired value again."


def _announcement(drift: Drift) -> dict[str, Any]:
    return {
        "id": drift.pk,
        "host_id": drift.host_id,
        "domain_id": drift.domain_id,
        "scope": drift.scope,
        "field": drift.field,
        "expected": drift.expected,
        "observed": drift.observed,
        "open": drift.resolved_at is None,
    }


@transaction.atomic
def record_checks(checks: Sequence[GuestCheck], *, now: datetime | None = None) -> Recorded:
    """Open, update and resolve the drifts of these guests from their checks; audit each found and resolved.

    After commit, open pages are told and hosts with automatic re-assert get their new drifts repaired.
    """
    out = Recorded()
    if not checks:
        return out
    now = now or timezone.now()
    by_domain = {check.domain_id: check for check in checks}
    domains = Domain.objects.select_related("host").in_bulk(list(by_domain))
    open_drifts: dict[int, dict[tuple[str, str], Drift]] = {}
    for drift in Drift.objects.filter(domain_id__in=list(domains), resolved_at__isnull=True).select_related(
        "remediation"
    ):
        open_drifts.setdefault(drift.domain_id, {})[(drift.scope, drift.field)] = drift
    audit: list[AuditEvent] = []
    created: list[Drift] = []
    touched: list[Drift] = []
    for domain_id, check in by_domain.items():
        domain = domains.get(domain_id)
        if domain is None:  # gone since it was read
            continue
        have = open_drifts.get(domain_id, {})
        seen = set()
        for finding in check.findings:
            key = (finding.scope, finding.field)
            seen.add(key)
            known = have.get(key)
            if known is None:
                created.append(
                    Drift(
                        host_id=domain.host_id,
                        domain=domain,
                        scope=finding.scope,
                        field=finding.field,
                        expected=finding.expected,
                        observed=finding.observed,
                        detected_by=check.detected_by,
                        detected_at=now,
                    )
                )
            elif known.observed != finding.observed or known.expected != finding.expected:
                known.observed, known.expected = finding.observed, finding.expected
                known.save(update_fields=["observed", "expected"])
                out.updated.append(known.pk)
                touched.append(known)
        for key, drift in have.items():
            if key in seen:
                continue
            gone_live = drift.scope == Drift.Scope.LIVE and not check.running
            if drift.scope not in check.scopes and not gone_live:
                continue  # not judged this time
            drift.resolved_at, drift.resolution = now, _resolution(drift, check)[:200]
            drift.save(update_fields=["resolved_at", "resolution"])
            out.resolved.append(drift.pk)
            touched.append(drift)
            audit.append(
                AuditEvent(
                    action=AuditEvent.Action.DRIFT_RESOLVED,
                    host_id=domain.host_id,
                    domain=domain,
                    change_request_id=drift.remediation_id,
                    object_repr=f"{domain.name} {drift.scope} {drift.field}"[:200],
                    before={"drift": drift.pk, "observed": drift.observed},
                    after={"expected": drift.expected},
                    message=drift.resolution,
                )
            )
    for drift in created:  # one at a time: the open-drift constraint may refuse one found by another process
        try:
            with transaction.atomic():
                drift.save()
        except IntegrityError:
            log.info("drift %s %s of guest %s was opened meanwhile", drift.scope, drift.field, drift.domain_id)
            continue
        out.found.append(drift.pk)
        touched.append(drift)
        audit.append(_found_event(drift, domains[drift.domain_id]))
    AuditEvent.objects.bulk_create(audit)
    if touched:
        announce = [_announcement(d) for d in touched]
        transaction.on_commit(lambda: _after_commit(announce, out.found))
    return out


def _found_event(drift: Drift, domain: Domain) -> AuditEvent:
    how = Drift.DetectedBy(drift.detected_by).label
    return AuditEvent(
        action=AuditEvent.Action.DRIFT_FOUND,
        host_id=drift.host_id,
        domain=domain,
        object_repr=f"{domain.name} {drift.scope} {drift.field}"[:200],
        before={"expected": drift.expected},
        after={"drift": drift.pk, "observed": drift.observed},
        message=f"{drift.scope} {drift.field} of {domain.name} is {_say(drift.observed)}, "
        f"approved {_say(drift.expected)} ({how})",
    )


def _after_commit(announce: list[dict[str, Any]], found: list[int]) -> None:
    """Tell open pages, then repair what hosts with automatic re-assert want repaired at once."""
    announce_drift(announce)
    if not found:
        return
    auto = list(
        Drift.objects.filter(pk__in=found, host__auto_reassert=True, resolved_at__isnull=True).values_list(
            "pk", flat=True
        )
    )
    if auto:
        try:
            reassert_drifts(auto)
        except Exception:  # the drifts stay open and shown; the failure is logged with its reason
            log.exception("automatic re-assert of drifts %s failed", auto)
