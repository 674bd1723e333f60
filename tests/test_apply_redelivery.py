"""A worker killed in the middle of an apply job: the job is redelivered, the request still ends applied,
every guest is applied once, and each guest's snapshot is the original state, not the half-changed one."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from hosts.harness.fleet import Fleet
from hosts.models import ApplyJob, AuditEvent, ChangeTarget, Domain, Host
from tests.conftest import virsh, wait_for

pytestmark = [pytest.mark.fleet, pytest.mark.django_db(transaction=True)]

CAP_AND_PIN = {
    "emulatorpin": {"strategy": "housekeeping"},
    "sched": {"vcpu_period": 100000, "vcpu_quota": 50000},
}
SCHED_ORDER = ("global_period", "global_quota", "vcpu_period", "vcpu_quota", "emulator_period", "emulator_quota")


def live_state(uri: str, name: str) -> dict[str, str]:
    sched = dict(
        (k.strip(), v.strip())
        for k, v in (line.split(":", 1) for line in virsh(uri, "schedinfo", name, "--live").splitlines())
    )
    return {
        "emulatorpin": virsh(uri, "emulatorpin", name, "--live").split()[-1],
        **{k: sched[k] for k in SCHED_ORDER},
    }


@pytest.fixture
def host2_guests(fleet: Fleet) -> Iterator[list[str]]:
    """Host 2's three guests, put back as they were afterwards (the fleet lives for the whole session)."""
    member = fleet.host(1)
    names = [f"{fleet.prefix}2-{s}" for s in ("web", "db", "batch")]
    saved = {
        n: (virsh(member.uri, "dumpxml", "--inactive", "--security-info", n), live_state(member.uri, n)) for n in names
    }
    try:
        yield names
    finally:
        daemon = member.pid()
        if daemon is not None:
            os.kill(daemon, signal.SIGCONT)  # never leave the daemon frozen
        for name, (xml, live) in saved.items():
            path = member.directory / f"restore-{name}.xml"
            path.write_text(xml)
            virsh(member.uri, "define", str(path))
            virsh(member.uri, "emulatorpin", name, live["emulatorpin"], "--live")
            for key in SCHED_ORDER:
                virsh(member.uri, "schedinfo", name, "--live", f"{key}={live[key]}")


def running_job(cr_id: int) -> ApplyJob | None:
    return ApplyJob.objects.filter(change_request_id=cr_id, kind="apply", status="running").first()


def test_worker_killed_mid_apply_completes_on_redelivery_without_applying_twice(
    fleet: Fleet,
    fleet_hosts: list[Host],
    celery_worker: subprocess.Popen[bytes],
    host2_guests: list[str],
    operator: User,
    approver: User,
    admin_user: User,
    login: Callable[[User], Client],
) -> None:
    """The job is caught mid-apply deterministically: as soon as it is claimed, the host's libvirtd is frozen
    (SIGSTOP), so the worker is stuck inside a libvirt call for this host; then the pool process that claimed
    the job is SIGKILLed and the daemon thawed. A request already sent may still be executed by the daemon,
    leaving the guest half-changed, which is exactly the case the snapshot rule must survive."""
    member = fleet.host(1)
    originals = {n: live_state(member.uri, n) for n in host2_guests}
    assert originals[host2_guests[0]]["emulatorpin"] == "0-1"  # the change is visible on web2 and batch2
    assert (
        login(admin_user).post(f"/api/hosts/{fleet_hosts[1].pk}/partition/", {"housekeeping_cpus": "0"}).status_code
        == 200
    )
    op, ap = login(operator), login(approver)
    profile = op.post("/api/profiles/", {"name": "p", "content": CAP_AND_PIN}, content_type="application/json").json()
    created = op.post(
        "/api/change-requests/",
        {
            "profile": profile["id"],
            "domains": [Domain.objects.get(name=n).pk for n in host2_guests],
            "scope": "both",
            "reason": "redelivery",
        },
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    cr_id = created.json()["id"]

    assert ap.post(f"/api/change-requests/{cr_id}/approve/").status_code == 200
    job = wait_for(lambda: running_job(cr_id), 60, 0.005, "the apply job to be claimed")
    daemon = member.pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGSTOP)
    try:
        time.sleep(0.5)  # let the worker reach (and block in) its next libvirt call
        job.refresh_from_db()
        assert job.status == "running", "the job finished before the worker could be killed"
        _host, _, pid = job.claimed_by.rpartition(":")
        assert pid.isdigit() and int(pid) != celery_worker.pid, job.claimed_by
        os.kill(int(pid), signal.SIGKILL)
        killed_mid_guest = [
            t.domain_name for t in ChangeTarget.objects.filter(change_request_id=cr_id, status="applying")
        ]
    finally:
        os.kill(daemon, signal.SIGCONT)

    def finished() -> dict[str, Any] | None:
        data = ap.get(f"/api/change-requests/{cr_id}/").json()
        return None if data["status"] in ("scheduled", "applying") else data

    done = wait_for(finished, 150, 0.5, "the redelivered job to finish")
    assert done["status"] == "applied", done
    job.refresh_from_db()
    assert job.status == "done" and job.attempts >= 2, (job.status, job.attempts)
    assert job.claimed_by.rpartition(":")[2] != pid
    assert AuditEvent.objects.filter(change_request_id=cr_id, action="change.applied").count() == len(host2_guests)
    assert not AuditEvent.objects.filter(change_request_id=cr_id, action="change.failed").exists()
    results = {r["domain_name"]: r for r in done["results"]}
    for name in host2_guests:
        before = results[name]["before"]["live"]
        assert before["emulatorpin"] == originals[name]["emulatorpin"], (name, killed_mid_guest, before)
        assert str(before["sched"]["vcpu_quota"]) == originals[name]["vcpu_quota"], (name, before)
        now = live_state(member.uri, name)
        assert now["emulatorpin"] == "0" and now["vcpu_quota"] == "50000", (name, now)
