"""Apply (or roll back) one change request on one host, verifying every guest's change.

Per guest: take a snapshot (what the change's scope touches: live tuning and real affinity, config tuning
and persistent XML), write the planned pins and caps, read them back and compare (libvirt's getters and the
vCPU threads' real affinity), and on any failure restore the guest from its snapshot and record both
errors. Every snapshot is committed before anything is written, so a worker killed mid-apply is redelivered
with them: the guest is re-applied from the same snapshot (writing the same values twice has no further
effect) and never re-snapshotted in its half-changed state.

The libvirt work of a few guests of the host runs at once on one connection (libvirt multiplexes calls);
all database writes happen in the job's own thread, one short transaction per finished guest, so the
change request page shows progress guest by guest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from hosts import live
from hosts.change_requests import HostBusy, claim_job, finish_change_request
from hosts.cpulist import CpulistError, parse_cpulist
from hosts.libvirt_client import DOMAIN_STATES, IN_FLIGHT_PER_CONNECTION, GuestSnapshot, HostSession, VirtError
from hosts.models import ApplyJob, AuditEvent, ChangeTarget, Domain
from hosts.planning import SCOPE_PARTS

log = logging.getLogger(__name__)

# A running job renews its lease after every guest; one that stops renewing for this long is reclaimed.
JOB_LEASE_SECONDS = 60
# Guests of one host whose libvirt calls are in flight at once (see libvirt_client).
IN_FLIGHT_PER_HOST = IN_FLIGHT_PER_CONNECTION


_STATE_CODES = {name: code for code, name in DOMAIN_STATES.items()}


class VerifyError(Exception):
    """What libvirt or the kernel reports after applying differs from the plan."""


def _same_cpus(a: Any, b: Any) -> bool:
    try:
        return parse_cpulist(str(a)) == parse_cpulist(str(b))
    except CpulistError:
        return False


def verify(
    desired: dict[str, Any], snapshot: GuestSnapshot, scopes: tuple[str, ...], *, expected: str = "planned"
) -> list[str]:
    """Return what differs between the plan and what the guest reports now (empty when all took effect).

    Live vCPU pins are also checked against the kernel's real affinity of the vCPU threads.
    """
    problems: list[str] = []
    facts = snapshot.facts
    for scope in scopes:
        tuning = facts.live if scope == "live" else facts.config
        if tuning is None:
            problems.append(f"{scope}: libvirt reports no {scope} tuning for this guest")
            continue
        for vcpu, cpus in (desired.get("vcpupin") or {}).items():
            if not _same_cpus(tuning.vcpupin.get(int(vcpu)), cpus):
                problems.append(f"{scope} vcpupin {vcpu} is {tuning.vcpupin.get(int(vcpu))}, {expected} {cpus}")
            real = (facts.affinity or {}).get(int(vcpu))
            if scope == "live" and not _same_cpus(real, cpus):
                problems.append(f"vCPU {vcpu} thread may run on CPUs {real} (kernel), {expected} {cpus}")
        if desired.get("emulatorpin") and not _same_cpus(tuning.emulatorpin, desired["emulatorpin"]):
            problems.append(f"{scope} emulatorpin is {tuning.emulatorpin}, {expected} {desired['emulatorpin']}")
        for iothread, cpus in (desired.get("iothreadpin") or {}).items():
            if not _same_cpus(tuning.iothreadpin.get(int(iothread)), cpus):
                problems.append(
                    f"{scope} iothreadpin {iothread} is {tuning.iothreadpin.get(int(iothread))}, {expected} {cpus}"
                )
        for name, value in (desired.get("sched") or {}).items():
            if tuning.sched.get(name) != int(value):
                problems.append(f"{scope} {name} is {tuning.sched.get(name)}, {expected} {value}")
    return problems


def _restored(before: dict[str, Any], snapshot: GuestSnapshot, scopes: tuple[str, ...]) -> list[str]:
    """Return what differs between a snapshot taken before a change and the guest now."""
    problems = []
    for scope in scopes:
        now = snapshot.facts.live if scope == "live" else snapshot.facts.config
        if before.get(scope) and now is not None:
            problems += verify(before[scope], snapshot, (scope,), expected="was")
    return problems


def _public(snapshot: dict[str, Any] | None) -> dict[str, Any] | None:
    """A snapshot without its raw XML, for the audit log and the API."""
    return None if snapshot is None else {k: v for k, v in snapshot.items() if k != "config_xml"}


@dataclass
class Outcome:
    """What the libvirt side of one guest's apply or rollback came to (no database involved)."""

    ok: bool
    snapshot: GuestSnapshot | None = None
    error: str = ""
    restore_error: str = ""


def _in_parallel(
    work: Callable[[ChangeTarget], Outcome], targets: list[ChangeTarget]
) -> Iterator[tuple[ChangeTarget, Outcome]]:
    """Run ``work`` for a few targets at a time; yield each target with its outcome as it finishes."""
    if not targets:
        return
    with ThreadPoolExecutor(max_workers=min(IN_FLIGHT_PER_HOST, len(targets))) as pool:
        futures = {pool.submit(work, target): target for target in targets}
        for future in as_completed(futures):
            yield futures[future], future.result()


def _snapshot(session: HostSession, target: ChangeTarget, scopes: tuple[str, ...]) -> Outcome:
    try:
        snapshot = session.read_guest(str(target.domain_uuid), scopes)
    except VirtError as exc:
        return Outcome(False, error=f"Could not read {target.domain_name} before changing it: {exc.message}.")
    if "live" in scopes and snapshot.facts.live is None:
        return Outcome(False, error=f"{target.domain_name} is {snapshot.facts.state}: a live change needs it running.")
    return Outcome(True, snapshot)


def _apply_one(session: HostSession, target: ChangeTarget, scopes: tuple[str, ...]) -> Outcome:
    """Write, read back and verify one guest; restore it from its snapshot if anything goes wrong."""
    uuid = str(target.domain_uuid)
    try:
        session.apply(uuid, target.desired, scopes)
        # The snapshot said the guest runs (or the scope is config only); the threads' affinity can only have
        # moved if vCPU pins were written.
        state = _STATE_CODES.get((target.before or {}).get("state", ""))
        after = session.read_guest(uuid, scopes, state=state, with_affinity="vcpupin" in target.desired)
        problems = verify(target.desired, after, scopes)
        if problems:
            raise VerifyError("; ".join(problems))
        return Outcome(True, after)
    except (VirtError, VerifyError) as exc:
        error = exc.message if isinstance(exc, VirtError) else f"verification failed: {exc}"
    restore_error = ""
    try:
        session.restore(uuid, target.before or {}, scopes)
        leftover = _restored(target.before or {}, session.read_guest(uuid, scopes), scopes)
        if leftover:
            restore_error = "after restoring: " + "; ".join(leftover)
    except VirtError as exc:
        restore_error = exc.message
    return Outcome(False, error=error, restore_error=restore_error)


def _rollback_one(session: HostSession, target: ChangeTarget, scopes: tuple[str, ...]) -> Outcome:
    """Put one changed guest back as its snapshot found it, and check that it is."""
    uuid = str(target.domain_uuid)
    try:
        session.restore(uuid, target.before or {}, scopes)
        now = session.read_guest(uuid, scopes)
        leftover = _restored(target.before or {}, now, scopes)
        if leftover:
            raise VerifyError("; ".join(leftover))
        return Outcome(True, now)
    except (VirtError, VerifyError) as exc:
        return Outcome(False, error=exc.message if isinstance(exc, VirtError) else f"verification failed: {exc}")


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


def _save(target: ChangeTarget, job: ApplyJob, **fields: Any) -> None:
    """Store a target's progress and renew the job's lease in the same write."""
    for name, value in fields.items():
        setattr(target, name, value)
    target.save(update_fields=list(fields))
    ApplyJob.objects.filter(pk=job.pk).update(claimed_at=timezone.now())


def _refresh_inventory(target: ChangeTarget, snapshot: GuestSnapshot) -> None:
    """Show the guest's new tuning in the inventory at once, without waiting for the next sync."""
    facts = snapshot.facts
    fields: dict[str, Any] = {"synced_at": timezone.now()}
    if facts.live is not None:
        fields["tuning_live"] = facts.live.as_json()
    if facts.affinity is not None:
        fields["affinity"] = {str(k): v for k, v in sorted(facts.affinity.items())}
    if facts.config is not None:
        fields["tuning_config"] = facts.config.as_json()
    Domain.objects.filter(host_id=target.host_id, uuid=target.domain_uuid).update(**fields)


def _marker(target: ChangeTarget, kind: str) -> tuple[int, int | None, str, str, float] | None:
    """A chart marker for a guest whose change took effect (announced once the job is done)."""
    if target.domain_id is None:
        return None
    label = f"CR-{target.change_request_id} {kind.replace('_', ' ')}"
    return (target.domain_id, target.host_id, kind, label, timezone.now().timestamp())


def _fail(target: ChangeTarget, job: ApplyJob, message: str) -> None:
    with transaction.atomic():
        _save(target, job, status=ChangeTarget.Status.FAILED, error=message, finished_at=timezone.now())
        _event(target, AuditEvent.Action.CHANGE_FAILED, message)


Marker = tuple[int, int | None, str, str, float]


def _apply_job(
    job: ApplyJob, session: HostSession, targets: list[ChangeTarget], scopes: tuple[str, ...]
) -> list[Marker]:
    markers: list[Marker] = []
    todo = [t for t in targets if t.status in (ChangeTarget.Status.PLANNED, ChangeTarget.Status.APPLYING)]
    fresh = [t for t in todo if t.before is None]
    snapshots = dict(_in_parallel(lambda t: _snapshot(session, t, scopes), fresh))
    with transaction.atomic():  # every snapshot is stored before anything is written to a guest
        for target in fresh:
            outcome = snapshots[target]
            if outcome.ok and outcome.snapshot is not None:
                _save(
                    target,
                    job,
                    before=outcome.snapshot.as_json(),
                    status=ChangeTarget.Status.APPLYING,
                    started_at=timezone.now(),
                )
            else:
                _fail(target, job, f"{outcome.error} It was not changed.")
    ready = [t for t in todo if t.status == ChangeTarget.Status.APPLYING]
    for target, outcome in _in_parallel(lambda t: _apply_one(session, t, scopes), ready):
        with transaction.atomic():
            if outcome.ok and outcome.snapshot is not None:
                after = _public(outcome.snapshot.as_json())
                _save(target, job, after=after, status=ChangeTarget.Status.APPLIED, finished_at=timezone.now())
                _event(target, AuditEvent.Action.CHANGE_APPLIED, before=_public(target.before), after=after)
                _refresh_inventory(target, outcome.snapshot)
                if (mark := _marker(target, "applied")) is not None:
                    markers.append(mark)
                continue
            status = ChangeTarget.Status.RESTORE_FAILED if outcome.restore_error else ChangeTarget.Status.FAILED
            message = f"Applying failed: {outcome.error}. " + (
                f"Restoring it failed too: {outcome.restore_error}"
                if outcome.restore_error
                else "It was restored to its snapshot."
            )
            _save(
                target,
                job,
                status=status,
                error=outcome.error,
                restore_error=outcome.restore_error,
                finished_at=timezone.now(),
            )
            _event(target, AuditEvent.Action.CHANGE_FAILED, message, before=_public(target.before))
    return markers


def _rollback_job(
    job: ApplyJob, session: HostSession, targets: list[ChangeTarget], scopes: tuple[str, ...]
) -> list[Marker]:
    markers: list[Marker] = []
    todo = [
        t for t in targets if t.status in (ChangeTarget.Status.APPLIED, ChangeTarget.Status.RESTORE_FAILED) and t.before
    ]
    for target, outcome in _in_parallel(lambda t: _rollback_one(session, t, scopes), todo):
        with transaction.atomic():
            if outcome.ok and outcome.snapshot is not None:
                now = _public(outcome.snapshot.as_json())
                _save(target, job, status=ChangeTarget.Status.ROLLED_BACK, finished_at=timezone.now())
                _event(target, AuditEvent.Action.CHANGE_ROLLED_BACK, before=target.after, after=now)
                _refresh_inventory(target, outcome.snapshot)
                if (mark := _marker(target, "rolled_back")) is not None:
                    markers.append(mark)
            else:
                _save(target, job, restore_error=f"Rollback failed: {outcome.error}")
                _event(target, AuditEvent.Action.CHANGE_FAILED, f"Rollback failed: {outcome.error}")
    return markers


def run_job(job_id: int) -> str:
    """Run one apply or rollback job if this worker can claim it; safe to call again for the same job."""
    job = claim_job(job_id, JOB_LEASE_SECONDS)
    if job is None:
        return "not claimed"
    cr = job.change_request
    scopes = SCOPE_PARTS[cr.scope]
    targets = list(cr.targets.filter(host_id=job.host_id).select_related("host").order_by("domain_name"))
    try:
        session = HostSession(job.host.uri)
    except VirtError as exc:
        session = None
        unreachable = f"{job.host.name} cannot be reached: {exc.message}"
        for target in targets:
            if job.kind == ApplyJob.Kind.APPLY and target.status == ChangeTarget.Status.PLANNED:
                _fail(target, job, f"{unreachable}. It was not changed.")
            elif job.kind == ApplyJob.Kind.APPLY and target.status == ChangeTarget.Status.APPLYING:
                # Redelivered after a worker died mid-write, and now the host is gone: say what is known.
                with transaction.atomic():
                    _save(
                        target,
                        job,
                        status=ChangeTarget.Status.RESTORE_FAILED,
                        error=unreachable,
                        restore_error="the guest may be half-changed; roll back once the host answers",
                    )
                    _event(target, AuditEvent.Action.CHANGE_FAILED, unreachable)
            elif job.kind == ApplyJob.Kind.ROLLBACK and target.before:
                _save(target, job, restore_error=f"Rollback failed: {unreachable}")
    markers: list[Marker] = []
    if session is not None:
        run = _apply_job if job.kind == ApplyJob.Kind.APPLY else _rollback_job
        markers = run(job, session, targets, scopes)
    ApplyJob.objects.filter(pk=job.pk).update(status=ApplyJob.Status.DONE, finished_at=timezone.now())
    finish_change_request(cr.pk)
    live.announce_markers(markers)  # every change above is committed: charts may reload their caps
    return "done"


__all__ = ["HostBusy", "run_job", "verify"]
