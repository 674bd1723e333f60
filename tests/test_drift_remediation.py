"""Remediation through the normal workflow: a proposed change request puts the approved values back, and a
host with automatic re-assert gets its drift repaired at once (requested by the system user, approved on
the standing approval of the admin who switched it on, audited as ``drift.reassert``)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client

from hosts.drift.remediate import SYSTEM_USERNAME
from hosts.harness.fleet import Fleet
from hosts.inventory import sync_host
from hosts.models import AuditEvent, ChangeRequest, Drift, Host
from tests.conftest import virsh
from tests.drift_fixtures import apply_profile, approve_and_wait, domain, wait_applied

pytestmark = [pytest.mark.fleet, pytest.mark.django_db(transaction=True)]

PROFILE = {
    "vcpupin": {"strategy": "explicit", "cpus": {"0": "0-1", "1": "0-1"}},
    "sched": {"vcpu_period": 100000, "vcpu_quota": 50000},
}


def _open(dom_id: int) -> dict[tuple[str, str], Drift]:
    return {(d.scope, d.field): d for d in Drift.objects.filter(domain_id=dom_id, resolved_at__isnull=True)}


def test_proposed_remediation_approved_by_someone_else_puts_the_values_back_and_clears_the_drift(
    fleet: Fleet,
    fleet_hosts: list[Host],
    celery_worker: subprocess.Popen[bytes],
    operator: User,
    approver: User,
    login: Callable[[User], Client],
) -> None:
    name = f"{fleet.prefix}1-web"
    dom = domain(name)
    uri = dom.host.uri
    op, ap = login(operator), login(approver)
    apply_profile(op, ap, PROFILE, [dom.pk], "both")
    try:
        virsh(uri, "vcpupin", name, "1", "0", "--live")
        virsh(uri, "schedinfo", name, "--config", "vcpu_quota=20000")
        sync_host(dom.host_id)
        found = _open(dom.pk)
        assert set(found) == {("live", "vcpupin 1"), ("config", "vcpu_quota")}, found
        page = op.get(f"/guests/{dom.pk}/").content.decode()
        assert "data-propose-remediation" in page and "vcpupin 1" in page

        proposed = op.post("/api/drift/remediate/", {"domain": dom.pk}, content_type="application/json")
        assert proposed.status_code == 201, proposed.content
        crs = proposed.json()["change_requests"]
        # Live and config want different content: one request each, both pending approval.
        assert sorted(cr["scope"] for cr in crs) == ["config", "live"] and {cr["status"] for cr in crs} == {"pending"}
        assert {d.remediation_id for d in _open(dom.pk).values()} == {cr["id"] for cr in crs}
        again = op.post("/api/drift/remediate/", {"domain": dom.pk}, content_type="application/json")
        assert again.status_code == 400 and "already on its way" in str(again.json())
        assert op.post(f"/api/change-requests/{crs[0]['id']}/approve/").status_code == 403  # four eyes

        for cr in crs:
            approve_and_wait(ap, cr["id"])
        assert "0-1" in virsh(uri, "vcpupin", name, "--live", "--vcpu", "1")
        assert "vcpu_quota     : 50000" in virsh(uri, "schedinfo", name, "--config")

        sync_host(dom.host_id)  # the next verification
        assert _open(dom.pk) == {}
        for drift in Drift.objects.filter(domain=dom):
            assert drift.resolution == f"Holds the desired value again: CR-{drift.remediation_id} put it back."
        assert op.post("/api/drift/remediate/", {"domain": dom.pk}, content_type="application/json").status_code == 400
    finally:
        virsh(uri, "vcpupin", name, "1", "0-1", "--live")
        virsh(uri, "schedinfo", name, "--config", "vcpu_quota=50000")


def test_automatic_reassert_repairs_drift_at_once_on_the_admins_standing_approval(
    fleet: Fleet,
    fleet_hosts: list[Host],
    celery_worker: subprocess.Popen[bytes],
    operator: User,
    approver: User,
    admin_user: User,
    login: Callable[[User], Client],
) -> None:
    name = f"{fleet.prefix}1-batch"
    dom = domain(name)
    uri = dom.host.uri
    apply_profile(login(operator), login(approver), {"sched": {"vcpu_quota": 50000}}, [dom.pk], "live")

    switch = f"/api/hosts/{dom.host_id}/auto-reassert/"
    assert login(operator).post(switch, {"enabled": True}, content_type="application/json").status_code == 403
    enabled = login(admin_user).post(switch, {"enabled": True}, content_type="application/json")
    assert enabled.status_code == 200 and enabled.json()["auto_reassert"] is True
    try:
        virsh(uri, "schedinfo", name, "--live", "vcpu_quota=25000")
        sync_host(dom.host_id)
        drift = Drift.objects.get(domain=dom, field="vcpu_quota")
        assert drift.observed == 25000 and drift.remediation is not None
        cr = drift.remediation
        assert cr.requested_by.username == SYSTEM_USERNAME and cr.decided_by == admin_user
        assert "Standing approval" in cr.decision_comment
        wait_applied(login(approver), cr.pk)
        assert "vcpu_quota     : 50000" in virsh(uri, "schedinfo", name, "--live")
        event = AuditEvent.objects.get(action="drift.reassert", domain=dom)
        assert event.before["drift"] == drift.pk and event.change_request_id == cr.pk and event.actor is None

        sync_host(dom.host_id)
        drift.refresh_from_db()
        assert drift.resolved_at is not None and f"CR-{cr.pk}" in drift.resolution

        # Switched off: the next drift is only recorded, nothing is proposed.
        assert login(admin_user).post(switch, {"enabled": False}, content_type="application/json").status_code == 200
        virsh(uri, "schedinfo", name, "--live", "vcpu_quota=26000")
        sync_host(dom.host_id)
        again = Drift.objects.get(domain=dom, field="vcpu_quota", resolved_at__isnull=True)
        assert again.remediation is None
        assert ChangeRequest.objects.filter(requested_by__username=SYSTEM_USERNAME).count() == 1
    finally:
        virsh(uri, "schedinfo", name, "--live", "vcpu_quota=50000")
