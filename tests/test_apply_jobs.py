"""Claiming apply jobs: one change at a time per host, and a job whose host stays busy gives up cleanly.

Rows only: these rules live in the database (claims, leases, statuses), so no libvirt host is needed; the
jobs that would reach a host are never claimed here.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from hosts import tasks
from hosts.changes import jobs
from hosts.changes.jobs import claim_jobs, stalled_jobs
from hosts.models import ApplyJob, AuditEvent, ChangeRequest, ChangeTarget, Domain, Host, PinProfile, PinProfileRevision

LEASE = 60


def _request(host: Host, requester: User, name: str) -> ApplyJob:
    """An approved request applying to one guest of ``host``, with its (unclaimed) apply job."""
    domain = Domain.objects.create(host=host, uuid=uuid.uuid4(), name=name, state="running")
    profile = PinProfile.objects.create(name=f"p-{name}")
    revision = PinProfileRevision.objects.create(profile=profile, number=1, content={"sched": {"cpu_shares": 512}})
    cr = ChangeRequest.objects.create(
        profile_revision=revision, reason="r", requested_by=requester, status=ChangeRequest.Status.APPLYING
    )
    ChangeTarget.objects.create(
        change_request=cr,
        host=host,
        domain=domain,
        domain_uuid=domain.uuid,
        domain_name=name,
        desired={"sched": {"cpu_shares": 512}},
    )
    return ApplyJob.objects.create(change_request=cr, host=host, kind=ApplyJob.Kind.APPLY)


@pytest.fixture
def host(db: None) -> Host:
    return Host.objects.create(name="kvm-busy", uri="qemu+tcp://127.0.0.1:9/system", transport="tcp")


def test_a_host_runs_one_job_at_a_time(host: Host, operator: User) -> None:
    first, second = _request(host, operator, "g1"), _request(host, operator, "g2")
    # Both in one batch: only one may run on the host.
    claimed, busy = claim_jobs([first.pk, second.pk], LEASE)
    assert [job.pk for job in claimed] == [first.pk] and busy == [second.pk]
    first.refresh_from_db()
    assert first.status == "running" and first.attempts == 1 and first.claimed_by
    # The first is held by a live process (this one): asking again claims nothing, and the other is busy.
    assert claim_jobs([first.pk, second.pk], LEASE) == ([], [second.pk])
    ApplyJob.objects.filter(pk=first.pk).update(status=ApplyJob.Status.DONE)
    claimed, busy = claim_jobs([first.pk, second.pk], LEASE)
    assert [job.pk for job in claimed] == [second.pk] and busy == []


def test_a_dead_holder_or_an_expired_lease_frees_the_job(host: Host, operator: User) -> None:
    job = _request(host, operator, "g1")
    [held], _ = claim_jobs([job.pk], LEASE)
    ApplyJob.objects.filter(pk=job.pk).update(claimed_by=held.claimed_by.rpartition(":")[0] + ":999999999")
    [again], _ = claim_jobs([job.pk], LEASE)  # no such process: its job is free
    assert again.attempts == 2
    assert claim_jobs([job.pk], LEASE) == ([], [])  # held by this live process now
    assert [j.pk for j in claim_jobs([job.pk], 0)[0]] == [job.pk]  # a lease of 0 s has always expired


def test_a_job_whose_host_stays_busy_fails_its_guests_unchanged(host: Host, operator: User) -> None:
    running, waiting = _request(host, operator, "g1"), _request(host, operator, "g2")
    claim_jobs([running.pk], LEASE)
    assert ChangeTarget.objects.get(change_request=waiting.change_request).status == "planned"
    tasks._run_jobs([waiting.pk], tasks.BUSY_RETRIES)  # the last try, and the host is still busy: give up
    target = ChangeTarget.objects.get(change_request=waiting.change_request)
    assert target.status == "failed"
    assert "kvm-busy was busy with other changes" in target.error and "not changed" in target.error
    waiting.refresh_from_db()
    assert waiting.status == "done"
    cr = ChangeRequest.objects.get(pk=waiting.change_request_id)
    assert cr.status == "failed" and cr.finished_at is not None
    assert AuditEvent.objects.filter(change_request=cr, action="change.failed").exists()
    assert ChangeTarget.objects.get(change_request=running.change_request).status == "planned"  # untouched


def test_jobs_left_running_by_a_failed_task_are_found_and_finished_by_the_sweeper(operator: User) -> None:
    """A task that fails or hits its time limit is acknowledged, not redelivered: the jobs it claimed stay
    running and their request would stay applying for ever. Beat's sweeper finds the jobs whose claimant
    is gone, or has not renewed its claim for longer than an apply task may run, and finishes them from
    their stored progress (here their hosts do not answer, so the request settles with the reasons)."""
    hosts = [
        Host.objects.create(name=f"kvm-gone{n}", uri=f"qemu+tcp://127.0.0.1:{port}/system", transport="tcp")
        for n, port in enumerate((9, 19, 29))
    ]
    me = jobs._worker_identity()
    long_ago = timezone.now() - timedelta(seconds=tasks.STALLED_AFTER_SECONDS + 5)
    alive = _request(hosts[0], operator, "g-alive")  # its worker is still at it: left alone
    quiet = _request(hosts[1], operator, "g-quiet")  # this process holds it, silent for too long
    dead = _request(hosts[2], operator, "g-dead")  # held by a process that no longer exists
    done = _request(hosts[0], operator, "g-done")
    # Claimed once each, as a start task claims the jobs it creates.
    running = ApplyJob.objects.filter(pk__in=[alive.pk, quiet.pk, dead.pk])
    running.update(status="running", attempts=1, claimed_by=me, claimed_at=timezone.now())
    ApplyJob.objects.filter(pk=quiet.pk).update(claimed_at=long_ago)
    ApplyJob.objects.filter(pk=dead.pk).update(claimed_by=me.rpartition(":")[0] + ":999999999")
    ApplyJob.objects.filter(pk=done.pk).update(status="done")
    # The quiet job's worker had started writing its guest: what is known must be said.
    ChangeTarget.objects.filter(change_request=quiet.change_request).update(status="applying", before={"live": {}})

    assert stalled_jobs(tasks.STALLED_AFTER_SECONDS) == [quiet.pk, dead.pk]
    assert tasks.resume_stalled_jobs() == 2

    half = ChangeTarget.objects.get(change_request=quiet.change_request)
    assert half.status == "restore_failed" and "kvm-gone1 cannot be reached" in half.error
    assert "half-changed" in half.restore_error
    untouched = ChangeTarget.objects.get(change_request=dead.change_request)
    assert untouched.status == "failed" and "not changed" in untouched.error
    for job in (quiet, dead):
        job.refresh_from_db()
        assert job.status == "done"
        cr = ChangeRequest.objects.get(pk=job.change_request_id)
        assert cr.status != "applying" and cr.finished_at is not None
    alive.refresh_from_db()
    assert alive.status == "running"
    assert stalled_jobs(tasks.STALLED_AFTER_SECONDS) == []
