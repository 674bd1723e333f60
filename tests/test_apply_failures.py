"""When one guest cannot be changed, the others still are and it is left exactly as it was, with a clear
error: a guest shut off or a host stopped between approval and apply, and a guest whose kernel refuses the
planned cap half-way through (restored from its snapshot). When the world changed so that the plan no
longer holds, the request fails before touching anything."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from hosts.changes import jobs
from hosts.changes.engine import run_jobs
from hosts.changes.start import start_change_request
from hosts.harness.fleet import Fleet
from hosts.inventory import sync_host
from hosts.libvirt.connection import disconnect
from hosts.models import ApplyJob, AuditEvent, ChangeRequest, ChangeTarget, Domain, Host
from tests.conftest import virsh, wait_for

pytestmark = [pytest.mark.fleet, pytest.mark.django_db(transaction=True)]

CAP_AND_PIN = {
    "emulatorpin": {"strategy": "housekeeping"},
    "sched": {"vcpu_period": 100000, "vcpu_quota": 50000},
}
SCHED_ORDER = ("global_period", "global_quota", "cpu_shares", "vcpu_period", "vcpu_quota", "emulator_period")
SCHED_ORDER += ("emulator_quota", "iothread_period", "iothread_quota")


def pin_table(output: str) -> dict[str, str]:
    return dict(line.split() for line in output.splitlines() if line.strip())


def sched(output: str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in output.splitlines() if ":" in line)}


def tuning(uri: str, name: str, scope: str) -> dict[str, Any]:
    """A guest's pins and caps as virsh reports them (the independent witness)."""
    return {
        "vcpupin": pin_table(virsh(uri, "vcpupin", name, scope)),
        "emulatorpin": virsh(uri, "emulatorpin", name, scope).split()[-1],
        "iothreadpin": pin_table(virsh(uri, "iothreadinfo", name, scope)),
        "sched": {k: v for k, v in sched(virsh(uri, "schedinfo", name, scope)).items() if k != "Scheduler"},
    }


@dataclass
class Keeper:
    """Record guests as they are and put them back afterwards: the fleet lives for the whole session."""

    fleet: Fleet
    saved: list[tuple[int, str, str, dict[str, Any]]] = field(default_factory=list)

    def keep(self, index: int, name: str) -> dict[str, Any]:
        uri = self.fleet.host(index).uri
        live = tuning(uri, name, "--live")
        self.saved.append((index, name, virsh(uri, "dumpxml", "--inactive", "--security-info", name), live))
        return live

    def restore(self) -> None:
        for index, name, xml, live in self.saved:
            member = self.fleet.host(index)
            member.start()
            path = member.directory / f"restore-{name}.xml"
            path.write_text(xml)
            virsh(member.uri, "define", str(path))
            if "running" not in virsh(member.uri, "domstate", name):
                virsh(member.uri, "start", name)
                continue  # started from the restored config: live equals config again
            for vcpu, cpus in live["vcpupin"].items():
                virsh(member.uri, "vcpupin", name, vcpu, cpus, "--live")
            virsh(member.uri, "emulatorpin", name, live["emulatorpin"], "--live")
            for iothread, cpus in live["iothreadpin"].items():
                virsh(member.uri, "iothreadpin", name, iothread, cpus, "--live")
            for key in SCHED_ORDER:
                if key in live["sched"]:
                    virsh(member.uri, "schedinfo", name, "--live", f"{key}={live['sched'][key]}")


@pytest.fixture
def keeper(fleet: Fleet) -> Iterator[Keeper]:
    kept = Keeper(fleet)
    try:
        yield kept
    finally:
        kept.restore()


def partition_all(fleet_hosts: list[Host], client: Client) -> None:
    for host in fleet_hosts:
        response = client.post(f"/api/hosts/{host.pk}/partition/", {"housekeeping_cpus": "0"})
        assert response.status_code == 200, response.content


@dataclass
class Webs:
    """The three web guests, one per host (web1 on host 1 ...), and their live tuning before the test."""

    names: list[str]
    live_before: list[dict[str, Any]]


@pytest.fixture
def webs(
    fleet: Fleet, fleet_hosts: list[Host], keeper: Keeper, admin_user: User, login: Callable[[User], Client]
) -> Webs:
    """web1..web3 kept (put back after the test), every host partitioned with CPU 0 for housekeeping."""
    names = [f"{fleet.prefix}{i}-web" for i in (1, 2, 3)]
    before = [keeper.keep(i, name) for i, name in enumerate(names)]
    partition_all(fleet_hosts, login(admin_user))
    return Webs(names, before)


def propose(op: Client, content: dict[str, Any], names: list[str], scope: str = "both", profile_name: str = "p") -> int:
    profile = op.post("/api/profiles/", {"name": profile_name, "content": content}, content_type="application/json")
    assert profile.status_code == 201, profile.content
    created = op.post(
        "/api/change-requests/",
        {
            "profile": profile.json()["id"],
            "domains": [Domain.objects.get(name=n).pk for n in names],
            "scope": scope,
            "reason": "test",
        },
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    return int(created.json()["id"])


def approve_and_wait(ap: Client, cr_id: int) -> dict[str, Any]:
    response = ap.post(f"/api/change-requests/{cr_id}/approve/", {"comment": "ok"}, content_type="application/json")
    assert response.status_code == 200, response.content
    wait_for(
        lambda: ap.get(f"/api/change-requests/{cr_id}/").json()["status"] not in ("scheduled", "applying"),
        120,
        0.5,
        "apply",
    )
    return ap.get(f"/api/change-requests/{cr_id}/").json()


def by_name(done: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["domain_name"]: r for r in done["results"]}


def assert_applied(uri: str, name: str) -> None:
    for scope in ("--live", "--config"):
        now = tuning(uri, name, scope)
        assert now["emulatorpin"] == "0" and now["sched"]["vcpu_quota"] == "50000", (name, scope, now)


def roll_back(ap: Client, cr_id: int) -> None:
    assert ap.post(f"/api/change-requests/{cr_id}/rollback/").status_code == 202
    wait_for(lambda: ap.get(f"/api/change-requests/{cr_id}/").json()["status"] == "rolled_back", 90, 0.5, "rollback")


def test_guest_shut_off_before_apply_fails_alone_and_stays_unchanged(
    fleet: Fleet,
    celery_worker: subprocess.Popen[bytes],
    webs: Webs,
    operator: User,
    approver: User,
    login: Callable[[User], Client],
) -> None:
    names = webs.names
    op, ap = login(operator), login(approver)
    cr_id = propose(op, CAP_AND_PIN, names)
    uri3 = fleet.host(2).uri
    config_before = tuning(uri3, names[2], "--config")
    virsh(uri3, "destroy", names[2])

    done = approve_and_wait(ap, cr_id)
    assert done["status"] == "partially_applied", done
    results = by_name(done)
    assert [results[n]["status"] for n in names] == ["applied", "applied", "failed"]
    error = results[names[2]]["error"]
    assert names[2] in error and "shut" in error and "not changed" in error, error
    assert_applied(fleet.host(0).uri, names[0])
    assert_applied(fleet.host(1).uri, names[1])
    assert tuning(uri3, names[2], "--config") == config_before
    assert "2 of 3 guests changed" in done["status_message"], done["status_message"]
    assert AuditEvent.objects.filter(change_request_id=cr_id, action="change.failed").count() == 1
    roll_back(ap, cr_id)


def test_host_stopped_before_apply_fails_its_guest_with_cannot_be_reached(
    fleet: Fleet,
    fleet_hosts: list[Host],
    celery_worker: subprocess.Popen[bytes],
    webs: Webs,
    operator: User,
    approver: User,
    login: Callable[[User], Client],
) -> None:
    names, before = webs.names, webs.live_before
    op, ap = login(operator), login(approver)
    cr_id = propose(op, CAP_AND_PIN, names)
    stopped = fleet.host(1)
    config_before = tuning(stopped.uri, names[1], "--config")
    stopped.stop_daemon()
    try:
        done = approve_and_wait(ap, cr_id)
    finally:
        stopped.start()
    assert done["status"] == "partially_applied", done
    results = by_name(done)
    assert [results[n]["status"] for n in names] == ["applied", "failed", "applied"]
    error = results[names[1]]["error"]
    assert "cannot be reached" in error and names[1] in error and "not changed" in error, error
    assert_applied(fleet.host(0).uri, names[0])
    assert_applied(fleet.host(2).uri, names[2])
    assert tuning(stopped.uri, names[1], "--live") == before[1]
    assert tuning(stopped.uri, names[1], "--config") == config_before
    assert not ApplyJob.objects.filter(change_request_id=cr_id, host=fleet_hosts[1]).exists()
    sync_host(fleet_hosts[1].pk)  # back up, so the rollback can reach every host it needs
    roll_back(ap, cr_id)


def _scheduled(op: Client, approver: User, names: list[str], scope: str = "live", profile_name: str = "p") -> int:
    """A change request approved with the ORM only, so that no worker picks it up: the test runs the
    worker's steps itself (start_change_request, then run_jobs) and changes the world in between."""
    cr_id = propose(op, CAP_AND_PIN, names, scope=scope, profile_name=profile_name)
    ChangeRequest.objects.filter(pk=cr_id).update(status=ChangeRequest.Status.SCHEDULED, decided_by=approver)
    return cr_id


def test_cap_set_by_hand_after_the_replan_is_refused_at_apply_and_that_guest_is_restored(
    fleet: Fleet,
    webs: Webs,
    operator: User,
    approver: User,
    login: Callable[[User], Client],
) -> None:
    """Someone caps web2 at 10 % by hand after the re-plan and before the write; cgroup v1 then refuses the
    profile's 50 % vCPU cap. The emulator pin is written before the caps, so web2 is really half-changed
    when the kernel says no: the engine must undo the pin from its snapshot.

    The planner refuses this combination when it can see it (see test_planner), so the race is staged by
    running the worker's two steps in this process: the re-plan (start_change_request), the hand-made cap,
    then the per-host jobs (run_jobs). The approval is written with the ORM only so that no worker picks the
    request up in between.
    """
    names = webs.names
    uri2 = fleet.host(1).uri
    cr_id = _scheduled(login(operator), approver, names, scope="both")

    started = start_change_request(cr_id)
    assert len(started.claimed) == 3 and not started.waiting
    # A change of live and config: the re-plan's read is each guest's whole snapshot, the exact XML included.
    for target in ChangeTarget.objects.filter(change_request_id=cr_id):
        assert target.status == "applying" and target.before["live"] and target.before["config"], target.before
        assert target.before["config_xml"].startswith("<domain"), target.before
    virsh(uri2, "schedinfo", names[1], "--live", "global_period=100000", "global_quota=10000")
    live_before = tuning(uri2, names[1], "--live")
    config_before = tuning(uri2, names[1], "--config")
    assert run_jobs([], started.claimed) == []  # no host was busy

    done = login(approver).get(f"/api/change-requests/{cr_id}/").json()
    assert done["status"] == "partially_applied", done
    results = by_name(done)
    assert [results[n]["status"] for n in names] == ["applied", "failed", "applied"]
    failed = results[names[1]]
    assert failed["error"] and not failed["restore_error"], failed
    assert failed["before"]["live"]["emulatorpin"] == "0-1"
    assert tuning(uri2, names[1], "--live") == live_before
    assert tuning(uri2, names[1], "--config") == config_before
    assert_applied(fleet.host(0).uri, names[0])
    assert_applied(fleet.host(2).uri, names[2])
    event = AuditEvent.objects.get(change_request_id=cr_id, action="change.failed")
    assert "restored to its snapshot" in event.message and event.object_repr == names[1], event.message


def assert_applied_live(uri: str, name: str) -> None:
    now = tuning(uri, name, "--live")
    assert now["emulatorpin"] == "0" and now["sched"]["vcpu_quota"] == "50000", (name, now)


def test_host_stopped_between_the_replan_and_the_write_fails_its_guest_as_not_changed(
    fleet: Fleet,
    webs: Webs,
    operator: User,
    approver: User,
    login: Callable[[User], Client],
) -> None:
    """The start claims every job and marks the guests applying before anything is written. If a host is
    gone when the worker opens it, its guest was never written: it fails as not changed, not as possibly
    half-changed (which is what a guest marked applying by an earlier, dead worker must say)."""
    names, before = webs.names, webs.live_before
    cr_id = _scheduled(login(operator), approver, names)
    started = start_change_request(cr_id)
    assert len(started.claimed) == 3 and not started.waiting
    assert [t.status for t in ChangeTarget.objects.filter(change_request_id=cr_id)] == ["applying"] * 3
    stopped = fleet.host(1)
    stopped.stop_daemon()
    disconnect(stopped.uri)  # as the connection's close callback does once it sees the EOF
    try:
        assert run_jobs([], started.claimed) == []
    finally:
        stopped.start()
    done = login(approver).get(f"/api/change-requests/{cr_id}/").json()
    assert done["status"] == "partially_applied", done
    results = by_name(done)
    assert [results[n]["status"] for n in names] == ["applied", "failed", "applied"]
    failed = results[names[1]]
    assert "cannot be reached" in failed["error"] and "not changed" in failed["error"], failed
    assert not failed["restore_error"], failed
    assert tuning(stopped.uri, names[1], "--live") == before[1]
    assert_applied_live(fleet.host(0).uri, names[0])
    assert_applied_live(fleet.host(2).uri, names[2])


def test_a_host_busy_at_the_start_is_snapshotted_when_its_job_is_claimed(
    fleet: Fleet,
    fleet_hosts: list[Host],
    webs: Webs,
    operator: User,
    approver: User,
    login: Callable[[User], Client],
) -> None:
    """A free host's guests take the re-plan's read as their snapshot; a busy host's guest waits for its job
    with no snapshot at all (by then that read is old), and is read afresh once the job is claimed."""
    names = webs.names
    op = login(operator)
    other = _scheduled(op, approver, [names[1]], profile_name="other")
    holder = ApplyJob.objects.create(
        change_request_id=other,
        host=fleet_hosts[1],
        kind=ApplyJob.Kind.APPLY,
        status=ApplyJob.Status.RUNNING,
        claimed_at=timezone.now(),
        claimed_by=jobs._worker_identity(),  # this live process holds host 2
    )
    cr_id = _scheduled(op, approver, names)
    started = start_change_request(cr_id)
    assert sorted(job.host_id for job in started.claimed) == [fleet_hosts[0].pk, fleet_hosts[2].pk]
    [waiting] = started.waiting
    targets = {t.domain_name: t for t in ChangeTarget.objects.filter(change_request_id=cr_id)}
    assert targets[names[1]].status == "planned" and targets[names[1]].before is None
    assert all(targets[n].status == "applying" and targets[n].before for n in (names[0], names[2]))

    assert run_jobs([], started.claimed) == []
    assert run_jobs([waiting]) == [waiting]  # host 2 is still busy: nothing happens to its guest
    assert ChangeTarget.objects.get(change_request_id=cr_id, domain_name=names[1]).before is None
    ApplyJob.objects.filter(pk=holder.pk).update(status=ApplyJob.Status.DONE)
    assert run_jobs([waiting]) == []
    done = login(approver).get(f"/api/change-requests/{cr_id}/").json()
    assert done["status"] == "applied", done
    assert by_name(done)[names[1]]["before"]["live"]["sched"]["vcpu_quota"] != 50000
    for i, name in enumerate(names):
        assert_applied_live(fleet.host(i).uri, name)


def test_cap_below_an_existing_global_cap_fails_the_request_at_replan_and_touches_nothing(
    fleet: Fleet,
    celery_worker: subprocess.Popen[bytes],
    webs: Webs,
    operator: User,
    approver: User,
    login: Callable[[User], Client],
) -> None:
    """A guest-wide cap set by hand after the request was made is seen when the apply starts."""
    names = webs.names
    uri2 = fleet.host(1).uri
    op, ap = login(operator), login(approver)
    cr_id = propose(op, CAP_AND_PIN, names)
    virsh(uri2, "schedinfo", names[1], "--live", "global_period=100000", "global_quota=10000")
    before = {n: tuning(fleet.host(i).uri, n, "--live") for i, n in enumerate(names)}

    done = approve_and_wait(ap, cr_id)
    assert done["status"] == "failed", done
    assert "no longer holds" in done["status_message"] and "cgroup v1" in done["status_message"]
    assert {n: tuning(fleet.host(i).uri, n, "--live") for i, n in enumerate(names)} == before


def test_plan_that_no_longer_holds_fails_the_request_and_touches_nothing(
    fleet: Fleet,
    fleet_hosts: list[Host],
    celery_worker: subprocess.Popen[bytes],
    keeper: Keeper,
    operator: User,
    approver: User,
    admin_user: User,
    login: Callable[[User], Client],
) -> None:
    """web1 is planned onto CPU 1 alone; before approval someone pins batch1's vCPU 0 there by hand."""
    uri = fleet.host(0).uri
    web, db, batch = (f"{fleet.prefix}1-{s}" for s in ("web", "db", "batch"))
    for name in (web, db, batch):
        keeper.keep(0, name)
    for vcpu in ("0", "1"):  # free CPU 1, which the fleet dedicates to db1
        virsh(uri, "vcpupin", db, vcpu, "0-1", "--live")
    sync_host(fleet_hosts[0].pk)
    partition_all(fleet_hosts[:1], login(admin_user))
    op, ap = login(operator), login(approver)
    cr_id = propose(op, {"vcpupin": {"strategy": "explicit", "cpus": {"0": "1", "1": "1"}}}, [web])
    web_live, web_config = tuning(uri, web, "--live"), tuning(uri, web, "--config")
    virsh(uri, "vcpupin", batch, "0", "1", "--live")

    done = approve_and_wait(ap, cr_id)
    assert done["status"] == "failed", done
    message = done["status_message"]
    assert "no longer holds" in message and batch in message and "CPU 1" in message, message
    assert "Nothing was changed" in message
    assert [r["status"] for r in done["results"]] == ["skipped"]
    assert tuning(uri, web, "--live") == web_live and tuning(uri, web, "--config") == web_config
    assert not ApplyJob.objects.filter(change_request_id=cr_id).exists()
    assert AuditEvent.objects.filter(change_request_id=cr_id, action="change.aborted").count() == 1
    assert not AuditEvent.objects.filter(change_request_id=cr_id, action="change.applied").exists()


def test_plan_onto_a_cpu_another_guest_took_meanwhile_fails_whichever_guest_was_listed_first(
    fleet: Fleet,
    fleet_hosts: list[Host],
    celery_worker: subprocess.Popen[bytes],
    keeper: Keeper,
    operator: User,
    approver: User,
    admin_user: User,
    login: Callable[[User], Client],
) -> None:
    """db1 (the older guest row) is planned to put vCPU 2 on CPU 1, which it already holds; before approval
    web1 is pinned to CPU 1 alone by hand. CPU 1 is now dedicated to another guest as well, so the plan no
    longer holds, exactly as in the test above with the guests' roles swapped."""
    uri = fleet.host(0).uri
    web, db = f"{fleet.prefix}1-web", f"{fleet.prefix}1-db"
    keeper.keep(0, web)
    keeper.keep(0, db)
    assert Domain.objects.get(name=db).pk < Domain.objects.get(name=web).pk
    partition_all(fleet_hosts[:1], login(admin_user))
    op, ap = login(operator), login(approver)
    cr_id = propose(op, {"vcpupin": {"strategy": "explicit", "cpus": {"2": "1"}}}, [db])
    db_live = tuning(uri, db, "--live")
    virsh(uri, "vcpupin", web, "0", "1", "--live")

    done = approve_and_wait(ap, cr_id)
    assert done["status"] == "failed", done
    assert "no longer holds" in done["status_message"] and web in done["status_message"], done["status_message"]
    assert tuning(uri, db, "--live") == db_live
    assert ChangeRequest.objects.get(pk=cr_id).targets.get().status == "skipped"
