"""Remediation through the normal workflow: a proposed change request puts the approved values back, and a
host with automatic re-assert gets its drift repaired at once (requested by the system user, approved on
the standing approval of the admin who switched it on, audited as ``drift.reassert``)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client

from hosts.drift.compare import DEDICATED
from hosts.drift.remediate import SYSTEM_USERNAME
from hosts.drift.watch import VCPU_POLL_SECONDS
from hosts.harness.fleet import Fleet, GuestSpec
from hosts.harness.guests import define_and_start, destroy_and_undefine
from hosts.models import AuditEvent, ChangeRequest, Drift, Host
from hosts.tasks import sync_host  # the sync task: read, store, then check for drift
from tests.conftest import virsh, wait_for
from tests.drift_fixtures import (
    PROFILE,
    affinity_of,
    apply_profile,
    approve_and_wait,
    domain,
    open_drifts,
    vcpu_threads,
    wait_applied,
    watcher,  # noqa: F401 - a fixture
)

pytestmark = [pytest.mark.fleet, pytest.mark.django_db(transaction=True)]


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
        found = open_drifts(dom.pk)
        assert set(found) == {("live", "vcpupin 1"), ("config", "vcpu_quota")}, found
        page = op.get(f"/guests/{dom.pk}/").content.decode()
        assert "data-propose-remediation" in page and "vcpupin 1" in page

        proposed = op.post("/api/drift/remediate/", {"domain": dom.pk}, content_type="application/json")
        assert proposed.status_code == 201, proposed.content
        crs = proposed.json()["change_requests"]
        # Live and config want different content: one request each, both pending approval.
        assert sorted(cr["scope"] for cr in crs) == ["config", "live"] and {cr["status"] for cr in crs} == {"pending"}
        assert {d.remediation_id for d in open_drifts(dom.pk).values()} == {cr["id"] for cr in crs}
        again = op.post("/api/drift/remediate/", {"domain": dom.pk}, content_type="application/json")
        assert again.status_code == 400 and "already on its way" in str(again.json())
        assert op.post(f"/api/change-requests/{crs[0]['id']}/approve/").status_code == 403  # four eyes

        for cr in crs:
            approve_and_wait(ap, cr["id"])
        assert "0-1" in virsh(uri, "vcpupin", name, "--live", "--vcpu", "1")
        assert "vcpu_quota     : 50000" in virsh(uri, "schedinfo", name, "--config")

        sync_host(dom.host_id)  # the next verification
        assert open_drifts(dom.pk) == {}
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


def _pins(fleet: Fleet, uri: str, name: str, vcpupin: dict[int, str], emulatorpin: str) -> None:
    for scope in ("--live", "--config"):
        for vcpu, cpus in vcpupin.items():
            virsh(uri, "vcpupin", name, str(vcpu), cpus, scope)
        virsh(uri, "emulatorpin", name, emulatorpin, scope)


@pytest.mark.usefixtures("watcher")
def test_a_vcpu_hot_added_to_a_dedicated_guest_is_placed_the_same_way_automatically(
    fleet: Fleet,
    fleet_hosts: list[Host],
    celery_worker: subprocess.Popen[bytes],
    operator: User,
    approver: User,
    admin_user: User,
    login: Callable[[User], Client],
) -> None:
    """``virsh setvcpus --live`` raises no libvirt event: the watcher's vCPU count finds it within seconds.

    The guest's vCPU 1 exists only since its maximum was raised after its ``dedicated`` profile was applied, so
    libvirt has no pin for it and the hot-added thread floats over every CPU until isoweb places it.
    """
    member = fleet.host(2)
    uri, name, db = member.uri, f"{fleet.prefix}3-hot", f"{fleet.prefix}3-db"
    # The fleet's db guest holds both CPUs of this 2-CPU machine; let it float for the test.
    _pins(fleet, uri, db, {0: "0-1", 1: "0-1"}, "0-1")
    define_and_start(uri, member.guest_xml(GuestSpec("hot", vcpus=1, iothreads=0)))
    try:
        host_id = fleet_hosts[2].pk
        sync_host(host_id)
        dom = domain(name)
        apply_profile(login(operator), login(approver), {"vcpupin": {"strategy": "dedicated"}}, [dom.pk], "both")
        virsh(uri, "setvcpus", name, "2", "--maximum", "--config")
        virsh(uri, "destroy", name)
        virsh(uri, "start", name)
        switch = f"/api/hosts/{host_id}/auto-reassert/"
        assert login(admin_user).post(switch, {"enabled": True}, content_type="application/json").status_code == 200
        sync_host(host_id)
        assert domain(name).vcpus_max == 2 and not Drift.objects.filter(domain=dom).exists()
        time.sleep(2 * VCPU_POLL_SECONDS)  # the watcher has counted the restarted guest's vCPUs

        started = time.monotonic()
        virsh(uri, "setvcpus", name, "2", "--live")
        drift = wait_for(
            lambda: Drift.objects.filter(domain=dom, field="vcpupin 1").first(), 20, 0.1, what="hot-add drift"
        )
        print(f"\nhot-added vCPU found as drift in {time.monotonic() - started:.1f} s")
        assert isinstance(drift, Drift)
        assert (drift.scope, drift.expected, drift.observed, drift.detected_by) == ("live", DEDICATED, "0-1", "event")
        cr = wait_for(lambda: Drift.objects.get(pk=drift.pk).remediation, 20, 0.1, what="automatic remediation")
        assert isinstance(cr, ChangeRequest)
        wait_applied(login(approver), cr.pk)

        threads = vcpu_threads(fleet, name)
        placed = {vcpu: affinity_of(tid) for vcpu, tid in threads.items()}
        assert set(placed) == {0, 1} and all(cpus.isdigit() for cpus in placed.values()), placed
        assert placed[0] != placed[1], placed
        wait_for(
            lambda: Drift.objects.filter(pk=drift.pk, resolved_at__isnull=False).exists(), 20, 0.2, what="resolved"
        )
    finally:
        destroy_and_undefine(uri, name)
        _pins(fleet, uri, db, {0: "1", 1: "1"}, "0")
