"""The profiles API: a stored revision never changes (editing adds one, and change requests keep the one they
were made from), and invalid content is refused with errors that name the field, saving nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from hosts.models import AuditEvent, ChangeRequest, Domain, Host, PinProfile, PinProfileRevision

pytestmark = [pytest.mark.fleet, pytest.mark.django_db]

R1 = {"sched": {"vcpu_period": 100000, "vcpu_quota": 50000}}
R2 = {"sched": {"vcpu_period": 100000, "vcpu_quota": 20000, "emulator_quota": 10000}}

INVALID = [
    ({"sched": {"vcpu_quota": 0}}, "sched.vcpu_quota"),
    ({"sched": {"vcpu_period": 999}}, "sched.vcpu_period"),
    ({"sched": {"cpu_shares": 1}}, "sched.cpu_shares"),
    ({"sched": {"global_period": 100000, "global_quota": 10000, "vcpu_quota": 50000}}, "sched.global_quota"),
    ({"vcpupin": {"strategy": "pool", "cpus": "1-0"}}, "vcpupin.cpus"),
    ({"vcpupin": {"strategy": "explicit", "cpus": {"0": "0,,1"}}}, "vcpupin.cpus.0"),
    ({"emulatorpin": {"strategy": "cpulist", "cpus": "^1-2"}}, "emulatorpin.cpus"),
    ({"iothreadpin": {"strategy": "bogus"}}, "iothreadpin.strategy"),
]


def post(client: Client, url: str, data: dict[str, Any]) -> Any:
    return client.post(url, data, content_type="application/json")


def put(client: Client, url: str, data: dict[str, Any]) -> Any:
    return client.put(url, data, content_type="application/json")


def test_editing_a_profile_adds_a_revision_and_change_requests_keep_the_first(
    fleet_hosts: list[Host], operator: User, login: Callable[[User], Client]
) -> None:
    op = login(operator)
    created = post(op, "/api/profiles/", {"name": "cap", "description": "half a CPU", "content": R1})
    assert created.status_code == 201, created.content
    profile_id = created.json()["id"]
    r1 = PinProfileRevision.objects.get(profile_id=profile_id, number=1)
    domain = Domain.objects.filter(state="running", name__endswith="1-web").get()
    cr = post(
        op,
        "/api/change-requests/",
        {"profile": profile_id, "domains": [domain.pk], "scope": "live", "reason": "cap"},
    )
    assert cr.status_code == 201, cr.content

    edited = put(op, f"/api/profiles/{profile_id}/", {"name": "cap", "content": R2, "comment": "tighter"})
    assert edited.status_code == 200, edited.content
    body = edited.json()
    assert [r["number"] for r in body["revisions"]] == [2, 1]
    assert body["latest"]["number"] == 2 and body["latest"]["content"]["sched"]["vcpu_quota"] == 20000
    assert body["revisions"][1]["content"] == r1.content
    assert (
        PinProfileRevision.objects.get(pk=r1.pk).content
        == r1.content
        == {"sched": {"vcpu_period": 100000, "vcpu_quota": 50000}}
    )

    kept = op.get(f"/api/change-requests/{cr.json()['id']}/").json()
    assert kept["profile_revision"] == r1.pk and kept["revision_number"] == 1
    assert kept["results"][0]["desired"] == {"sched": {"vcpu_period": 100000, "vcpu_quota": 50000}}
    later = post(
        op, "/api/change-requests/", {"profile": profile_id, "domains": [domain.pk], "scope": "live", "reason": "new"}
    )
    assert later.status_code == 201 and later.json()["revision_number"] == 2, later.content


def test_a_profile_cannot_be_renamed_or_edited_without_content(operator: User, login: Callable[[User], Client]) -> None:
    op = login(operator)
    profile_id = post(op, "/api/profiles/", {"name": "cap", "content": R1}).json()["id"]
    renamed = put(op, f"/api/profiles/{profile_id}/", {"name": "other", "content": R2})
    assert renamed.status_code == 400 and "name" in renamed.json(), renamed.content
    empty = op.patch(f"/api/profiles/{profile_id}/", {"description": "x"}, content_type="application/json")
    assert empty.status_code == 400 and "content" in empty.json(), empty.content
    assert PinProfile.objects.get().name == "cap"
    assert PinProfileRevision.objects.filter(profile_id=profile_id).count() == 1


def test_revisions_have_no_endpoint_that_changes_them(operator: User, login: Callable[[User], Client]) -> None:
    op = login(operator)
    profile_id = post(op, "/api/profiles/", {"name": "cap", "content": R1}).json()["id"]
    assert op.delete(f"/api/profiles/{profile_id}/").status_code == 405
    assert PinProfileRevision.objects.get(profile_id=profile_id).content == R1


@pytest.mark.parametrize(("content", "field"), INVALID, ids=[f for _, f in INVALID])
def test_invalid_new_profile_is_refused_naming_the_field_and_saves_nothing(
    content: dict[str, Any], field: str, operator: User, login: Callable[[User], Client]
) -> None:
    response = post(login(operator), "/api/profiles/", {"name": "bad", "content": content})
    assert response.status_code == 400, response.content
    errors = response.json()["content"]
    assert field in errors, errors
    assert all(field in message for message in errors[field]), errors[field]
    assert not PinProfile.objects.exists() and not PinProfileRevision.objects.exists()
    assert not AuditEvent.objects.filter(action="profile.create").exists()


@pytest.mark.parametrize(("content", "field"), INVALID[:3], ids=[f for _, f in INVALID[:3]])
def test_invalid_edit_is_refused_naming_the_field_and_adds_no_revision(
    content: dict[str, Any], field: str, operator: User, login: Callable[[User], Client]
) -> None:
    op = login(operator)
    profile_id = post(op, "/api/profiles/", {"name": "cap", "content": R1}).json()["id"]
    response = put(op, f"/api/profiles/{profile_id}/", {"name": "cap", "content": content})
    assert response.status_code == 400 and field in response.json()["content"], response.content
    assert list(PinProfileRevision.objects.filter(profile_id=profile_id).values_list("content", flat=True)) == [R1]
    assert not AuditEvent.objects.filter(action="profile.revise").exists()


def test_change_request_with_an_invalid_plan_is_refused_and_saves_nothing(
    fleet_hosts: list[Host], operator: User, login: Callable[[User], Client]
) -> None:
    """CPU 7 does not exist on the fleet's two-CPU hosts: the plan names the field and nothing is stored."""
    op = login(operator)
    content = {"emulatorpin": {"strategy": "cpulist", "cpus": "7"}}
    profile_id = post(op, "/api/profiles/", {"name": "far", "content": content}).json()["id"]
    domain = Domain.objects.filter(state="running", name__endswith="1-web").get()
    response = post(
        op, "/api/change-requests/", {"profile": profile_id, "domains": [domain.pk], "scope": "live", "reason": "x"}
    )
    assert response.status_code == 400, response.content
    (plan,) = response.json()["plan"]
    assert plan["errors"][0]["field"] == "emulatorpin.cpus" and "CPU 7" in plan["errors"][0]["message"]
    assert not ChangeRequest.objects.exists()
    assert not AuditEvent.objects.filter(action="change.create").exists()
