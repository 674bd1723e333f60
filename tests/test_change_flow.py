"""The four-eyes flow end to end through the API: profile, change request, approval, apply by the real
Celery worker, verification with virsh and the guests' cgroup files, and rollback."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.test import Client

from hosts.harness.fleet import Fleet
from hosts.models import AuditEvent, ChangeRequest, Domain, Host
from tests.conftest import virsh, wait_for

pytestmark = [pytest.mark.fleet, pytest.mark.django_db(transaction=True)]

PROFILE = {
    "emulatorpin": {"strategy": "housekeeping"},
    "sched": {"vcpu_period": 100000, "vcpu_quota": 50000, "emulator_period": 100000, "emulator_quota": 20000},
}


def _cgroup(name: str, *parts: str) -> str:
    matches = list(Path("/sys/fs/cgroup/cpu/machine").glob(f"qemu-*-{name}.libvirt-qemu"))
    assert len(matches) == 1, matches
    return matches[0].joinpath(*parts).read_text().strip()


def _status(client: Client, cr_id: int) -> dict:
    return client.get(f"/api/change-requests/{cr_id}/").json()


def test_operator_proposes_approver_approves_worker_applies_and_rolls_back(
    fleet: Fleet,
    fleet_hosts: list[Host],
    celery_worker: subprocess.Popen[bytes],
    operator: User,
    approver: User,
    admin_user: User,
    login: Callable[[User], Client],
) -> None:
    op, ap = login(operator), login(approver)
    for host in fleet_hosts:  # CPU 0 for the hosts' own work, CPU 1 for guests
        assert login(admin_user).post(f"/api/hosts/{host.pk}/partition/", {"housekeeping_cpus": "0"}).status_code == 200
    names = [f"{fleet.prefix}{i}-web" for i in (1, 2, 3)]
    domains = [Domain.objects.get(name=n) for n in names]
    before = {n: virsh(d.host.uri, "emulatorpin", n, "--live").split()[-1] for n, d in zip(names, domains, strict=True)}

    profile = op.post("/api/profiles/", {"name": "cap", "content": PROFILE}, content_type="application/json")
    assert profile.status_code == 201, profile.content
    created = op.post(
        "/api/change-requests/",
        {"profile": profile.json()["id"], "domains": [d.pk for d in domains], "scope": "both", "reason": "cap"},
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    cr = created.json()
    assert cr["status"] == "pending" and len(cr["results"]) == 3
    diff = cr["results"][0]["diff"]["live"]
    assert {"field": "emulatorpin", "current": "0-1", "desired": "0", "changes": True} in diff

    assert op.post(f"/api/change-requests/{cr['id']}/approve/").status_code == 403  # operators do not approve
    approved = ap.post(f"/api/change-requests/{cr['id']}/approve/", {"comment": "ok"}, content_type="application/json")
    assert approved.status_code == 200, approved.content
    wait_for(lambda: _status(ap, cr["id"])["status"] not in ("scheduled", "applying"), 90, 0.5, what="apply")
    done = _status(ap, cr["id"])
    assert done["status"] == "applied", done
    for name, dom in zip(names, domains, strict=True):
        assert virsh(dom.host.uri, "emulatorpin", name, "--live").split()[-1] == "0"
        assert virsh(dom.host.uri, "emulatorpin", name, "--config").split()[-1] == "0"
        assert "vcpu_quota     : 50000" in virsh(dom.host.uri, "schedinfo", name, "--config")
        assert _cgroup(name, "emulator", "cpu.cfs_quota_us") == "20000"
        assert _cgroup(name, "vcpu0", "cpu.cfs_quota_us") == "50000"
    assert all(r["status"] == "applied" and r["before"]["live"]["emulatorpin"] == "0-1" for r in done["results"])
    assert AuditEvent.objects.filter(action="change.applied", change_request_id=cr["id"]).count() == 3

    rolled = ap.post(f"/api/change-requests/{cr['id']}/rollback/")
    assert rolled.status_code == 202, rolled.content
    wait_for(lambda: _status(ap, cr["id"])["status"] == "rolled_back", 90, 0.5, what="rollback")
    for name, dom in zip(names, domains, strict=True):
        assert virsh(dom.host.uri, "emulatorpin", name, "--live").split()[-1] == before[name]
        assert virsh(dom.host.uri, "emulatorpin", name, "--config").split()[-1] == before[name]
        assert "vcpu_quota     : 0" in virsh(dom.host.uri, "schedinfo", name, "--config")
        assert _cgroup(name, "emulator", "cpu.cfs_quota_us") == "-1"
        assert _cgroup(name, "vcpu0", "cpu.cfs_quota_us") == "-1"
    assert ChangeRequest.objects.get(pk=cr["id"]).rolled_back_by == approver


def test_requester_cannot_approve_own_request(
    fleet_hosts: list[Host], operator: User, login: Callable[[User], Client]
) -> None:
    operator.groups.add(
        *__import__("django.contrib.auth.models").contrib.auth.models.Group.objects.filter(name="approver")
    )
    client = login(operator)
    content = {"sched": {"vcpu_quota": 50000}}
    profile = client.post("/api/profiles/", {"name": "p", "content": content}, content_type="application/json").json()
    dom = Domain.objects.filter(state="running").first()
    cr = client.post(
        "/api/change-requests/",
        {"profile": profile["id"], "domains": [dom.pk], "scope": "live", "reason": "x"},
        content_type="application/json",
    ).json()
    response = client.post(f"/api/change-requests/{cr['id']}/approve/")
    assert response.status_code == 403
    assert "your own change request" in response.json()["detail"]
    assert ChangeRequest.objects.get(pk=cr["id"]).status == "pending"
