"""Apply (or roll back) a change request's per-host jobs, verifying every guest's change.

Per guest: a snapshot (what the change's scope touches: live tuning, config tuning and persistent XML;
usually the re-plan's own read, stored with the jobs by change_requests.start_change_request, else read
here first), then write the planned pins and caps, read them back and compare (libvirt's getters and the
vCPU threads' real affinity), and on any failure put back what the change touched from the snapshot and
record both errors. Every snapshot is committed before anything is written, so a worker killed mid-apply
is redelivered with them: the guest is re-applied from the same snapshot (writing the same values twice
has no further effect) and never re-snapshotted in its half-changed state.

The hosts of one run go in parallel, a few guests of each host at once on its one connection (libvirt
multiplexes calls), on the process's call pool (hosts.threads). Only the calling thread touches the
database: it commits whatever guests finished together, at most every COMMIT_EVERY_SECONDS, with one
statement per table, so the change request page shows progress as it goes and a commit does not compete
with the guests in flight.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from hosts import live, services, threads
from hosts.change_requests import JOB_LEASE_SECONDS, claim_jobs, fail_target, finish_change_request, target_event
from hosts.cpulist import CpulistError, parse_cpulist
from hosts.libvirt_client import DOMAIN_STATES, IN_FLIGHT_PER_CONNECTION, DomainFacts, HostSession, VirtError
from hosts.models import ApplyJob, AuditEvent, ChangeTarget, Domain
from hosts.models.rows import update_rows
from hosts.planning import SCOPE_PARTS

log = logging.getLogger(__name__)

# Guests of one host whose libvirt calls are in flight at once (see libvirt_client).
IN_FLIGHT_PER_HOST = IN_FLIGHT_PER_CONNECTION
# Finished guests are committed together, at most once per this many seconds (the last ones at once): the
# change request page, which asks once a second, still sees progress, and a commit does not take the CPU
# from the guests still in flight. A change that takes less than this makes one commit at its end.
COMMIT_EVERY_SECONDS = 0.25


_STATE_CODES = {name: code for code, name in DOMAIN_STATES.items()}


class VerifyError(Exception):
    """What libvirt or the kernel reports after applying differs from the plan."""


def _same_cpus(a: Any, b: Any) -> bool:
    try:
        return parse_cpulist(str(a)) == parse_cpulist(str(b))
    except CpulistError:
        return False


def verify(
    desired: dict[str, Any], facts: DomainFacts, scopes: tuple[str, ...], *, expected: str = "planned"
) -> list[str]:
    """Return what differs between the plan and what the guest reports now (empty when all took effect).

    Live vCPU pins are also checked against the kernel's real affinity of the vCPU threads.
    """
    problems: list[str] = []
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


def _restored(target: ChangeTarget, guest: DomainFacts, scopes: tuple[str, ...]) -> list[str]:
    """Return what differs, in what the change touched, between the snapshot and the guest now."""
    before = target.before or {}
    problems = []
    for scope in scopes:
        now = guest.live if scope == "live" else guest.config
        if before.get(scope) and now is not None:
            problems += verify(touched(before[scope], target.desired), guest, (scope,), expected="was")
    return problems


def _public(snapshot: dict[str, Any] | None) -> dict[str, Any] | None:
    """A snapshot without its raw XML, for the audit log and the API."""
    return None if snapshot is None else {k: v for k, v in snapshot.items() if k != "config_xml"}


@dataclass
class Outcome:
    """What the libvirt side of one guest's apply or rollback came to (no database involved)."""

    ok: bool
    guest: DomainFacts | None = None  # the guest as read: a snapshot taken, or its state after the change
    error: str = ""
    restore_error: str = ""


def _snapshot(run: _HostRun, target: ChangeTarget) -> Outcome:
    scopes = run.scopes
    try:
        guest = run.connected.read_guest(str(target.domain_uuid), scopes)
    except VirtError as exc:
        return Outcome(False, error=f"Could not read {target.domain_name} before changing it: {exc.message}.")
    if "live" in scopes and guest.live is None:
        return Outcome(False, error=f"{target.domain_name} is {guest.state}: a live change needs it running.")
    return Outcome(True, guest)


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


def _save(target: ChangeTarget, **fields: Any) -> None:
    target.save(update_fields=list(_set(target, **fields)))


Marker = tuple[int, int | None, str, str, float]


def _marker(target: ChangeTarget, kind: str) -> Marker | None:
    """A chart marker for a guest whose change took effect (announced once its job is done)."""
    if target.domain_id is None:
        return None
    label = f"CR-{target.change_request_id} {kind.replace('_', ' ')}"
    return (target.domain_id, target.host_id, kind, label, timezone.now().timestamp())


@dataclass
class _Record:
    """What one guest's outcome writes: its target row's changed fields, an audit row, and for a guest whose
    change (or rollback) took effect, its tuning now for the inventory and a chart marker."""

    target: ChangeTarget
    fields: tuple[str, ...]
    event: AuditEvent
    now: DomainFacts | None = None
    marker: Marker | None = None


def _set(target: ChangeTarget, **fields: Any) -> tuple[str, ...]:
    for name, value in fields.items():
        setattr(target, name, value)
    return tuple(sorted(fields))


def _record_applied(target: ChangeTarget, outcome: Outcome) -> _Record:
    if outcome.ok and outcome.guest is not None:
        after = _public(outcome.guest.snapshot_json())
        fields = _set(target, after=after, status=ChangeTarget.Status.APPLIED, finished_at=timezone.now())
        event = target_event(target, AuditEvent.Action.CHANGE_APPLIED, before=_public(target.before), after=after)
        return _Record(target, fields, event, outcome.guest, _marker(target, "applied"))
    status = ChangeTarget.Status.RESTORE_FAILED if outcome.restore_error else ChangeTarget.Status.FAILED
    message = f"Applying failed: {outcome.error}. " + (
        f"Restoring it failed too: {outcome.restore_error}"
        if outcome.restore_error
        else "It was restored to its snapshot."
    )
    fields = _set(
        target, status=status, error=outcome.error, restore_error=outcome.restore_error, finished_at=timezone.now()
    )
    event = target_event(target, AuditEvent.Action.CHANGE_FAILED, message, before=_public(target.before))
    return _Record(target, fields, event)


def _record_rolled_back(target: ChangeTarget, outcome: Outcome) -> _Record:
    if outcome.ok and outcome.guest is not None:
        now = _public(outcome.guest.snapshot_json())
        fields = _set(target, status=ChangeTarget.Status.ROLLED_BACK, finished_at=timezone.now())
        event = target_event(target, AuditEvent.Action.CHANGE_ROLLED_BACK, before=target.after, after=now)
        return _Record(target, fields, event, outcome.guest, _marker(target, "rolled_back"))
    message = f"Rollback failed: {outcome.error}"
    fields = _set(target, restore_error=message)
    return _Record(target, fields, target_event(target, AuditEvent.Action.CHANGE_FAILED, message))


def _write(records: list[_Record]) -> None:
    """Write a batch of guests' outcomes with a few statements, whatever the batch's size."""
    by_fields: dict[tuple[str, ...], list[ChangeTarget]] = {}
    for record in records:
        by_fields.setdefault(record.fields, []).append(record.target)
    for fields, targets in by_fields.items():
        update_rows(targets, fields)
    AuditEvent.objects.bulk_create([record.event for record in records])


def _refresh_inventory(changed: list[tuple[ChangeTarget, DomainFacts]]) -> None:
    """Show the guests as their last read found them in the inventory at once, without waiting for a sync."""
    rows = Domain.objects.filter(
        host_id__in={t.host_id for t, _g in changed}, uuid__in={t.domain_uuid for t, _g in changed}
    ).only("pk", "host_id", "uuid")
    pks = {(row.host_id, row.uuid): row.pk for row in rows}
    now = timezone.now()
    by_fields: dict[tuple[str, ...], list[Domain]] = {}
    for target, guest in changed:
        pk = pks.get((target.host_id, target.domain_uuid))
        if pk is None:
            continue  # the guest was undefined meanwhile: the next sync says so
        values = {**services.domain_values(guest, complete=False), "synced_at": now}
        by_fields.setdefault(tuple(values), []).append(Domain(pk=pk, **values))
    for names, domains in by_fields.items():
        update_rows(domains, names)


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
    def first_run(self) -> bool:
        """Claimed once, by this run: no earlier worker ran the job, so none of its guests was written yet
        (a guest already marked applying was marked so with the job, see start_change_request)."""
        return self.job.attempts == 1

    @property
    def connected(self) -> HostSession:
        """The session of a host that answered (only such runs get libvirt work)."""
        assert self.session is not None
        return self.session


Work = tuple[_HostRun, ChangeTarget]


class _Lanes:
    """Run guests' libvirt work on one shared thread pool, at most a few per host at once.

    ``batches`` yields whatever finished since the last batch, so the caller (the only thread that touches
    the database) commits several guests in one short transaction when they finish together. The threads
    are the process's call pool (hosts.threads): the work is leaf libvirt calls.
    """

    def __init__(self, work: Callable[[_HostRun, ChangeTarget], Outcome]) -> None:
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
            self._running[threads.call_pool().submit(self._work, run, target)] = (run, target)

    @property
    def running(self) -> bool:
        """Whether some guest's work still runs: another batch will come."""
        return bool(self._running)

    def batches(self, every: float = 0.0) -> Iterator[list[tuple[_HostRun, ChangeTarget, Outcome]]]:
        """Yield what finished, at most one batch per ``every`` seconds (the last one at once)."""
        for run in self._waiting:
            self._feed(run)
        batch: list[tuple[_HostRun, ChangeTarget, Outcome]] = []
        last = time.monotonic()
        while self._running:
            timeout = max(0.0, last + every - time.monotonic()) if batch else None
            done, _pending = wait(self._running, timeout=timeout, return_when=FIRST_COMPLETED)
            for future in done:
                run, target = self._running.pop(future)
                self._in_flight[run] -= 1
                self.left[run] -= 1
                batch.append((run, target, future.result()))
            for run in {run for run, _t, _o in batch}:
                self._feed(run)  # at once: the lanes stay full while the batch waits
            if batch and (not self._running or time.monotonic() - last >= every):
                yield batch
                batch, last = [], time.monotonic()


def _open(run: _HostRun) -> HostSession | VirtError:
    try:
        return HostSession(run.job.host.uri)
    except VirtError as exc:
        return exc


def _unreachable(run: _HostRun, reason: str) -> None:
    """Record, for a job whose host does not answer, what is known about each of its guests."""
    unreachable = f"{run.job.host.name} cannot be reached: {reason}"
    untouched = [ChangeTarget.Status.PLANNED] + ([ChangeTarget.Status.APPLYING] if run.first_run else [])
    with transaction.atomic():
        for target in run.targets:
            if run.applying and target.status in untouched:
                fail_target(target, f"{unreachable}. It was not changed.")
            elif run.applying and target.status == ChangeTarget.Status.APPLYING:
                # Redelivered after a worker died mid-write, and now the host is gone: say what is known.
                _save(
                    target,
                    status=ChangeTarget.Status.RESTORE_FAILED,
                    error=unreachable,
                    restore_error="the guest may be half-changed; roll back once the host answers",
                )
                target_event(target, AuditEvent.Action.CHANGE_FAILED, unreachable).save()
            elif not run.applying and target.status in _ROLLBACKABLE and target.before:
                _save(target, restore_error=f"Rollback failed: {unreachable}")
        _jobs_done([run.job.pk])


_ROLLBACKABLE = (ChangeTarget.Status.APPLIED, ChangeTarget.Status.RESTORE_FAILED)


def _jobs_done(job_ids: Sequence[int]) -> None:
    if job_ids:
        ApplyJob.objects.filter(pk__in=job_ids).exclude(status=ApplyJob.Status.DONE).update(
            status=ApplyJob.Status.DONE, finished_at=timezone.now()
        )


def _snapshot_phase(runs: list[_HostRun]) -> None:
    """Snapshot the guests that have none yet, then mark every guest about to be written as applying; all
    of it committed before anything is written.

    A live change's guests usually need nothing here: the re-plan's read is their snapshot and they were
    marked applying with their job (see change_requests.start_change_request).
    """
    lanes = _Lanes(_snapshot)
    for run in runs:
        lanes.add(run, [t for t in run.targets if t.status == ChangeTarget.Status.PLANNED and t.before is None])
    taken = [item for batch in lanes.batches() for item in batch]
    starting = [t for run in runs for t in run.targets if t.status == ChangeTarget.Status.PLANNED and t.before]
    if not taken and not starting:
        return
    now = timezone.now()
    with transaction.atomic():
        for _run, target, outcome in taken:
            if outcome.ok and outcome.guest is not None:
                _save(target, before=outcome.guest.snapshot_json(), status=ChangeTarget.Status.APPLYING, started_at=now)
            else:
                fail_target(target, f"{outcome.error} It was not changed.")
        for target in starting:
            target.status, target.started_at = ChangeTarget.Status.APPLYING, now
        update_rows(starting, ["status", "started_at"])


def _work(run: _HostRun, target: ChangeTarget) -> Outcome:
    one = _apply_one if run.applying else _rollback_one
    return one(run.connected, target, run.scopes)


def _finish(runs: list[_HostRun]) -> None:
    """Close the jobs and settle their requests' status (inside the caller's transaction)."""
    _jobs_done([run.job.pk for run in runs])
    for cr_id in sorted({run.job.change_request_id for run in runs}):
        finish_change_request(cr_id)


def _run(runs: list[_HostRun]) -> None:
    """Apply or roll back the claimed jobs: hosts in parallel, this thread alone writing to the database."""
    markers: list[Marker] = []
    changed: list[tuple[ChangeTarget, DomainFacts]] = []
    for run, session in zip(runs, threads.call_pool().map(_open, runs), strict=True):
        if isinstance(session, VirtError):
            _unreachable(run, session.message)
        else:
            run.session = session
    reachable = [run for run in runs if run.session is not None]
    _snapshot_phase([run for run in reachable if run.applying])
    lanes = _Lanes(_work)
    for run in reachable:
        wanted = (ChangeTarget.Status.APPLYING,) if run.applying else _ROLLBACKABLE
        lanes.add(run, [t for t in run.targets if t.status in wanted and t.before])
    finished = False
    for batch in lanes.batches(every=COMMIT_EVERY_SECONDS):
        now = timezone.now()
        with transaction.atomic():
            records = [(_record_applied if run.applying else _record_rolled_back)(t, o) for run, t, o in batch]
            _write(records)
            markers += [record.marker for record in records if record.marker is not None]
            changed += [(record.target, record.now) for record in records if record.now is not None]
            # Every finished guest renews its job's lease; a job with none left is done (its host is free for
            # other changes), and once every job is, the requests' status is settled in this transaction.
            batch_runs = {run for run, _t, _o in batch}
            ApplyJob.objects.filter(pk__in=[run.job.pk for run in batch_runs if lanes.left[run]]).update(claimed_at=now)
            _jobs_done([run.job.pk for run in batch_runs if not lanes.left[run]])
            if not lanes.running:
                _finish(runs)
                finished = True
    if not finished:  # nothing to write (every guest failed before, or no host answered)
        with transaction.atomic():
            _finish(runs)
    # The change is recorded; now show the guests' new tuning in the inventory (the next sync would too),
    # then tell the charts, which reload their caps from it.
    if changed:
        with transaction.atomic():
            _refresh_inventory(changed)
    live.announce_markers(markers)


def run_jobs(job_ids: Sequence[int], claimed: Sequence[ApplyJob] = ()) -> list[int]:
    """Run the apply or rollback jobs this process can claim, hosts in parallel; safe to call again.

    ``claimed`` are jobs this process claimed when it created them (see change_requests.Started). Returns
    the ids of jobs whose host is busy with another change (the caller tries them again later). Jobs that
    are done, or held by another live worker, are skipped.
    """
    jobs, busy = claim_jobs(job_ids, JOB_LEASE_SECONDS) if job_ids else ([], [])
    jobs = [*claimed, *jobs]
    if not jobs:
        return busy
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
    _run(runs)
    return busy


def give_up_waiting(job_ids: Sequence[int], waited: str) -> None:
    """Fail jobs whose host stayed busy with other changes for too long; their guests were not touched."""
    jobs = list(ApplyJob.objects.filter(pk__in=job_ids).exclude(status=ApplyJob.Status.DONE).select_related("host"))
    with transaction.atomic():
        for job in jobs:
            message = f"{job.host.name} was busy with other changes for {waited}; this guest was not changed."
            waiting = ChangeTarget.objects.filter(
                change_request_id=job.change_request_id, host_id=job.host_id, status=ChangeTarget.Status.PLANNED
            )
            for target in waiting:
                fail_target(target, message)
        _jobs_done([job.pk for job in jobs])
    for cr_id in sorted({job.change_request_id for job in jobs}):
        finish_change_request(cr_id)


__all__ = ["give_up_waiting", "run_jobs", "touched", "verify"]
