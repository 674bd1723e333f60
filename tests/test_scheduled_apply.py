"""A change request with an apply time waits after approval and is started by Celery beat when it is due."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from hosts.harness.fleet import Fleet
from hosts.models import ChangeRequest, Domain, Host
from tests.conftest import virsh, wait_for

pytestmark = [pytest.mark.fleet, pytest.mark.django_db(transaction=True)]


def test_approved_request_waits_for_its_apply_time_then_beat_applies_it(
    fleet: Fleet,
    fleet_hosts: list[Host],
    celery_worker: subprocess.Popen[bytes],
    start_beat: Callable[..., subprocess.Popen[bytes]],
    operator: User,
    approver: User,
    login: Callable[[User], Client],
) -> None:
    op, ap = login(operator), login(approver)
    dom = Domain.objects.get(name=f"{fleet.prefix}2-batch")
    profile = op.post(
        "/api/profiles/", {"name": "shares", "content": {"sched": {"cpu_shares": 512}}}, content_type="application/json"
    ).json()
    apply_at = timezone.now() + timedelta(seconds=6)
    cr = op.post(
        "/api/change-requests/",
        {"profile": profile["id"], "domains": [dom.pk], "scope": "live", "reason": "night", "apply_at": apply_at},
        content_type="application/json",
    ).json()
    assert ap.post(f"/api/change-requests/{cr['id']}/approve/").json()["status"] == "scheduled"
    start_beat(ISOWEB_DUE_CHECK_INTERVAL="1")
    wait_for(lambda: ChangeRequest.objects.get(pk=cr["id"]).status != "scheduled", 60, 0.2, what="start")
    started = ChangeRequest.objects.get(pk=cr["id"]).started_at
    assert started is not None and started >= apply_at  # never before its time
    wait_for(lambda: ChangeRequest.objects.get(pk=cr["id"]).status == "applied", 60, 0.5, what="applied")
    assert "cpu_shares     : 512" in virsh(dom.host.uri, "schedinfo", dom.name, "--live")
    virsh(dom.host.uri, "schedinfo", dom.name, "--live", "cpu_shares=1024")
