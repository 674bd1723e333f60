"""Races the database must settle: two approvers deciding one request at once, two workers claiming one job.

On SQLite (``transaction_mode=IMMEDIATE``) a writing transaction takes the whole database's write lock at its
start, so such races are serialised whatever the code does. On PostgreSQL only the rows a transaction locks
are serialised: the services' ``select_for_update`` of the change request (four eyes) and of the jobs' host
rows (claims) is what keeps the second comer from deciding or claiming on a stale read. Each test holds that
lock (or the row they would write next) in a third connection, starts both contenders, makes sure (on
PostgreSQL, from ``pg_stat_activity``) that both are waiting for a lock, then lets them go. The whole suite
runs on both databases (``make test``); these tests check the outcome on both, and on PostgreSQL they fail
if either service stops locking.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import connection, connections, transaction
from django.utils import timezone

from hosts.changes.jobs import JOB_LEASE_SECONDS, claim_jobs
from hosts.changes.requests import approve_change_request
from hosts.models import ApplyJob, AuditEvent, ChangeRequest, Host, PinProfile, PinProfileRevision
from hosts.roles import APPROVER
from tests.conftest import _make_user, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def _waiting_for_locks() -> int:
    """Sessions of the test database waiting for a lock (PostgreSQL)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int(cursor.fetchone()[0])


class Contenders:
    """Run functions on threads of their own (each with its own database connection) and collect outcomes."""

    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []
        self.outcomes: list[Any] = []
        self._lock = threading.Lock()

    def start(self, fn: Callable[[], Any]) -> None:
        def run() -> None:
            try:
                outcome: Any = fn()
            except Exception as exc:
                outcome = exc
            finally:
                connections.close_all()  # a connection left open would keep the test database from being dropped
            with self._lock:
                self.outcomes.append(outcome)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self.threads.append(thread)

    def done(self) -> bool:
        return not any(t.is_alive() for t in self.threads)

    def join(self) -> list[Any]:
        for thread in self.threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in self.threads), "a contender is still running after 60 s"
        return self.outcomes


@pytest.fixture
def hold_lock() -> Iterator[Callable[[Callable[[], None]], threading.Event]]:
    """Take a row lock on a thread of its own (``lock()`` runs in its transaction) and hold it until released."""
    holders: list[tuple[threading.Thread, threading.Event]] = []

    def hold(lock: Callable[[], None]) -> threading.Event:
        taken, release = threading.Event(), threading.Event()

        def run() -> None:
            try:
                with transaction.atomic():
                    lock()
                    taken.set()
                    release.wait(timeout=60)
            finally:
                connections.close_all()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        holders.append((thread, release))
        assert taken.wait(timeout=30), "could not take the lock"
        return release

    yield hold
    for thread, release in holders:
        release.set()
        thread.join(timeout=30)


def _both_waiting(contenders: Contenders) -> None:
    """Wait until the contenders queue on the held lock: visible on PostgreSQL; on SQLite give them a moment to
    reach the database lock (which serialises them in any case). Contenders that do not wait at all (no lock
    taken) finish meanwhile, and the test judges what they did."""
    if connection.vendor == "postgresql":
        wait_for(
            lambda: _waiting_for_locks() >= len(contenders.threads) or contenders.done(),
            30,
            0.05,
            "both contenders to wait for the row lock",
        )
    else:
        time.sleep(1.0)


def _pending_request(requester: User) -> ChangeRequest:
    profile = PinProfile.objects.create(name="race", created_by=requester)
    revision = PinProfileRevision.objects.create(profile=profile, number=1, content={}, created_by=requester)
    # Applied later, not now: approving queues nothing, so this test needs no worker.
    return ChangeRequest.objects.create(
        profile_revision=revision,
        scope=ChangeRequest.Scope.LIVE,
        reason="race",
        requested_by=requester,
        apply_at=timezone.now() + timedelta(days=1),
    )


def test_two_approvers_at_once_approve_a_request_once(
    operator: User, approver: User, hold_lock: Callable[[Callable[[], None]], threading.Event]
) -> None:
    second = _make_user("berta", APPROVER)
    cr = _pending_request(operator)
    release = hold_lock(lambda: list(ChangeRequest.objects.select_for_update().filter(pk=cr.pk)))
    contenders = Contenders()
    for user in (approver, second):
        contenders.start(lambda user=user: approve_change_request(cr.pk, comment=user.username, actor=user))
    _both_waiting(contenders)
    release.set()
    outcomes = contenders.join()

    approved = [o for o in outcomes if isinstance(o, ChangeRequest)]
    refused = [o for o in outcomes if isinstance(o, ValidationError)]
    assert len(approved) == 1 and len(refused) == 1, outcomes
    assert "not pending" in refused[0].messages[0]
    cr.refresh_from_db()
    assert cr.status == ChangeRequest.Status.SCHEDULED and cr.decided_by == approved[0].decided_by
    assert AuditEvent.objects.filter(change_request=cr, action=AuditEvent.Action.CHANGE_APPROVE).count() == 1


def test_two_workers_claiming_one_job_at_once_claim_it_once(
    operator: User, hold_lock: Callable[[Callable[[], None]], threading.Event]
) -> None:
    host = Host.objects.create(name="race-host", uri="qemu+tcp://127.0.0.1:1/system", transport=Host.Transport.TCP)
    cr = _pending_request(operator)
    job = ApplyJob.objects.create(change_request=cr, host=host, kind=ApplyJob.Kind.APPLY)
    # Held on the job itself: both contenders get as far as writing their claim. Only the host row lock that
    # claim_jobs takes first makes the second one read the job again after the first has claimed it.
    release = hold_lock(lambda: list(ApplyJob.objects.select_for_update().filter(pk=job.pk)))
    contenders = Contenders()
    for _ in range(2):
        contenders.start(lambda: claim_jobs([job.pk], JOB_LEASE_SECONDS))
    _both_waiting(contenders)
    release.set()
    outcomes = contenders.join()

    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    claimed = [[j.pk for j in got] for got, _busy in outcomes]
    assert sorted(claimed) == [[], [job.pk]], outcomes
    job.refresh_from_db()
    assert job.status == ApplyJob.Status.RUNNING and job.attempts == 1
