"""Apply (or roll back) a change request's per-host jobs, verifying every guest's change.

Per guest: a snapshot (what the change's scope touches: live tuning, config tuning and persistent XML;
usually the re-plan's own read, stored with the jobs by hosts/changes/start.py, else read
here first), then write the planned pins and caps, read them back and compare (libvirt's getters and the
vCPU threads' real affinity), and on any failure put back what the change touched from the snapshot and
record both errors. Every snapshot is committed before anything is written, so a worker killed mid-apply
is redelivered with them: the guest is re-applied from the same snapshot (writing the same values twice
has no further effect) and never re-snapshotted in its half-changed state.

The hosts of one run go in parallel, a few guests of each host at once on its one connection (libvirt
multiplexes calls), on the process's call pool (hosts.libvirt.pools). Only the calling thread touches the
database: it commits whatever guests finished together, at most every COMMIT_EVERY_SECONDS, with one
statement per table, so the change request page shows progress as it goes and a commit does not compete
with the guests in flight.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from hosts.changes.desired_state import later_writes
from hosts.changes.guest import Outcome, apply_guest, rollback_guest, settle_guest, snapshot_guest
from hosts.changes.jobs import JOB_LEASE_SECONDS, claim_jobs
from hosts.changes.lanes import Lanes
from hosts.changes.outcomes import (
    GuestRecord,
    Marker,
    record_applied,
    record_rolled_back,
    record_settled,
    refresh_inventory,
    save_fields,
    write_records,
)
from hosts.changes.records import fail_target, finish_change_request, target_event
from hosts.changes.rollback import LaterWrites
from hosts.libvirt import connection, deadlines, pools
from hosts.libvirt.errors import HostTimeout, VirtError
from hosts.libvirt.facts import DomainFacts
from hosts.libvirt.session import HostSession
from hosts.live import push
from hosts.models import ApplyJob, AuditEvent, ChangeTarget
from hosts.models.rows import update_rows
from hosts.vocabulary import SCOPE_PARTS

# Finished guests are committed together, at most once per this many seconds (the last ones at once): the
# change request page, which asks once a second, still sees progress, and a commit does not take the CPU
# from the guests still in flight. A change that takes less than this makes one commit at its end.
COMMIT_EVERY_SECONDS = 0.25


@dataclass(eq=False)
class _HostRun:
    """One claimed job: its host's session and the guests it changes."""

    job: ApplyJob
    targets: list[ChangeTarget]
    scopes: tuple[str, ...]
    session: HostSession | None = None
    # A rollback's targets: who set each of their guest's fields later (hosts.changes.desired_state.later_writes).
    later: dict[int, LaterWrites] = field(default_factory=dict)

    @property
    def applying(self) -> bool:
        return self.job.kind == ApplyJob.Kind.APPLY

    @property
    def settling(self) -> bool:
        return self.job.kind == ApplyJob.Kind.SETTLE

    @property
    def seconds(self) -> float:
        """How long this host's guests may take, all of them."""
        return deadlines.host_seconds(len(self.targets))

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


def _open(run: _HostRun) -> HostSession:
    return HostSession(run.job.host.uri, name=run.job.host.name)


def _open_all(runs: list[_HostRun]) -> list[HostSession | VirtError]:
    """Open every run's host session at once, each within the open deadline plus one call (its CPU map)."""
    seconds = deadlines.open_seconds() + deadlines.call_seconds()
    started, began = time.monotonic(), time.time()
    futures = [pools.call_pool().submit(_open, run) for run in runs]
    sessions: list[HostSession | VirtError] = []
    for run, future in zip(runs, futures, strict=True):
        try:
            sessions.append(deadlines.wait(future, started + seconds - time.monotonic(), run.job.host.name))
        except HostTimeout as exc:
            connection.mark_stuck(run.job.host.uri, future, began)
            sessions.append(exc)
        except VirtError as exc:
            sessions.append(exc)
    return sessions


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
                save_fields(
                    target,
                    status=ChangeTarget.Status.RESTORE_FAILED,
                    error=unreachable,
                    restore_error="the guest may be half-changed; roll back once the host answers",
                )
                target_event(target, AuditEvent.Action.CHANGE_FAILED, unreachable).save()
            elif run.settling:
                continue  # stays unknown: the next time the host answers settles it
            elif not run.applying and target.status in ChangeTarget.ROLLBACKABLE and target.before:
                save_fields(target, restore_error=f"Rollback failed: {unreachable}")
        _jobs_done([run.job.pk])


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
    lanes: Lanes[_HostRun] = Lanes(_snapshot)
    for run in runs:
        wanted = [t for t in run.targets if t.status == ChangeTarget.Status.PLANNED and t.before is None]
        lanes.add(run, wanted, seconds=run.seconds, host=run.job.host.name, uri=run.job.host.uri)
    taken = [item for batch in lanes.batches() for item in batch]
    starting = [t for run in runs for t in run.targets if t.status == ChangeTarget.Status.PLANNED and t.before]
    if not taken and not starting:
        return
    now = timezone.now()
    with transaction.atomic():
        for _run, target, outcome in taken:
            if outcome.ok and outcome.guest is not None:
                save_fields(
                    target, before=outcome.guest.snapshot_json(), status=ChangeTarget.Status.APPLYING, started_at=now
                )
            else:
                fail_target(target, f"{outcome.error} It was not changed.")
        for target in starting:
            target.status, target.started_at = ChangeTarget.Status.APPLYING, now
        update_rows(starting, ["status", "started_at"])


def _snapshot(run: _HostRun, target: ChangeTarget) -> Outcome:
    return snapshot_guest(run.connected, target, run.scopes)


def _work(run: _HostRun, target: ChangeTarget) -> Outcome:
    if not run.applying and not run.settling:
        return rollback_guest(run.connected, target, run.scopes, run.later.get(target.pk))
    one = apply_guest if run.applying else settle_guest
    return one(run.connected, target, run.scopes)


def _record(run: _HostRun, target: ChangeTarget, outcome: Outcome) -> GuestRecord:
    one = record_applied if run.applying else record_settled if run.settling else record_rolled_back
    return one(target, outcome)


def _wanted(run: _HostRun) -> list[ChangeTarget]:
    """The guests a run writes: those marked applying, those left unknown, or those a rollback restores."""
    if run.applying:
        statuses: tuple[str, ...] = (ChangeTarget.Status.APPLYING,)
    elif run.settling:
        statuses = (ChangeTarget.Status.UNKNOWN,)
    else:
        statuses = ChangeTarget.ROLLBACKABLE
    return [t for t in run.targets if t.status in statuses and t.before]


def _finish(runs: list[_HostRun]) -> None:
    """Close the jobs and settle their requests' status (inside the caller's transaction)."""
    _jobs_done([run.job.pk for run in runs])
    for cr_id in sorted({run.job.change_request_id for run in runs}):
        finish_change_request(cr_id)


def _run(runs: list[_HostRun]) -> None:
    """Apply or roll back the claimed jobs: hosts in parallel, this thread alone writing to the database."""
    markers: list[Marker] = []
    changed: list[tuple[ChangeTarget, DomainFacts]] = []
    for run, session in zip(runs, _open_all(runs), strict=True):
        if isinstance(session, VirtError):
            _unreachable(run, session.message)
        else:
            run.session = session
    reachable = [run for run in runs if run.session is not None]
    _snapshot_phase([run for run in reachable if run.applying])
    lanes: Lanes[_HostRun] = Lanes(_work)
    for run in reachable:
        lanes.add(run, _wanted(run), seconds=run.seconds, host=run.job.host.name, uri=run.job.host.uri)
    finished = False
    for batch in lanes.batches(every=COMMIT_EVERY_SECONDS):
        now = timezone.now()
        with transaction.atomic():
            records = [_record(run, t, o) for run, t, o in batch]
            write_records(records)
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
            refresh_inventory(changed)
    push.announce_markers(markers)


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
    for run in runs:
        if run.job.kind == ApplyJob.Kind.ROLLBACK:
            run.later = later_writes(run.targets)
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
