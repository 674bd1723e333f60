"""Apply (or roll back) a change request's per-host jobs, verifying every guest's change.

Per guest: take a snapshot (what the change's scope touches: live tuning, config tuning and persistent
XML; a live change's snapshot is the re-plan's own read, see change_requests.start_change_request), write
the planned pins and caps, read them back and compare (libvirt's getters and the vCPU threads' real
affinity), and on any failure put back what the change touched from the snapshot and record both errors.
Every snapshot is committed before anything is written, so a worker killed mid-apply is redelivered with
them: the guest is re-applied from the same snapshot (writing the same values twice has no further effect)
and never re-snapshotted in its half-changed state.

The hosts of one run go in parallel, a few guests of each host at once on its one connection (libvirt
multiplexes calls), on one thread pool. Only the calling thread touches the database: it commits whatever
guests finished together in one short transaction, so the change request page shows progress as it goes
and the database sees few commits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from hosts import live
from hosts.change_requests import claim_jobs, finish_change_request
from hosts.cpulist import CpulistError, parse_cpulist
from hosts.libvirt_client import DOMAIN_STATES, IN_FLIGHT_PER_CONNECTION, GuestSnapshot, HostSession, VirtError
from hosts.models import ApplyJob, AuditEvent, ChangeTarget, Domain
from hosts.planning import SCOPE_PARTS

log = logging.getLogger(__name__)

# A running job renews its lease after every guest; one that stops renewing for this long is reclaimed.
JOB_LEASE_SECONDS = 60
# Guests of one host whose libvirt calls are in flight at once (see libvirt_client).
IN_FLIGHT_PER_HOST = IN_FLIGHT_PER_CONNECTION
# Threads one worker process uses for libvirt calls, whatever the number of hosts.
MAX_THREADS = 32


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


def touched(tuning: dict[str, Any] | None, desired: dict[str, Any]) -> dict[str, Any]:
    """The part of a snapshot's tuning that a change writes: what undoing the change puts back.

    Only the pins and caps the change touched are restored and checked; anything else (say, a cap someone
    set by hand meanwhile) is left as it is now.
    """
    tuning = tuning or {}
    out: dict[str, Any] = {}
    for key in ("vcpupin", "iothreadpin"):
        had = tuning.get(key) or {}
        picked = {k: had[k] for k in (desired.get(key) or {}) if k in had}
        if picked:
            out[key] = picked
    if desired.get("emulatorpin") and tuning.get("emulatorpin"):
        out["emulatorpin"] = tuning["emulatorpin"]
    had_sched = tuning.get("sched") or {}
    sched = {k: had_sched[k] for k in (desired.get("sched") or {}) if k in had_sched}
    if sched:
        out["sched"] = sched
    return out


def _undo(target: ChangeTarget) -> dict[str, Any]:
    """The snapshot to restore: the config's exact XML, and the live values the change touched."""
    before = dict(target.before or {})
    if before.get("live"):
        before["live"] = touched(before["live"], target.desired)
    return before


def _restored(target: ChangeTarget, snapshot: GuestSnapshot, scopes: tuple[str, ...]) -> list[str]:
    """Return what differs, in what the change touched, between the snapshot and the guest now."""
    before = target.before or {}
    problems = []
    for scope in scopes:
        now = snapshot.facts.live if scope == "live" else snapshot.facts.config
        if before.get(scope) and now is not None:
            problems += verify(touched(before[scope], target.desired), snapshot, (scope,), expected="was")
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


def _snapshot(run: _HostRun, target: ChangeTarget) -> Outcome:
    scopes = run.scopes
    try:
        snapshot = run.connected.read_guest(str(target.domain_uuid), scopes)
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
        session.restore(uuid, _undo(target), scopes)
        leftover = _restored(target, session.read_guest(uuid, scopes), scopes)
        if leftover:
            restore_error = "after restoring: " + "; ".join(leftover)
    except VirtError as exc:
        restore_error = exc.message
    return Outcome(False, error=error, restore_error=restore_error)


def _rollback_one(session: HostSession, target: ChangeTarget, scopes: tuple[str, ...]) -> Outcome:
    """Put one changed guest back as its snapshot found it, and check that it is."""
    uuid = str(target.domain_uuid)
    try:
        session.restore(uuid, _undo(target), scopes)
        now = session.read_guest(uuid, scopes)
        leftover = _restored(target, now, scopes)
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


def _save(target: ChangeTarget, **fields: Any) -> None:
    for name, value in fields.items():
        setattr(target, name, value)
    target.save(update_fields=list(fields))


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


Marker = tuple[int, int | None, str, str, float]


def _marker(target: ChangeTarget, kind: str) -> Marker | None:
    """A chart marker for a guest whose change took effect (announced once its job is done)."""
    if target.domain_id is None:
        return None
    label = f"CR-{target.change_request_id} {kind.replace('_', ' ')}"
    return (target.domain_id, target.host_id, kind, label, timezone.now().timestamp())


def _fail(target: ChangeTarget, message: str) -> None:
    _save(target, status=ChangeTarget.Status.FAILED, error=message, finished_at=timezone.now())
    _event(target, AuditEvent.Action.CHANGE_FAILED, message)


def _record_applied(target: ChangeTarget, outcome: Outcome) -> Marker | None:
    if outcome.ok and outcome.snapshot is not None:
        after = _public(outcome.snapshot.as_json())
        _save(target, after=after, status=ChangeTarget.Status.APPLIED, finished_at=timezone.now())
        _event(target, AuditEvent.Action.CHANGE_APPLIED, before=_public(target.before), after=after)
        _refresh_inventory(target, outcome.snapshot)
        return _marker(target, "applied")
    status = ChangeTarget.Status.RESTORE_FAILED if outcome.restore_error else ChangeTarget.Status.FAILED
    message = f"Applying failed: {outcome.error}. " + (
        f"Restoring it failed too: {outcome.restore_error}"
        if outcome.restore_error
        else "It was restored to its snapshot."
    )
    _save(target, status=status, error=outcome.error, restore_error=outcome.restore_error, finished_at=timezone.now())
    _event(target, AuditEvent.Action.CHANGE_FAILED, message, before=_public(target.before))
    return None


def _record_rolled_back(target: ChangeTarget, outcome: Outcome) -> Marker | None:
    if outcome.ok and outcome.snapshot is not None:
        now = _public(outcome.snapshot.as_json())
        _save(target, status=ChangeTarget.Status.ROLLED_BACK, finished_at=timezone.now())
        _event(target, AuditEvent.Action.CHANGE_ROLLED_BACK, before=target.after, after=now)
        _refresh_inventory(target, outcome.snapshot)
        return _marker(target, "rolled_back")
    _save(target, restore_error=f"Rollback failed: {outcome.error}")
    _event(target, AuditEvent.Action.CHANGE_FAILED, f"Rollback failed: {outcome.error}")
    return None


@dataclass(eq=False)
class _HostRun:
    """One claimed job: its host's session and the guests it changes."""

    job: ApplyJob
    targets: list[ChangeTarget]
    scopes: tuple[str, ...]
    session: HostSession | None = None

    @property
    def applying(self) -> bool:
        return self.job.kind == ApplyJob.Kind.APPLY

    @property
    def connected(self) -> HostSession:
        """The session of a host that answered (only such runs get libvirt work)."""
        assert self.session is not None
        return self.session


Work = tuple[_HostRun, ChangeTarget]


class _Lanes:
    """Run guests' libvirt work on one shared thread pool, at most a few per host at once.

    ``batches`` yields whatever finished since the last batch, so the caller (the only thread that touches
    the database) commits several guests in one short transaction when they finish together.
    """

    def __init__(self, pool: ThreadPoolExecutor, work: Callable[[_HostRun, ChangeTarget], Outcome]) -> None:
        self._pool = pool
        self._work = work
        self._waiting: dict[_HostRun, list[ChangeTarget]] = {}
        self._running: dict[Future[Outcome], Work] = {}
        self._in_flight: dict[_HostRun, int] = {}
        self.left: dict[_HostRun, int] = {}

    def add(self, run: _HostRun, targets: list[ChangeTarget]) -> None:
        self._waiting[run] = list(reversed(targets))  # popped from the end, in order
        self._in_flight[run] = 0
        self.left[run] = len(targets)

    def _feed(self, run: _HostRun) -> None:
        waiting = self._waiting[run]
        while waiting and self._in_flight[run] < IN_FLIGHT_PER_HOST:
            target = waiting.pop()
            self._in_flight[run] += 1
            self._running[self._pool.submit(self._work, run, target)] = (run, target)

    def batches(self) -> Iterator[list[tuple[_HostRun, ChangeTarget, Outcome]]]:
        for run in self._waiting:
            self._feed(run)
        while self._running:
            done, _pending = wait(self._running, return_when=FIRST_COMPLETED)
            batch = []
            for future in done:
                run, target = self._running.pop(future)
                self._in_flight[run] -= 1
                self.left[run] -= 1
                batch.append((run, target, future.result()))
            for run in {run for run, _t, _o in batch}:
                self._feed(run)
            yield batch


def _open(run: _HostRun) -> HostSession | VirtError:
    try:
        return HostSession(run.job.host.uri)
    except VirtError as exc:
        return exc


def _unreachable(run: _HostRun, reason: str) -> None:
    """Record, for a job whose host does not answer, what is known about each of its guests."""
    unreachable = f"{run.job.host.name} cannot be reached: {reason}"
    with transaction.atomic():
        for target in run.targets:
            if run.applying and target.status == ChangeTarget.Status.PLANNED:
                _fail(target, f"{unreachable}. It was not changed.")
            elif run.applying and target.status == ChangeTarget.Status.APPLYING:
                # Redelivered after a worker died mid-write, and now the host is gone: say what is known.
                _save(
                    target,
                    status=ChangeTarget.Status.RESTORE_FAILED,
                    error=unreachable,
                    restore_error="the guest may be half-changed; roll back once the host answers",
                )
                _event(target, AuditEvent.Action.CHANGE_FAILED, unreachable)
            elif not run.applying and target.status in _ROLLBACKABLE and target.before:
                _save(target, restore_error=f"Rollback failed: {unreachable}")


_ROLLBACKABLE = (ChangeTarget.Status.APPLIED, ChangeTarget.Status.RESTORE_FAILED)


def _snapshot_phase(pool: ThreadPoolExecutor, runs: list[_HostRun]) -> None:
    """Snapshot the guests that have none yet (a live change's were taken by the re-plan), then mark every
    guest about to be written as applying; all of it committed before anything is written."""
    lanes = _Lanes(pool, _snapshot)
    for run in runs:
        lanes.add(run, [t for t in run.targets if t.status == ChangeTarget.Status.PLANNED and t.before is None])
    taken = [item for batch in lanes.batches() for item in batch]
    now = timezone.now()
    with transaction.atomic():
        for _run, target, outcome in taken:
            if outcome.ok and outcome.snapshot is not None:
                target.before = outcome.snapshot.as_json()
                _save(target, before=target.before)
            else:
                _fail(target, f"{outcome.error} It was not changed.")
        starting = [
            t for run in runs for t in run.targets if t.status == ChangeTarget.Status.PLANNED and t.before is not None
        ]
        for target in starting:
            target.status, target.started_at = ChangeTarget.Status.APPLYING, now
        ChangeTarget.objects.bulk_update(starting, ["status", "started_at"])


def _work(run: _HostRun, target: ChangeTarget) -> Outcome:
    one = _apply_one if run.applying else _rollback_one
    return one(run.connected, target, run.scopes)


def _run(runs: list[_HostRun]) -> None:
    """Apply or roll back the claimed jobs: hosts in parallel, this thread alone writing to the database."""
    markers: list[Marker] = []
    with ThreadPoolExecutor(max_workers=min(MAX_THREADS, IN_FLIGHT_PER_HOST * len(runs))) as pool:
        for run, session in zip(runs, pool.map(_open, runs), strict=True):
            if isinstance(session, VirtError):
                _unreachable(run, session.message)
            else:
                run.session = session
        reachable = [run for run in runs if run.session is not None]
        _snapshot_phase(pool, [run for run in reachable if run.applying])
        lanes = _Lanes(pool, _work)
        for run in reachable:
            wanted = (ChangeTarget.Status.APPLYING,) if run.applying else _ROLLBACKABLE
            lanes.add(run, [t for t in run.targets if t.status in wanted and t.before])
        for batch in lanes.batches():
            now = timezone.now()
            with transaction.atomic():
                for run, target, outcome in batch:
                    record = _record_applied if run.applying else _record_rolled_back
                    if (mark := record(target, outcome)) is not None:
                        markers.append(mark)
                jobs = {run.job.pk: run for run, _t, _o in batch}
                finished = [pk for pk, run in jobs.items() if not lanes.left[run]]
                # Every finished guest renews its job's lease; a job with none left is done.
                ApplyJob.objects.filter(pk__in=set(jobs) - set(finished)).update(claimed_at=now)
                ApplyJob.objects.filter(pk__in=finished).update(status=ApplyJob.Status.DONE, finished_at=now)
    ApplyJob.objects.filter(pk__in=[run.job.pk for run in runs]).exclude(status=ApplyJob.Status.DONE).update(
        status=ApplyJob.Status.DONE, finished_at=timezone.now()
    )
    for cr_id in sorted({run.job.change_request_id for run in runs}):
        finish_change_request(cr_id)
    live.announce_markers(markers)  # every change above is committed: charts may reload their caps


def run_jobs(job_ids: Sequence[int]) -> list[int]:
    """Run the apply or rollback jobs this process can claim, hosts in parallel; safe to call again.

    Returns the ids of jobs whose host is busy with another change (the caller tries them again later).
    Jobs that are done, or held by another live worker, are skipped.
    """
    jobs, busy = claim_jobs(job_ids, JOB_LEASE_SECONDS)
    targets: dict[tuple[int, int], list[ChangeTarget]] = {}
    wanted = ChangeTarget.objects.filter(
        change_request_id__in={job.change_request_id for job in jobs}, host_id__in={job.host_id for job in jobs}
    )
    for target in wanted.order_by("domain_name"):
        targets.setdefault((target.change_request_id, target.host_id), []).append(target)
    runs = [
        _HostRun(job, targets.get((job.change_request_id, job.host_id), []), SCOPE_PARTS[job.change_request.scope])
        for job in jobs
    ]
    if runs:
        _run(runs)
    return busy


def give_up_waiting(job_ids: Sequence[int], waited: str) -> None:
    """Fail jobs whose host stayed busy with other changes for too long; their guests were not touched."""
    jobs = list(ApplyJob.objects.filter(pk__in=job_ids).exclude(status=ApplyJob.Status.DONE).select_related("host"))
    with transaction.atomic():
        for job in jobs:
            message = f"{job.host.name} was busy with other changes for {waited}; this guest was not changed."
            for target in job.change_request.targets.filter(host_id=job.host_id, status=ChangeTarget.Status.PLANNED):
                _fail(target, message)
            ApplyJob.objects.filter(pk=job.pk).update(status=ApplyJob.Status.DONE, finished_at=timezone.now())
    for cr_id in sorted({job.change_request_id for job in jobs}):
        finish_change_request(cr_id)


__all__ = ["give_up_waiting", "run_jobs", "touched", "verify"]
