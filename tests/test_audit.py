"""The audit log: every step of a change leaves an attributable event with what was there before and after;
the API filters it; nothing can rewrite or remove it."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from hosts.changes.requests import approve_change_request, create_change_request, reject_change_request
from hosts.models import AuditEvent, ChangeRequest, Domain, Host
from hosts.planning.profiles import create_profile
from tests.conftest import wait_for

pytestmark = [pytest.mark.fleet]

CONTENT = {"sched": {"vcpu_period": 100000, "vcpu_quota": 50000}}


def _propose(operator: User, name: str = "cap") -> ChangeRequest:
    profile = create_profile(name=name, description="", content=CONTENT, actor=operator)
    domain = Domain.objects.filter(state="running", name__endswith="1-web").get()
    return create_change_request(
        revision=profile.revisions.get(), domain_ids=[domain.pk], scope="live", reason="cap web", actor=operator
    )


@pytest.mark.django_db(transaction=True)
def test_every_step_of_a_change_leaves_an_event_with_its_actor_and_before_and_after(
    fleet_hosts: list[Host],
    celery_worker: subprocess.Popen[bytes],
    operator: User,
    approver: User,
    admin_user: User,
    login: Callable[[User], Client],
) -> None:
    op, ap = login(operator), login(approver)
    host = fleet_hosts[0]
    assert login(admin_user).post(f"/api/hosts/{host.pk}/partition/", {"housekeeping_cpus": "0"}).status_code == 200
    profile = op.post("/api/profiles/", {"name": "cap", "content": CONTENT}, content_type="application/json").json()
    revised = op.put(
        f"/api/profiles/{profile['id']}/",
        {"name": "cap", "content": {"sched": {"vcpu_period": 100000, "vcpu_quota": 40000}}},
        content_type="application/json",
    )
    assert revised.status_code == 200, revised.content
    domain = Domain.objects.get(name__endswith="1-web")
    body = {"profile": profile["id"], "domains": [domain.pk], "scope": "live", "reason": "cap web"}
    cr_id = op.post("/api/change-requests/", body, content_type="application/json").json()["id"]
    other_id = op.post("/api/change-requests/", body, content_type="application/json").json()["id"]
    assert ap.post(f"/api/change-requests/{other_id}/reject/", {"comment": "dup"}).status_code == 200
    assert ap.post(f"/api/change-requests/{cr_id}/approve/", {"comment": "ok"}).status_code == 200
    wait_for(lambda: ChangeRequest.objects.get(pk=cr_id).status == "applied", 90, 0.5, "apply")
    assert ap.post(f"/api/change-requests/{cr_id}/rollback/").status_code == 202
    wait_for(lambda: ChangeRequest.objects.get(pk=cr_id).status == "rolled_back", 90, 0.5, "rollback")

    def one(action: str, **filters: object) -> AuditEvent:
        return AuditEvent.objects.select_related("actor").get(action=action, **filters)

    partition = one("host.partition", host=host)
    assert partition.actor == admin_user
    assert partition.before == {"housekeeping_cpus": ""} and partition.after == {"housekeeping_cpus": "0"}
    created = one("profile.create", profile_id=profile["id"])
    assert created.actor == operator and created.after["content"]["sched"]["vcpu_quota"] == 50000
    revise = one("profile.revise", profile_id=profile["id"])
    assert revise.actor == operator
    assert revise.before["content"]["sched"]["vcpu_quota"] == 50000
    assert revise.after["content"]["sched"]["vcpu_quota"] == 40000
    submitted = one("change.create", change_request_id=cr_id)
    assert submitted.actor == operator and submitted.after["reason"] == "cap web"
    assert submitted.after["targets"][0]["desired"]["sched"]["vcpu_quota"] == 40000
    assert one("change.approve", change_request_id=cr_id).actor == approver
    assert one("change.approve", change_request_id=cr_id).message == "ok"
    assert one("change.reject", change_request_id=other_id).actor == approver
    assert one("change.apply", change_request_id=cr_id).change_request_id == cr_id
    applied = one("change.applied", change_request_id=cr_id, domain=domain)
    assert applied.before["live"]["sched"]["vcpu_quota"] == -1
    assert applied.after["live"]["sched"]["vcpu_quota"] == 40000  # verified: read back after applying
    assert one("change.rollback", change_request_id=cr_id).actor == approver
    rolled = one("change.rolled_back", change_request_id=cr_id, domain=domain)
    assert rolled.before["live"]["sched"]["vcpu_quota"] == 40000
    assert rolled.after["live"]["sched"]["vcpu_quota"] == -1


@pytest.mark.django_db
def test_approve_and_reject_events_record_the_status_before_and_after(
    fleet_hosts: list[Host], operator: User, approver: User
) -> None:
    approved = _propose(operator, "a")
    rejected = _propose(operator, "b")
    approve_change_request(approved.pk, comment="ok", actor=approver)
    reject_change_request(rejected.pk, comment="no", actor=approver)
    approve = AuditEvent.objects.get(action="change.approve", change_request=approved)
    reject = AuditEvent.objects.get(action="change.reject", change_request=rejected)
    assert (approve.before, approve.after) == ({"status": "pending"}, {"status": "scheduled"})
    assert (reject.before, reject.after) == ({"status": "pending"}, {"status": "rejected"})


@pytest.mark.django_db
def test_audit_api_filters_by_action_actor_change_request_and_since(
    fleet_hosts: list[Host], operator: User, approver: User, viewer: User, login: Callable[[User], Client]
) -> None:
    first = _propose(operator, "a")
    time.sleep(0.01)
    since = timezone.now()
    time.sleep(0.01)
    second = _propose(operator, "b")
    approve_change_request(second.pk, actor=approver)
    client = login(viewer)

    def actions(**params: object) -> list[tuple[str, int | None]]:
        response = client.get("/api/audit-events/", params)
        assert response.status_code == 200, response.content
        return sorted((e["action"], e["change_request"]) for e in response.json()["results"])

    assert actions(action="change.approve") == [("change.approve", second.pk)]
    assert actions(actor="anna") == [("change.approve", second.pk)]
    assert actions(actor="otto") == sorted(
        [("profile.create", None), ("profile.create", None), ("change.create", first.pk), ("change.create", second.pk)]
    )
    assert actions(change_request=first.pk) == [("change.create", first.pk)]
    assert actions(since=since.isoformat()) == sorted(
        [("profile.create", None), ("change.create", second.pk), ("change.approve", second.pk)]
    )
    assert actions(action="change.create", actor="otto", since=since.isoformat()) == [("change.create", second.pk)]


@pytest.mark.django_db
def test_audit_api_is_read_only(fleet_hosts: list[Host], admin_user: User, login: Callable[[User], Client]) -> None:
    event = AuditEvent.objects.get(action="host.create", host=fleet_hosts[0])
    client = login(admin_user)
    assert client.delete(f"/api/audit-events/{event.pk}/").status_code == 405
    assert client.patch(f"/api/audit-events/{event.pk}/", {"message": "x"}, "application/json").status_code == 405
    assert client.post("/api/audit-events/", {"action": "host.create"}, "application/json").status_code == 405
    assert AuditEvent.objects.get(pk=event.pk).message == event.message


@pytest.mark.django_db
def test_an_audit_event_cannot_be_saved_again_or_deleted(fleet_hosts: list[Host]) -> None:
    event = AuditEvent.objects.filter(action="host.create").first()
    event.message = "rewritten"
    with pytest.raises(ValueError, match="append-only"):
        event.save()
    with pytest.raises(ValueError, match="append-only"):
        event.delete()
    assert AuditEvent.objects.get(pk=event.pk).message != "rewritten"


@pytest.mark.django_db
def test_audit_events_cannot_be_updated_or_deleted_in_bulk(fleet_hosts: list[Host]) -> None:
    count = AuditEvent.objects.count()
    assert count >= 3
    with pytest.raises(ValueError, match="append-only"):
        AuditEvent.objects.filter(action="host.create").update(message="rewritten")
    with pytest.raises(ValueError, match="append-only"):
        AuditEvent.objects.all().delete()
    assert AuditEvent.objects.count() == count
    assert not AuditEvent.objects.filter(message="rewritten").exists()
