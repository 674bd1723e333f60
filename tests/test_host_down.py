"""A host whose daemon dies is marked down with the reason, its guests kept as stale; it recovers by itself.

Runs through the real Celery worker (sync on demand through the API) and a real Celery beat (recovery).
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client

from hosts.harness.fleet import Fleet
from hosts.models import AuditEvent, Domain, Host
from tests.conftest import wait_for

pytestmark = [pytest.mark.fleet, pytest.mark.django_db(transaction=True)]


def test_killed_daemon_marks_host_down_and_restart_brings_it_back(
    fleet: Fleet,
    fleet_hosts: list[Host],
    celery_worker: subprocess.Popen[bytes],
    operator: User,
    login: Callable[[User], Client],
    request: pytest.FixtureRequest,
    start_beat: Callable[..., subprocess.Popen[bytes]],
) -> None:
    member, host = fleet.host(2), fleet_hosts[2]
    guests = set(Domain.objects.filter(host=host).values_list("name", flat=True))
    assert guests and host.status == Host.Status.UP
    client = login(operator)

    member.stop_daemon(signal.SIGKILL)
    request.addfinalizer(member.start)
    response = client.post(f"/api/hosts/{host.pk}/sync/")
    assert response.status_code == 202
    wait_for(lambda: Host.objects.get(pk=host.pk).status == Host.Status.DOWN, 30, what="host marked down")

    down = Host.objects.get(pk=host.pk)
    assert "cannot be reached" in down.last_error and str(member.port) in down.last_error
    kept = Domain.objects.filter(host=host)
    assert set(kept.values_list("name", flat=True)) == guests
    assert all(d.is_stale for d in kept)
    assert not Domain.objects.filter(host=fleet_hosts[0], is_stale=True).exists()
    page = client.get(f"/hosts/{host.pk}/").content.decode()
    assert "cannot be reached" in page
    assert AuditEvent.objects.filter(host=host, action=AuditEvent.Action.HOST_DOWN).count() == 1

    member.start()
    start_beat(ISOWEB_SYNC_INTERVAL="2")  # from here on nobody asks: the beat's periodic sync must notice
    wait_for(lambda: Host.objects.get(pk=host.pk).status == Host.Status.UP, 60, 0.5, what="host back up")
    back = Host.objects.get(pk=host.pk)
    assert back.last_error == ""
    assert not Domain.objects.filter(host=host, is_stale=True).exists()
    assert set(Domain.objects.filter(host=host).values_list("name", flat=True)) == guests
    assert AuditEvent.objects.filter(host=host, action=AuditEvent.Action.HOST_UP).exists()


def test_sync_button_queues_a_sync_that_the_worker_runs(
    fleet_hosts: list[Host],
    celery_worker: subprocess.Popen[bytes],
    operator: User,
    login: Callable[[User], Client],
) -> None:
    host = fleet_hosts[0]
    Host.objects.filter(pk=host.pk).update(last_sync_at=None)
    response = login(operator).post(f"/hosts/{host.pk}/sync/", follow=True)
    assert response.status_code == 200 and "queued" in response.content.decode()
    wait_for(lambda: Host.objects.get(pk=host.pk).last_sync_at is not None, 30, what="sync by the worker")
