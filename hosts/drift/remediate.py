"""Put the approved state back on drifted guests through the normal change request workflow.

:func:`propose_remediation` turns open drifts into change requests, pending approval as usual: the
desired values of the drifted fields become the content of a revision of the ``Drift remediation`` profile
(explicit vCPU pins, the emulator's and iothreads' cpulists, the scheduler values; a hot-added vCPU of a
``dedicated`` guest gets the ``dedicated`` strategy again), planned and shown like any other request. A
profile applies the same content to every guest of a request, so guests (and scopes) whose desired values
differ get a request each: one click may propose several.

:func:`reassert_drifts` is the automatic re-assert of a host whose admin switched it on: the same requests,
requested by the system user ``isoweb-system`` and approved at once on the standing approval of the admin
who switched automatic re-assert on (the last ``host.update`` audit row that set it). Four eyes hold: the
requester (the system, which found the drift) is never the approver (a person who chose, in advance, to
have the approved state put back), and the ``change_request_four_eyes`` constraint is satisfied by two
different users. If that admin is no longer an active admin, nothing is approved: the request waits like
any other. Each automatic repair is audited as ``drift.reassert`` with the drifts it repairs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from hosts.audit import Actor, audit_user
from hosts.changes.requests import PlanError, approve_change_request, create_change_request
from hosts.cpulist import CpulistError, parse_cpulist
from hosts.drift.compare import CONFIG, DEDICATED, LIVE
from hosts.models import AuditEvent, ChangeRequest, Domain, Drift, Host, PinProfile, PinProfileRevision
from hosts.planning.profiles import create_profile, revise_profile
from hosts.roles import can_draft, can_manage_hosts

log = logging.getLogger(__name__)

SYSTEM_USERNAME = "isoweb-system"
PROFILE_NAME = "Drift remediation"
# A remediation already on its way: its drifts are not proposed again.
IN_FLIGHT = (ChangeRequest.Status.PENDING, ChangeRequest.Status.SCHEDULED, ChangeRequest.Status.APPLYING)


def system_user() -> User:
    """The user the system acts as when it requests an automatic repair (it cannot log in)."""
    user, created = User.objects.get_or_create(
        username=SYSTEM_USERNAME, defaults={"is_active": False, "first_name": "isoweb", "last_name": "(system)"}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def open_drifts(
    *, drift_ids: Sequence[int] | None = None, host_id: int | None = None, domain_id: int | None = None
) -> list[Drift]:
    """The open drifts by id and/or of a host or guest; refused (ValidationError) when that selects none."""
    if drift_ids is None and host_id is None and domain_id is None:
        raise ValidationError({"drifts": ["Name the drifts, a host or a guest to remediate."]})
    rows = Drift.objects.filter(resolved_at__isnull=True).select_related("domain__host", "remediation")
    if drift_ids is not None:
        rows = rows.filter(pk__in=list(drift_ids))
    if host_id is not None:
        rows = rows.filter(host_id=host_id)
    if domain_id is not None:
        rows = rows.filter(domain_id=domain_id)
    drifts = list(rows.order_by("domain_id", "scope", "field"))
    if not drifts:
        raise ValidationError({"drifts": ["No open drift matches; nothing to remediate."]})
    return drifts


def _cpus(text: Any) -> frozenset[int]:
    try:
        return parse_cpulist(str(text))
    except CpulistError:
        return frozenset()


def _content(domain: Domain, scope: str, drifts: Sequence[Drift]) -> dict[str, Any]:
    """The profile content that puts these drifted fields of one guest back to their desired values."""
    desired = (domain.desired_state or {}).get(scope) or {}
    content: dict[str, Any] = {}
    pins: dict[str, Any] = {}
    dedicated = False
    for drift in drifts:
        section, _, number = drift.field.partition(" ")
        if section == "vcpupin":
            if drift.expected == DEDICATED:
                dedicated = True
            else:
                pins[number] = (desired.get("vcpupin") or {}).get(number, drift.expected)
        elif section == "emulatorpin":
            content["emulatorpin"] = {"strategy": "cpulist", "cpus": desired.get("emulatorpin", drift.expected)}
        elif section == "iothreadpin":
            values = set((desired.get("iothreadpin") or {}).values()) or {drift.expected}
            if len(values) != 1:
                raise ValidationError(
                    {
                        "drifts": [
                            f"{domain.name}: its iothreads are meant to run on different CPUs "
                            f"({', '.join(sorted(map(str, values)))}); a profile pins them all alike. "
                            "Propose a request by hand."
                        ]
                    }
                )
            content["iothreadpin"] = {"strategy": "cpulist", "cpus": values.pop()}
        else:
            content.setdefault("sched", {})[drift.field] = (desired.get("sched") or {}).get(drift.field, drift.expected)
    if dedicated:
        content["vcpupin"] = {"strategy": "dedicated"}
    elif pins:
        content["vcpupin"] = {"strategy": "explicit", "cpus": pins}
    # The approved state may share the emulator's or iothreads' CPUs with the guest's own vCPUs (the profile
    # that set it allowed that); putting it back must allow it too.
    vcpu_cpus = frozenset().union(*(_cpus(c) for c in (desired.get("vcpupin") or {}).values()))
    thread_cpus = _cpus(desired.get("emulatorpin", "")) | frozenset().union(
        *(_cpus(c) for c in (desired.get("iothreadpin") or {}).values())
    )
    if ("emulatorpin" in content or "iothreadpin" in content) and vcpu_cpus & thread_cpus:
        content["allow_shared_emulator"] = True
    return content


def plan_remediation(drifts: Sequence[Drift]) -> list[tuple[str, dict[str, Any], list[Drift]]]:
    """Group drifts into requests: ``(scope, profile content, drifts)``, one per distinct content and scope.

    A guest whose live and config drifts call for the same content gets one request of scope ``both``.
    """
    per_guest: dict[int, dict[str, list[Drift]]] = {}
    for drift in drifts:
        per_guest.setdefault(drift.domain_id, {}).setdefault(drift.scope, []).append(drift)
    groups: dict[tuple[str, str], tuple[dict[str, Any], list[Drift]]] = {}
    for scopes in per_guest.values():
        domain = next(iter(scopes.values()))[0].domain
        contents = {scope: _content(domain, scope, found) for scope, found in scopes.items()}
        if contents.keys() == {LIVE, CONFIG} and contents[LIVE] == contents[CONFIG]:
            contents = {"both": contents[LIVE]}
            scopes = {"both": [*scopes[LIVE], *scopes[CONFIG]]}
        for scope, content in contents.items():
            key = (scope, json.dumps(content, sort_keys=True))
            groups.setdefault(key, (content, []))[1].extend(scopes[scope])
    return [(scope, content, found) for (scope, _key), (content, found) in groups.items()]


def _revision(content: dict[str, Any], actor: Actor) -> PinProfileRevision:
    """The ``Drift remediation`` profile's revision holding ``content``: its latest if equal, else a new one."""
    profile = PinProfile.objects.filter(name=PROFILE_NAME).first()
    if profile is None:
        profile = create_profile(
            name=PROFILE_NAME,
            description="Revisions made by isoweb to put approved values back on guests that drifted.",
            content=content,
            actor=actor,
        )
        return profile.revisions.get(number=1)
    latest = profile.latest_revision
    if latest is not None and latest.content == content:
        return latest
    return revise_profile(profile.pk, content=content, comment="drift remediation", actor=actor)


def _describe(drifts: Sequence[Drift]) -> str:
    parts = [f"{d.domain.name} {d.scope} {d.field} is {d.observed}, approved {d.expected}" for d in drifts[:10]]
    more = f" and {len(drifts) - 10} more" if len(drifts) > 10 else ""
    return "; ".join(parts) + more


@transaction.atomic
def propose_remediation(
    *,
    drift_ids: Sequence[int] | None = None,
    host_id: int | None = None,
    domain_id: int | None = None,
    actor: Actor,
    reason: str = "",
) -> list[ChangeRequest]:
    """Propose change requests that put the desired values back on the drifted guests, pending approval.

    Drifts whose remediation is already pending, approved or applying are left out; refused with a
    ValidationError naming the field when nothing is left, or when a guest cannot be planned (PlanError).
    """
    user = audit_user(actor)
    if user is None or (user.username != SYSTEM_USERNAME and not can_draft(user)):
        raise PermissionDenied("Only operators may propose change requests.")
    drifts = open_drifts(drift_ids=drift_ids, host_id=host_id, domain_id=domain_id)
    todo = [d for d in drifts if d.remediation is None or d.remediation.status not in IN_FLIGHT]
    if not todo:
        pending = sorted({f"CR-{d.remediation_id}" for d in drifts})
        raise ValidationError({"drifts": [f"A remediation is already on its way: {', '.join(pending)}."]})
    out = []
    for scope, content, found in plan_remediation(todo):
        revision = _revision(content, user)
        cr = create_change_request(
            revision=revision,
            domain_ids=sorted({d.domain_id for d in found}),
            scope=scope,
            reason=(reason.strip() or "Put the approved state back after drift") + ": " + _describe(found),
            actor=user,
        )
        Drift.objects.filter(pk__in=[d.pk for d in found]).update(remediation=cr)
        out.append(cr)
    return out


def standing_approver(host: Host) -> User | None:
    """The admin whose switching automatic re-assert on stands as approval, if it is on and they still may."""
    events = AuditEvent.objects.filter(host=host, action=AuditEvent.Action.HOST_UPDATE).select_related("actor")
    for event in events.order_by("-created_at", "-pk")[:50]:
        after = event.after or {}
        if "auto_reassert" not in after:
            continue
        user = event.actor
        if after["auto_reassert"] and user is not None and user.is_active and can_manage_hosts(user):
            return user
        return None
    return None


@transaction.atomic
def reassert_drifts(drift_ids: Sequence[int]) -> list[ChangeRequest]:
    """Repair drifts at once on hosts with automatic re-assert: propose, approve on standing approval, audit.

    Returns the requests made; a host whose standing approver is gone gets its requests left pending.
    """
    drifts = [d for d in open_drifts(drift_ids=drift_ids) if d.domain.host.auto_reassert]
    by_host: dict[int, list[Drift]] = {}
    for drift in drifts:
        by_host.setdefault(drift.host_id, []).append(drift)
    system = system_user()
    made = []
    for found in by_host.values():
        host = found[0].domain.host
        approver = standing_approver(host)
        try:
            crs = propose_remediation(
                drift_ids=[d.pk for d in found], actor=system, reason="Automatic re-assert after drift"
            )
        except PlanError as exc:  # e.g. another guest now holds the CPU: the drift stays open and shown
            log.warning("automatic re-assert on %s cannot be planned: %s", host.name, "; ".join(exc.messages))
            continue
        except ValidationError:
            continue  # already on its way
        for cr in crs:
            repaired = list(cr.remediated_drifts.all())
            if approver is not None:
                approve_change_request(
                    cr.pk,
                    comment=f"Standing approval: {approver.username} switched automatic re-assert on for {host.name}.",
                    actor=approver,
                )
            for drift in repaired:
                AuditEvent.objects.create(
                    action=AuditEvent.Action.DRIFT_REASSERT,
                    host=host,
                    domain_id=drift.domain_id,
                    change_request=cr,
                    object_repr=f"{drift.domain.name} {drift.scope} {drift.field}"[:200],
                    before={"drift": drift.pk, "observed": drift.observed},
                    after={"expected": drift.expected, "approved": approver is not None},
                    message=f"CR-{cr.pk} puts back {drift.scope} {drift.field} = {drift.expected}"
                    + ("" if approver else " (no standing approval: waiting for an approver)"),
                )
            made.append(cr)
    return made


@transaction.atomic
def set_auto_reassert(host_id: int, *, enabled: bool, actor: Actor) -> Host:
    """Switch a host's automatic re-assert on or off (admins only); the switch is audited as ``host.update``.

    Switching it on is the standing approval of every automatic repair on that host until it is switched off.
    """
    user = audit_user(actor)
    if user is None or not can_manage_hosts(user):
        raise PermissionDenied("Only admins may switch automatic re-assert.")
    host = Host.objects.select_for_update().get(pk=host_id)
    before = host.auto_reassert
    host.auto_reassert = bool(enabled)
    host.save(update_fields=["auto_reassert"])
    AuditEvent.objects.create(
        actor=user,
        action=AuditEvent.Action.HOST_UPDATE,
        host=host,
        object_repr=host.name,
        before={"auto_reassert": before},
        after={"auto_reassert": host.auto_reassert},
        message=f"Automatic re-assert {'on' if host.auto_reassert else 'off'}"
        f"{' (standing approval of automatic repairs)' if host.auto_reassert else ''} at {timezone.now():%H:%M:%S}",
    )
    return host
