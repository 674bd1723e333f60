"""Who may do what with profiles, change requests, partitions and the audit log, endpoint by endpoint.

viewer reads; operator drafts profiles and change requests but cannot decide; approver approves, rejects and
rolls back but never decides their own request (the service says so, and the database refuses it too);
admin sets host partitions; a user with no role, and an anonymous one, get nothing.

These tests run inside a transaction that is never committed, so an approval here queues no apply: only
the permission decision is under test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.db import IntegrityError, transaction
from django.db.models import F
from django.test import Client

from hosts.changes.requests import create_change_request
from hosts.models import ChangeRequest, ChangeTarget, Domain, Host, PinProfile
from hosts.planning.profiles import create_profile
from hosts.roles import APPROVER

pytestmark = [pytest.mark.fleet]

CONTENT = {"sched": {"vcpu_period": 100000, "vcpu_quota": 50000}}
ROLES = ["viewer", "operator", "approver", "admin_user"]
NOBODY = ["outsider", "anonymous"]


@pytest.fixture
def as_(request: pytest.FixtureRequest, login: Callable[[User], Client]) -> Callable[[str], Client]:
    """Return a client logged in as the named persona (or not logged in, for 'anonymous')."""

    def make(persona: str) -> Client:
        if persona == "anonymous":
            return Client()
        return login(request.getfixturevalue(persona))

    return make


@pytest.fixture
def pending(fleet_hosts: list[Host], operator: User) -> ChangeRequest:
    """A pending change request by the operator, for a running guest."""
    profile = create_profile(name="cap", description="", content=CONTENT, actor=operator)
    domain = Domain.objects.filter(state="running", name__endswith="-web").first()
    return create_change_request(
        revision=profile.revisions.get(),
        domain_ids=[domain.pk],
        scope="live",
        reason="cap web",
        actor=operator,
    )


def post(client: Client, url: str, data: dict[str, Any] | None = None) -> Any:
    return client.post(url, data or {}, content_type="application/json")


@pytest.mark.parametrize("persona", ROLES)
def test_every_role_reads_profiles_change_requests_and_the_audit_log(
    persona: str, pending: ChangeRequest, as_: Callable[[str], Client]
) -> None:
    client = as_(persona)
    profile_id = pending.profile_revision.profile_id
    for url in (
        "/api/profiles/",
        f"/api/profiles/{profile_id}/",
        "/api/change-requests/",
        f"/api/change-requests/{pending.pk}/",
        "/api/audit-events/",
    ):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
    assert client.get("/api/change-requests/").json()["results"][0]["id"] == pending.pk
    plan = post(client, "/api/profiles/plan/", {"content": CONTENT, "domains": [pending.targets.get().domain_id]})
    assert plan.status_code == 200 and plan.json()["ok"] is True, plan.content


@pytest.mark.parametrize("persona", NOBODY)
def test_users_without_a_role_and_anonymous_ones_get_nothing(
    persona: str, pending: ChangeRequest, as_: Callable[[str], Client]
) -> None:
    client = as_(persona)
    profile_id = pending.profile_revision.profile_id
    for url in (
        "/api/profiles/",
        f"/api/profiles/{profile_id}/",
        "/api/change-requests/",
        f"/api/change-requests/{pending.pk}/",
        "/api/audit-events/",
    ):
        assert client.get(url).status_code in (401, 403), url
    for url in (
        "/api/profiles/",
        "/api/profiles/plan/",
        "/api/change-requests/",
        f"/api/change-requests/{pending.pk}/approve/",
        f"/api/change-requests/{pending.pk}/reject/",
        f"/api/change-requests/{pending.pk}/rollback/",
        f"/api/hosts/{pending.targets.get().host_id}/partition/",
    ):
        assert post(client, url, {"housekeeping_cpus": "0"}).status_code in (401, 403), url
    assert PinProfile.objects.count() == 1
    assert ChangeRequest.objects.get().status == "pending"


@pytest.mark.parametrize(
    ("persona", "allowed"), [("viewer", False), ("operator", True), ("approver", False), ("admin_user", False)]
)
def test_only_operators_create_and_revise_profiles_and_change_requests(
    persona: str, allowed: bool, pending: ChangeRequest, as_: Callable[[str], Client]
) -> None:
    client = as_(persona)
    profile_id = pending.profile_revision.profile_id
    created = post(client, "/api/profiles/", {"name": f"by-{persona}", "content": CONTENT})
    revised = client.put(
        f"/api/profiles/{profile_id}/",
        {"name": "cap", "content": {"sched": {"vcpu_quota": 30000}}},
        content_type="application/json",
    )
    cr = post(
        client,
        "/api/change-requests/",
        {"profile": profile_id, "domains": [pending.targets.get().domain_id], "scope": "live", "reason": "again"},
    )
    expected = (201, 200, 201) if allowed else (403, 403, 403)
    assert (created.status_code, revised.status_code, cr.status_code) == expected
    assert PinProfile.objects.count() == (2 if allowed else 1)
    assert PinProfile.objects.get(name="cap").revisions.count() == (2 if allowed else 1)
    assert ChangeRequest.objects.count() == (2 if allowed else 1)


@pytest.mark.parametrize("persona", ["viewer", "operator", "admin_user"])
def test_only_approvers_approve_reject_or_roll_back(
    persona: str, pending: ChangeRequest, as_: Callable[[str], Client]
) -> None:
    client = as_(persona)
    for action in ("approve", "reject"):
        response = post(client, f"/api/change-requests/{pending.pk}/{action}/", {"comment": "x"})
        assert response.status_code == 403, (action, response.content)
        assert ChangeRequest.objects.get(pk=pending.pk).status == "pending"
    _make_applied(pending)
    assert post(client, f"/api/change-requests/{pending.pk}/rollback/").status_code == 403
    assert not pending.jobs.exists()


def test_approver_approves_rejects_and_rolls_back_someone_elses_request(
    pending: ChangeRequest, fleet_hosts: list[Host], operator: User, as_: Callable[[str], Client]
) -> None:
    client = as_("approver")
    approved = post(client, f"/api/change-requests/{pending.pk}/approve/", {"comment": "fine"})
    assert approved.status_code == 200, approved.content
    assert approved.json()["status"] == "scheduled" and approved.json()["decided_by"] == "anna"

    domain = pending.targets.get().domain
    second = create_change_request(
        revision=pending.profile_revision, domain_ids=[domain.pk], scope="live", reason="again", actor=operator
    )
    rejected = post(client, f"/api/change-requests/{second.pk}/reject/", {"comment": "no"})
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected", rejected.content

    _make_applied(pending)
    rolled = post(client, f"/api/change-requests/{pending.pk}/rollback/")
    assert rolled.status_code == 202, rolled.content
    assert pending.jobs.filter(kind="rollback").count() == 1


def test_approver_cannot_approve_or_reject_their_own_request(
    fleet_hosts: list[Host], approver: User, as_: Callable[[str], Client]
) -> None:
    approver.groups.add(Group.objects.get(name="operator"))
    client = as_("approver")
    profile = post(client, "/api/profiles/", {"name": "mine", "content": CONTENT}).json()
    domain = Domain.objects.filter(state="running", name__endswith="-web").first()
    created = post(
        client,
        "/api/change-requests/",
        {"profile": profile["id"], "domains": [domain.pk], "scope": "live", "reason": "me"},
    )
    assert created.status_code == 201, created.content
    for action in ("approve", "reject"):
        response = post(client, f"/api/change-requests/{created.json()['id']}/{action}/")
        assert response.status_code == 403, action
        assert "your own change request" in response.json()["detail"]
    assert ChangeRequest.objects.get(pk=created.json()["id"]).status == "pending"


def test_database_refuses_a_request_decided_by_its_requester(pending: ChangeRequest) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        ChangeRequest.objects.filter(pk=pending.pk).update(decided_by=F("requested_by"))
    assert ChangeRequest.objects.get(pk=pending.pk).decided_by is None


def test_requester_who_later_becomes_an_approver_still_cannot_approve_their_request(
    pending: ChangeRequest, operator: User, as_: Callable[[str], Client]
) -> None:
    operator.groups.add(Group.objects.get(name=APPROVER))
    response = post(as_("operator"), f"/api/change-requests/{pending.pk}/approve/")
    assert response.status_code == 403
    assert ChangeRequest.objects.get(pk=pending.pk).status == "pending"


@pytest.mark.parametrize(
    ("persona", "allowed"), [("viewer", False), ("operator", False), ("approver", False), ("admin_user", True)]
)
def test_only_admins_set_a_hosts_cpu_partition(
    persona: str, allowed: bool, fleet_hosts: list[Host], as_: Callable[[str], Client]
) -> None:
    host = fleet_hosts[0]
    response = as_(persona).post(f"/api/hosts/{host.pk}/partition/", {"housekeeping_cpus": "0"})
    assert response.status_code == (200 if allowed else 403), response.content
    assert Host.objects.get(pk=host.pk).housekeeping_cpus == ("0" if allowed else "")


def _make_applied(cr: ChangeRequest) -> None:
    """Mark a request as applied with a snapshot, without running the worker: only the permission is tested."""
    ChangeRequest.objects.filter(pk=cr.pk).update(status=ChangeRequest.Status.APPLIED)
    cr.targets.update(status=ChangeTarget.Status.APPLIED, before={"live": {}, "config": None, "config_xml": None})
