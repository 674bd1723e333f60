"""Service functions for a host's lifecycle: editing its name and URI, maintenance and back, and removal.

Each is atomic, locks the host's row, and writes its audit row in the same transaction. A host in maintenance
is not synced, charted or changed: change requests on its guests are refused when made and when their apply
starts (``refusal_for_hosts``). A removal is soft (see ``Host``): the row stays for the change requests and
audit events that name it, its guests leave the inventory, and its name and URI may be registered again.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from hosts.audit import Actor, audit_user
from hosts.models import ApplyJob, AuditEvent, ChangeRequest, Domain, Host
from hosts.uri import validate_host_uri

_EDITABLE = ("name", "uri", "transport")


def _locked(host_id: int) -> Host:
    """The registered host, its row locked until the transaction ends (Host.DoesNotExist once removed)."""
    return Host.objects.select_for_update().get(pk=host_id)


@transaction.atomic
def update_host(host_id: int, *, name: str, uri: str, actor: Actor) -> tuple[Host, bool]:
    """Change a host's name and URI (the URI validated as when it was added); return it and whether anything
    changed. Raises ValidationError naming the field, and changes nothing, if refused.

    A new URI may reach another daemon: the host's status goes back to unknown and its retry delay is cleared,
    so the next sync (queued by the caller) reads it at once; guests the new daemon lacks leave the inventory.
    """
    host = _locked(host_id)
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": ["Give the host a name."]})
    parsed = validate_host_uri(uri, allow_unverified=bool(getattr(host, "allow_unverified", False)))
    before = {field: getattr(host, field) for field in _EDITABLE}
    host.name, host.uri, host.transport = name, parsed.uri, parsed.transport
    after = {field: getattr(host, field) for field in _EDITABLE}
    if after == before:
        return host, False
    fields = ["name", "uri", "transport"]
    if host.uri != before["uri"]:
        host.status, host.status_since, host.failures, host.retry_at = Host.Status.UNKNOWN, timezone.now(), 0, None
        host.last_error = ""
        fields += ["status", "status_since", "failures", "retry_at", "last_error"]
    host.full_clean()  # a name or URI another registered host has is refused here, naming the field
    host.save(update_fields=fields)
    changed = sorted(field for field in _EDITABLE if before[field] != after[field])
    AuditEvent.objects.create(
        actor=audit_user(actor),
        action=AuditEvent.Action.HOST_UPDATE,
        host=host,
        object_repr=host.name,
        before={field: before[field] for field in changed},
        after={field: after[field] for field in changed},
        message="Changed " + " and ".join(changed) + ".",
    )
    return host, True


@transaction.atomic
def start_maintenance(host_id: int, *, reason: str, actor: Actor) -> Host:
    """Take a host out of service: no sync, chart or change touches it until ``end_maintenance``.

    A change already applying on it finishes; one that starts later is refused with the reason.
    """
    host = _locked(host_id)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": ["Say why the host goes into maintenance."]})
    if len(reason) > Host._meta.get_field("maintenance_reason").max_length:  # type: ignore[operator]
        raise ValidationError({"reason": ["Keep the reason under 300 characters."]})
    if host.in_maintenance:
        raise ValidationError(f"{host.name} is already in maintenance.")
    host.maintenance_since, host.maintenance_reason = timezone.now(), reason
    host.save(update_fields=["maintenance_since", "maintenance_reason"])
    AuditEvent.objects.create(
        actor=audit_user(actor),
        action=AuditEvent.Action.HOST_MAINTENANCE,
        host=host,
        object_repr=host.name,
        after={"maintenance_reason": reason},
        message=reason,
    )
    return host


@transaction.atomic
def end_maintenance(host_id: int, *, actor: Actor) -> Host:
    """Put a host back in service: synced (the caller queues a sync at once), charted and changed again."""
    host = _locked(host_id)
    if not host.in_maintenance:
        raise ValidationError(f"{host.name} is not in maintenance.")
    since, reason = host.maintenance_since, host.maintenance_reason
    host.maintenance_since, host.maintenance_reason, host.retry_at = None, "", None
    host.save(update_fields=["maintenance_since", "maintenance_reason", "retry_at"])
    AuditEvent.objects.create(
        actor=audit_user(actor),
        action=AuditEvent.Action.HOST_RESUME,
        host=host,
        object_repr=host.name,
        before={"maintenance_since": since.isoformat() if since else None, "maintenance_reason": reason},
    )
    return host


@transaction.atomic
def remove_host(host_id: int, *, actor: Actor) -> Host:
    """Remove a host from the inventory: its guests go, its row stays (removed) for the change requests and
    audit events that name it. Refused while a change is applying or rolling back on it."""
    host = _locked(host_id)
    busy = (
        ApplyJob.objects.filter(host=host)
        .exclude(status=ApplyJob.Status.DONE)
        .values_list("change_request_id", flat=True)
        .distinct()
    )
    applying = ChangeRequest.objects.filter(status=ChangeRequest.Status.APPLYING, targets__host=host).distinct()
    requests = sorted({*busy, *applying.values_list("pk", flat=True)})
    if requests:
        numbers = ", ".join(f"#{pk}" for pk in requests)
        raise ValidationError(f"{host.name} has a change in progress ({numbers}); remove it once that has finished.")
    guests = list(Domain.objects.filter(host=host).order_by("name").values_list("name", flat=True))
    Domain.objects.filter(host=host).delete()  # their audit events and change targets keep their names
    host.removed_at = timezone.now()
    host.save(update_fields=["removed_at"])
    before: dict[str, Any] = {field: getattr(host, field) for field in _EDITABLE}
    before["guests"] = guests
    AuditEvent.objects.create(
        actor=audit_user(actor),
        action=AuditEvent.Action.HOST_REMOVE,
        host=host,
        object_repr=host.name,
        before=before,
        message=f"Removed with {len(guests)} guest{'' if len(guests) == 1 else 's'}.",
    )
    return host


def refusal_for_hosts(host_ids: Iterable[int]) -> str:
    """Why a change touching these hosts may not go ahead now ('' if it may): hosts in maintenance (with
    their reasons) or removed, by name."""
    hosts = Host.all_objects.filter(pk__in=set(host_ids)).order_by("name")
    reasons = [
        f"{host.name} was removed from the inventory"
        if host.is_removed
        else f"{host.name} is in maintenance ({host.maintenance_reason})"
        for host in hosts
        if host.is_removed or host.in_maintenance
    ]
    if not reasons:
        return ""
    return "; ".join(reasons) + "."


def refuse_guests_out_of_service(domain_ids: Iterable[int]) -> None:
    """Raise ValidationError (field ``domains``) if a guest's host is in maintenance or removed."""
    host_ids = Domain.objects.filter(pk__in=list(domain_ids)).values_list("host_id", flat=True).distinct()
    refusal = refusal_for_hosts(host_ids)
    if refusal:
        raise ValidationError({"domains": [f"No change now: {refusal}"]})
