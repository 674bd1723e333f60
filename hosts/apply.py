"""Apply (or roll back) one change request on one host, guest by guest, verifying every change.

Per guest: take a snapshot (live and config tuning, real affinity, persistent XML), write the planned
pins and caps, read them back and compare (libvirt's getters and the vCPU threads' real affinity), and on
any failure restore the guest from its snapshot and record both errors. The snapshot is stored before
anything is written, so a worker killed mid-apply is redelivered with it: the guest is then re-applied
from the same snapshot (writing the same values twice has no further effect) and never re-snapshotted
in its half-changed state.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from hosts import libvirt_client, services
from hosts.change_requests import HostBusy, claim_job, finish_change_request
from hosts.cpulist import CpulistError, parse_cpulist
from hosts.libvirt_client import GuestSnapshot, VirtError
from hosts.models import ApplyJob, AuditEvent, ChangeRequest, ChangeTarget
from hosts.planning import SCOPE_PARTS

log = logging.getLogger(__name__)

# A running job renews its lease after every guest; one that stops renewing for this long is reclaimed.
JOB_LEASE_SECONDS = 60


class VerifyError(Exception):
    """What libvirt or the kernel reports after applying differs from the plan."""


def _same_cpus(a: Any, b: Any) -> bool:
    try:
        return parse_cpulist(str(a)) == parse_cpulist(str(b))
    except CpulistError:
        return False


def verify(desired: dict[str, Any], snapshot: GuestSnapshot, scopes: tuple[str, ...]) -> list[str]:
    """Return what differs between the plan and what the guest reports now (empty when all took effect)."""
    problems: list[str] = []
    facts = snapshot.facts
    for scope in scopes:
        tuning = facts.live if scope == "live" else facts.config
        if tuning is None:
            problems.append(f"{scope}: libvirt reports no {scope} tuning for this guest")
            continue
        for vcpu, cpus in (desired.get("vcpupin") or {}).items():
            if not _same_cpus(tuning.vcpupin.get(int(vcpu)), cpus):
                problems.append(f"{scope} vcpupin {vcpu} is {tuning.vcpupin.get(int(vcpu))}, planned {cpus}")
            if scope == "live" and not _same_cpus(facts.affinity.get(int(vcpu)), cpus):
                problems.append(
                    f"vCPU {vcpu} thread may run on CPUs {facts.affinity.get(int(vcpu))} (kernel), planned {cpus}"
                )
        if desired.get("emulatorpin") and not _same_cpus(tuning.emulatorpin, desired["emulatorpin"]):
            problems.append(f"{scope} emulatorpin is {tuning.emulatorpin}, planned {desired['emulatorpin']}")
        for iothread, cpus in (desired.get("iothreadpin") or {}).items():
            if not _same_cpus(tuning.iothreadpin.get(int(iothread)), cpus):
                problems.append(
                    f"{scope} iothreadpin {iothread} is {tuning.iothreadpin.get(int(iothread))}, planned {cpus}"
                )
        for name, value in (desired.get("sched") or {}).items():
            if tuning.sched.get(name) != int(value):
                problems.append(f"{scope} {name} is {tuning.sched.get(name)}, planned {value}")
    return problems


def _restored(before: dict[str, Any], snapshot: GuestSnapshot, scopes: tuple[str, ...]) -> list[str]:
    """Return what differs between a snapshot taken before a change and the guest now."""
    problems = []
    for scope in scopes:
        was = before.get(scope)
        now = snapshot.facts.live if scope == "live" else snapshot.facts.config
        if was is None or now is None:
            continue
        now_json = now.as_json()
        for key in ("emulatorpin",):
            if not _same_cpus(was.get(key), now_json.get(key)):
                problems.append(f"{scope} {key} is {now_json.get(key)}, was {was.get(key)}")
        for key in ("vcpupin", "iothreadpin"):
            for n, cpus in (was.get(key) or {}).items():
                if not _same_cpus(cpus, now_json[key].get(n)):
                    problems.append(f"{scope} {key} {n} is {now_json[key].get(n)}, was {cpus}")
        for name, value in (was.get("sched") or {}).items():
            if now_json["sched"].get(name) != value:
                problems.append(f"{scope} {name} is {now_json['sched'].get(name)}, was {value}")
    return problems


def _save(target: ChangeTarget, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(target, name, value)
    target.save(update_fields=list(fields))


def _event(target: ChangeTarget, action: str, message: str = "", **fields: Any) -> None:
    AuditEvent.objects.create(
        action=action,
        change_request_id=target.change_request_id,
        host_id=target.host_id,
        domain_id=target.domain_id,
        object_repr=target.domain_name,
        message=message,
        **fields,
    )


def _announce(target: ChangeTarget, kind: str) -> None:
    """Tell live charts a change took effect (after commit; a missing live module is not an error)."""
    try:
        live = importlib.import_module("hosts.live")
    except ImportError:
        return
    announce = getattr(live, "announce_marker", None)
    if announce is not None and target.domain_id is not None:
        label = f"CR-{target.change_request_id} {kind.replace('_', ' ')}"
        ts = timezone.now().timestamp()
        domain_id = target.domain_id
        transaction.on_commit(lambda: announce(domain_id, kind, label, ts))


def apply_target(target: ChangeTarget, cr: ChangeRequest) -> None:
    """Apply one guest's plan with snapshot, verification and restore-on-failure."""
    scopes = SCOPE_PARTS[cr.scope]
    uri, uuid = target.host.uri, str(target.domain_uuid)
    if target.before is None:
        try:
            snapshot = libvirt_client.read_guest(uri, uuid)
        except VirtError as exc:
            message = f"Could not read {target.domain_name} before changing it: {exc.message}. It was not changed."
            with transaction.atomic():
                _save(target, status=ChangeTarget.Status.FAILED, error=message, finished_at=timezone.now())
                _event(target, AuditEvent.Action.CHANGE_FAILED, message)
            return
        if "live" in scopes and snapshot.facts.live is None:
            message = f"{target.domain_name} is {snapshot.facts.state}: a live change needs it running. Not changed."
            with transaction.atomic():
                _save(target, status=ChangeTarget.Status.FAILED, error=message, finished_at=timezone.now())
                _event(target, AuditEvent.Action.CHANGE_FAILED, message)
            return
        _save(target, before=snapshot.as_json(), status=ChangeTarget.Status.APPLYING, started_at=timezone.now())
    try:
        libvirt_client.apply_tuning(uri, uuid, target.desired, scopes)
        after = libvirt_client.read_guest(uri, uuid)
        problems = verify(target.desired, after, scopes)
        if problems:
            raise VerifyError("; ".join(problems))
    except (VirtError, VerifyError) as exc:
        error = exc.message if isinstance(exc, VirtError) else f"verification failed: {exc}"
        _restore_after_failure(target, scopes, error)
        return
    with transaction.atomic():
        after_json = after.as_json()
        after_json.pop("config_xml", None)
        _save(target, after=after_json, status=ChangeTarget.Status.APPLIED, finished_at=timezone.now())
        _event(target, AuditEvent.Action.CHANGE_APPLIED, before=_public(target.before), after=after_json)
        _announce(target, "applied")


def _public(snapshot: dict[str, Any] | None) -> dict[str, Any] | None:
    """A snapshot without its raw XML, for the audit log."""
    return None if snapshot is None else {k: v for k, v in snapshot.items() if k != "config_xml"}


def _restore_after_failure(target: ChangeTarget, scopes: tuple[str, ...], error: str) -> None:
    uri, uuid = target.host.uri, str(target.domain_uuid)
    restore_error = ""
    try:
        libvirt_client.restore_guest(uri, uuid, target.before or {}, scopes)
        leftover = _restored(target.before or {}, libvirt_client.read_guest(uri, uuid), scopes)
        if leftover:
            restore_error = "after restoring: " + "; ".join(leftover)
    except VirtError as exc:
        restore_error = exc.message
    status = ChangeTarget.Status.RESTORE_FAILED if restore_error else ChangeTarget.Status.FAILED
    message = f"Applying failed: {error}. " + (
        f"Restoring it failed too: {restore_error}" if restore_error else "It was restored to its snapshot."
    )
    with transaction.atomic():
        _save(target, status=status, error=error, restore_error=restore_error, finished_at=timezone.now())
        _event(target, AuditEvent.Action.CHANGE_FAILED, message, before=_public(target.before))


def rollback_target(target: ChangeTarget, cr: ChangeRequest) -> None:
    """Put one changed guest back as its snapshot found it, and check that it is."""
    scopes = SCOPE_PARTS[cr.scope]
    uri, uuid = target.host.uri, str(target.domain_uuid)
    try:
        libvirt_client.restore_guest(uri, uuid, target.before or {}, scopes)
        now = libvirt_client.read_guest(uri, uuid)
        leftover = _restored(target.before or {}, now, scopes)
        if leftover:
            raise VerifyError("; ".join(leftover))
    except (VirtError, VerifyError) as exc:
        message = exc.message if isinstance(exc, VirtError) else f"verification failed: {exc}"
        with transaction.atomic():
            _save(target, restore_error=f"Rollback failed: {message}")
            _event(target, AuditEvent.Action.CHANGE_FAILED, f"Rollback failed: {message}")
        return
    with transaction.atomic():
        now_json = now.as_json()
        now_json.pop("config_xml", None)
        _save(target, status=ChangeTarget.Status.ROLLED_BACK, finished_at=timezone.now())
        _event(target, AuditEvent.Action.CHANGE_ROLLED_BACK, before=target.after, after=now_json)
        _announce(target, "rolled_back")


def run_job(job_id: int) -> str:
    """Run one apply or rollback job if this worker can claim it; safe to call again for the same job."""
    job = claim_job(job_id, JOB_LEASE_SECONDS)
    if job is None:
        return "not claimed"
    cr = job.change_request
    targets = cr.targets.filter(host_id=job.host_id).select_related("host").order_by("domain_name")
    for target in targets:
        if job.kind == ApplyJob.Kind.APPLY and target.status in (
            ChangeTarget.Status.PLANNED,
            ChangeTarget.Status.APPLYING,
        ):
            apply_target(target, cr)
        elif (
            job.kind == ApplyJob.Kind.ROLLBACK
            and target.status in (ChangeTarget.Status.APPLIED, ChangeTarget.Status.RESTORE_FAILED)
            and target.before
        ):
            rollback_target(target, cr)
        ApplyJob.objects.filter(pk=job.pk).update(claimed_at=timezone.now())  # renew the lease
    ApplyJob.objects.filter(pk=job.pk).update(status=ApplyJob.Status.DONE, finished_at=timezone.now())
    services.sync_host(job.host_id)  # the inventory shows the new state at once
    finish_change_request(cr.pk)
    return "done"


__all__ = ["HostBusy", "run_job", "verify"]
