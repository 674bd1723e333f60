"""A rollback puts back only what its request changed, only where the guest still holds what it wrote.

Against the real fleet and worker: a later request's config field survives the rollback of an earlier one
(issue 11's scenario: A sets config ``cpu_shares``, B config ``vcpu_period``; rolling back A redefined the
whole saved XML and undid B), and a live value changed by hand, or by a later request, is a conflict: left
alone, named in the preview and in the result. Checked with virsh, the pages and the audit log."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from hosts.audit_diff import diff_rows
from hosts.changes.rollback import CONFLICT, RESTORE, plan_rollback
from hosts.harness.fleet import Fleet
from hosts.libvirt.xml import restore_cputune
from hosts.models import ChangeRequest, Domain, Host
from tests.conftest import virsh, wait_for


def schedinfo(uri: str, name: str, scope: str) -> dict[str, int]:
    out = virsh(uri, "schedinfo", name, f"--{scope}")
    return {
        k.strip(): int(v)
        for k, v in (line.split(":", 1) for line in out.splitlines() if ":" in line)
        if k.strip() != "Scheduler"
    }


def _propose(op: Client, ap: Client, name: str, content: dict[str, Any], domain: Domain, scope: str) -> int:
    """Create a profile and a change request for one guest, approve it and wait until it is applied."""
    profile = op.post("/api/profiles/", {"name": name, "content": content}, content_type="application/json")
    assert profile.status_code == 201, profile.content
    body = {"profile": profile.json()["id"], "domains": [domain.pk], "scope": scope, "reason": name}
    created = op.post("/api/change-requests/", body, content_type="application/json")
    assert created.status_code == 201, created.content
    cr_id: int = created.json()["id"]
    assert ap.post(f"/api/change-requests/{cr_id}/approve/").status_code == 200
    wait_for(lambda: ChangeRequest.objects.get(pk=cr_id).status not in ("scheduled", "applying"), 90, 0.5, "apply")
    assert ChangeRequest.objects.get(pk=cr_id).status == "applied", ChangeRequest.objects.get(pk=cr_id).status_message
    return cr_id


@pytest.fixture
def guest_kept(fleet: Fleet) -> Iterator[Callable[[int, str], tuple[str, str]]]:
    """A fleet guest put back as the fleet defined it afterwards (config XML and live caps), even on failure."""
    saved: list[tuple[int, str, str, dict[str, int]]] = []

    def keep(index: int, suffix: str) -> tuple[str, str]:
        uri, name = fleet.host(index).uri, f"{fleet.prefix}{index + 1}-{suffix}"
        saved.append(
            (index, name, virsh(uri, "dumpxml", "--inactive", "--security-info", name), schedinfo(uri, name, "live"))
        )
        return uri, name

    yield keep
    for index, name, xml, live in saved:
        uri = fleet.host(index).uri
        path = fleet.host(index).directory / f"restore-{name}.xml"
        path.write_text(xml)
        virsh(uri, "define", str(path))
        virsh(uri, "schedinfo", name, "--live", *(f"{k}={v}" for k, v in live.items() if v != 0))


@pytest.mark.fleet
@pytest.mark.django_db(transaction=True)
def test_rolling_back_a_config_change_keeps_a_later_requests_config_field(
    fleet: Fleet,
    fleet_hosts: list[Host],
    celery_worker: subprocess.Popen[bytes],
    operator: User,
    approver: User,
    login: Callable[[User], Client],
    guest_kept: Callable[[int, str], tuple[str, str]],
) -> None:
    op, ap = login(operator), login(approver)
    uri, name = guest_kept(1, "web")
    domain = Domain.objects.get(name=name)
    shares_before = schedinfo(uri, name, "config")["cpu_shares"]
    period_before = schedinfo(uri, name, "config")["vcpu_period"]
    assert (shares_before, period_before) != (2048, 50000)

    a = _propose(op, ap, "shares", {"sched": {"cpu_shares": 2048}}, domain, "config")
    b = _propose(op, ap, "period", {"sched": {"vcpu_period": 50000}}, domain, "config")
    config = schedinfo(uri, name, "config")
    assert (config["cpu_shares"], config["vcpu_period"]) == (2048, 50000)
    assert Domain.objects.get(pk=domain.pk).desired_state["config"] == {
        "sched": {"cpu_shares": 2048, "vcpu_period": 50000}
    }
    applied_finish = ChangeRequest.objects.get(pk=a).finished_at

    preview = ap.get(f"/api/change-requests/{a}/rollback-preview/")
    assert preview.status_code == 200, preview.content
    [guest] = preview.json()["guests"]
    assert guest["answered"] and guest["conflicts"] == []
    assert guest["restore"] == [{"scope": "config", "field": "cpu_shares", "now": 2048, "restore_to": shares_before}]

    assert ap.post(f"/api/change-requests/{a}/rollback/").status_code == 202
    wait_for(lambda: ChangeRequest.objects.get(pk=a).status == "rolled_back", 90, 0.5, "rollback")

    config = schedinfo(uri, name, "config")
    assert config["vcpu_period"] == 50000, "B's field was undone by A's rollback"
    assert config["cpu_shares"] == shares_before
    if shares_before == 0:  # unset before: unset again, not <shares>0</shares> (which breaks the next start)
        assert "<shares>" not in virsh(uri, "dumpxml", "--inactive", name)
    assert ChangeRequest.objects.get(pk=b).status == "applied"
    assert Domain.objects.get(pk=domain.pk).desired_state["config"] == {"sched": {"vcpu_period": 50000}}

    cr = ChangeRequest.objects.get(pk=a)
    assert cr.finished_at == applied_finish, "the rollback overwrote the apply's finish time"
    assert "Rolled back" not in cr.status_message and "put back and verified" in cr.status_message
    [result] = ap.get(f"/api/change-requests/{a}/").json()["results"]
    assert result["after"]["config"]["sched"]["cpu_shares"] == 2048  # the apply's read-back, kept
    fields = result["rollback"]["fields"]
    assert [(f["field"], f["action"]) for f in fields] == [("cpu_shares", RESTORE)]

    page = ap.get(f"/changes/{a}/").content.decode()
    assert 'data-restored="config cpu_shares"' in page and "Rolled back — Rolled back" not in page


@pytest.mark.fleet
@pytest.mark.django_db(transaction=True)
def test_values_changed_since_by_hand_or_by_a_later_request_are_conflicts_left_alone(
    fleet: Fleet,
    fleet_hosts: list[Host],
    celery_worker: subprocess.Popen[bytes],
    operator: User,
    approver: User,
    login: Callable[[User], Client],
    guest_kept: Callable[[int, str], tuple[str, str]],
) -> None:
    op, ap = login(operator), login(approver)
    uri, name = guest_kept(2, "web")
    domain = Domain.objects.get(name=name)
    live_before = schedinfo(uri, name, "live")

    a = _propose(
        op, ap, "caps", {"sched": {"cpu_shares": 512, "vcpu_quota": 50000, "emulator_quota": 20000}}, domain, "live"
    )
    b = _propose(op, ap, "emu", {"sched": {"emulator_quota": 30000}}, domain, "live")
    virsh(uri, "schedinfo", name, "--live", "vcpu_quota=30000")  # by hand, outside isoweb
    assert Domain.objects.get(pk=domain.pk).desired_state["live"] == {
        "sched": {"cpu_shares": 512, "vcpu_quota": 50000, "emulator_quota": 30000}
    }

    preview = ap.get(f"/api/change-requests/{a}/rollback-preview/").json()
    [guest] = preview["guests"]
    assert guest["restore"] == [
        {"scope": "live", "field": "cpu_shares", "now": 512, "restore_to": live_before["cpu_shares"]}
    ]
    conflicts = {c["field"]: c for c in guest["conflicts"]}
    assert set(conflicts) == {"vcpu_quota", "emulator_quota"}
    assert (conflicts["vcpu_quota"]["wrote"], conflicts["vcpu_quota"]["now"]) == (50000, 30000)
    assert "by hand" in conflicts["vcpu_quota"]["why"]
    assert f"CR-{b}" in conflicts["emulator_quota"]["why"]

    confirm = ap.get(f"/changes/{a}/rollback/").content.decode()
    assert 'data-restore="live cpu_shares"' in confirm
    assert 'data-conflict="live vcpu_quota"' in confirm and f"CR-{b}, applied later" in confirm
    done = ap.post(f"/changes/{a}/rollback/")
    assert done.status_code == 302
    wait_for(lambda: ChangeRequest.objects.get(pk=a).status == "rolled_back", 90, 0.5, "rollback")

    live = schedinfo(uri, name, "live")
    assert live["vcpu_quota"] == 30000, "the hand change was overwritten"
    assert live["emulator_quota"] == 30000, "the later request's value was overwritten"
    assert live["cpu_shares"] == live_before["cpu_shares"]
    assert ChangeRequest.objects.get(pk=b).status == "applied"
    assert Domain.objects.get(pk=domain.pk).desired_state["live"] == {"sched": {"emulator_quota": 30000}}

    cr = ChangeRequest.objects.get(pk=a)
    assert "2 fields changed since this request, left as they are" in cr.status_message
    [result] = ap.get(f"/api/change-requests/{a}/").json()["results"]
    assert {f["field"]: f["action"] for f in result["rollback"]["fields"]} == {
        "cpu_shares": RESTORE,
        "vcpu_quota": CONFLICT,
        "emulator_quota": CONFLICT,
    }
    page = ap.get(f"/changes/{a}/").content.decode()
    assert 'data-restored="live cpu_shares"' in page and 'data-conflict="live vcpu_quota"' in page
    assert 'data-conflict="live emulator_quota"' in page

    audit = ap.get(f"/audit/?change_request={a}").content.decode()
    assert f"<code>live sched cpu_shares</code>: <del>512</del> → <ins>{live_before['cpu_shares']}</ins>" in audit


def test_the_plan_restores_only_what_still_holds_the_written_value() -> None:
    desired = {"vcpupin": {"0": "1"}, "sched": {"vcpu_quota": 50000, "vcpu_period": 100000}}
    before = {"live": {"vcpupin": {"0": "0-1"}, "sched": {"vcpu_quota": -1, "vcpu_period": 100000}}}
    now = {"live": {"vcpupin": {"0": "1"}, "sched": {"vcpu_quota": 40000, "vcpu_period": 100000}}}
    plan = plan_rollback(desired, before, now, ("live",), {("live", "vcpu_quota"): (9, 40000)})
    assert [(p.field, p.action) for p in plan] == [("vcpupin 0", RESTORE), ("vcpu_quota", CONFLICT)]
    assert plan[0].restore_to == "0-1" and plan[1].why == "CR-9, applied later, set it to 40000"
    stopped = plan_rollback(desired, before, {"live": None}, ("live",))
    assert {p.action for p in stopped} == {CONFLICT} and "not running" in stopped[0].why


def test_config_fields_are_put_back_element_by_element() -> None:
    before = (
        "<domain type='kvm'>\n  <name>g</name>\n  <cputune>\n    <emulatorpin cpuset='0'/>\n  </cputune>\n</domain>\n"
    )
    now = (
        "<domain type='kvm'>\n  <name>g</name>\n  <cputune>\n    <shares>2048</shares>\n    <period>50000</period>\n"
        "    <emulatorpin cpuset='1'/>\n  </cputune>\n  <metadata><x:cputune xmlns:x='urn:x'/></metadata>\n</domain>\n"
    )
    edited = restore_cputune(now, before, ["cpu_shares", "emulatorpin"])
    assert "<shares>" not in edited and "<period>50000</period>" in edited
    assert '<emulatorpin cpuset="0" />' in edited and "<x:cputune xmlns:x='urn:x'/>" in edited


def test_audit_before_and_after_read_as_one_line_per_changed_field() -> None:
    before = {"state": "running", "live": {"emulatorpin": "0-1", "sched": {"vcpu_quota": -1, "cpu_shares": 1024}}}
    after = {"state": "running", "live": {"emulatorpin": "0", "sched": {"vcpu_quota": 50000, "cpu_shares": 1024}}}
    rows, more = diff_rows(before, after)
    assert [(r.field, r.old, r.new) for r in rows] == [
        ("live emulatorpin", "0-1", "0"),
        ("live sched vcpu_quota", "-1", "50000"),
    ]
    assert more == 0
    created, _more = diff_rows(None, {"status": "scheduled", "hosts": [1, 2]})
    assert [(r.field, r.old, r.new) for r in created] == [("status", "", "scheduled"), ("hosts", "", "[1, 2]")]
