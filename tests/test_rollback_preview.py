"""The rollback preview reads the guests from their hosts now, within deadlines, and is only for approvers.

A host that never answers (a black-hole TCP listener registered as a host) is reported for its guests as
not answering, within its deadline, while the other hosts' guests are previewed as usual: never a 500."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from django.contrib.auth.models import User
from django.test import Client

from hosts.inventory import create_host
from hosts.libvirt import deadlines
from hosts.models import ChangeRequest, ChangeTarget, Domain, Host, PinProfile, PinProfileRevision
from tests.conftest import ARTIFACTS, logged_in_page
from tests.test_faults import BlackHole

pytestmark = [pytest.mark.fleet, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def black_hole(db: None) -> Iterator[Host]:
    hole = BlackHole()
    try:
        yield create_host(name="preview-hole", uri=f"qemu+tcp://127.0.0.1:{hole.port}/system", actor=None)
    finally:
        hole.close()


def _applied_request(operator: User, targets: list[tuple[Host, str, uuid.UUID]]) -> ChangeRequest:
    """A live request recorded as applied to these guests (vcpu_quota -1 -> 50000)."""
    profile = PinProfile.objects.create(name=f"cap-{uuid.uuid4().hex[:6]}")
    revision = PinProfileRevision.objects.create(profile=profile, number=1, content={"sched": {"vcpu_quota": 50000}})
    cr = ChangeRequest.objects.create(
        profile_revision=revision, scope="live", reason="r", requested_by=operator, status=ChangeRequest.Status.APPLIED
    )
    for host, name, domain_uuid in targets:
        ChangeTarget.objects.create(
            change_request=cr,
            host=host,
            domain=Domain.objects.filter(uuid=domain_uuid).first(),
            domain_uuid=domain_uuid,
            domain_name=name,
            desired={"sched": {"vcpu_quota": 50000}},
            before={"state": "running", "live": {"sched": {"vcpu_quota": -1}}, "config": None},
            after={"state": "running", "live": {"sched": {"vcpu_quota": 50000}}, "config": None},
            status=ChangeTarget.Status.APPLIED,
        )
    return cr


def test_a_host_that_does_not_answer_is_shown_as_such_and_the_others_are_previewed(
    fleet_hosts: list[Host],
    black_hole: Host,
    operator: User,
    approver: User,
    login: Callable[[User], Client],
) -> None:
    real = Domain.objects.get(name__endswith="1-web")
    cr = _applied_request(operator, [(real.host, real.name, real.uuid), (black_hole, "lost-guest", uuid.uuid4())])
    ap = login(approver)
    began = time.monotonic()
    response = ap.get(f"/api/change-requests/{cr.pk}/rollback-preview/")
    took = time.monotonic() - began
    assert response.status_code == 200, response.content
    assert took < deadlines.host_seconds(1) + 5, f"the preview waited {took:.1f} s for the black hole"
    guests = {g["domain_name"]: g for g in response.json()["guests"]}
    lost = guests["lost-guest"]
    assert not lost["answered"] and "did not answer" in lost["error"] and lost["restore"] == []
    # The real guest was read: it never held 50000 (the request is made up), so there is nothing to put back;
    # its value now is either its value from before (-1) or a conflict.
    ok = guests[real.name]
    assert ok["answered"] and ok["error"] == "" and ok["restore"] == []
    assert [c["field"] for c in ok["conflicts"] + ok["already"]] == ["vcpu_quota"]

    page = ap.get(f"/changes/{cr.pk}/rollback/")
    assert page.status_code == 200
    assert "Host not answering" in page.content.decode()
    assert ChangeRequest.objects.get(pk=cr.pk).status == "applied"  # read-only: nothing was asked
    assert not cr.jobs.exists()


def test_only_approvers_see_the_preview_and_unknown_requests_are_not_found(
    fleet_hosts: list[Host],
    viewer: User,
    operator: User,
    approver: User,
    login: Callable[[User], Client],
) -> None:
    real = Domain.objects.get(name__endswith="2-web")
    cr = _applied_request(operator, [(real.host, real.name, real.uuid)])
    for user in (viewer, operator):
        assert login(user).get(f"/api/change-requests/{cr.pk}/rollback-preview/").status_code == 403
        assert login(user).get(f"/changes/{cr.pk}/rollback/").status_code == 403
    ap = login(approver)
    for bad in (0, 2**63, 999999):
        assert ap.get(f"/api/change-requests/{bad}/rollback-preview/").status_code == 404
    ChangeRequest.objects.filter(pk=cr.pk).update(status=ChangeRequest.Status.PENDING)
    body = ap.get(f"/api/change-requests/{cr.pk}/rollback-preview/").json()
    assert body["can_roll_back"] is False
    assert "cannot be rolled back" in ap.get(f"/changes/{cr.pk}/rollback/").content.decode()


OVERFLOW = "() => document.scrollingElement.scrollWidth - window.innerWidth"


@pytest.mark.parametrize("width", [390, 1440])
def test_the_confirmation_and_result_pages_fit_a_phone_and_a_desktop_in_chromium(
    width: int, fleet_hosts: list[Host], web_server: str, operator: User, approver: User
) -> None:
    real = Domain.objects.get(name__endswith="3-web")
    cr = _applied_request(operator, [(real.host, real.name, real.uuid)])
    done = _applied_request(operator, [(real.host, real.name, real.uuid)])
    target = done.targets.get()
    fields = [
        {
            "scope": "live",
            "field": "cpu_shares",
            "wrote": 512,
            "now": 512,
            "restore_to": 1024,
            "action": "restore",
            "why": "",
        },
        {
            "scope": "live",
            "field": "vcpu_quota",
            "wrote": 50000,
            "now": 30000,
            "restore_to": -1,
            "action": "conflict",
            "why": "changed since outside this request (by hand or another tool)",
        },
    ]
    target.after = {**(target.after or {}), "rollback": {"finished_at": "2026-01-01T10:00:00+00:00", "fields": fields}}
    target.status = ChangeTarget.Status.ROLLED_BACK
    target.save()
    ChangeRequest.objects.filter(pk=done.pk).update(status=ChangeRequest.Status.ROLLED_BACK, rolled_back_by=approver)
    shots = ARTIFACTS / "screens"
    shots.mkdir(parents=True, exist_ok=True)
    with logged_in_page(web_server, approver) as page:
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{web_server}/changes/{cr.pk}/rollback/")
        assert page.locator("[data-rollback-summary]").is_visible()
        assert page.evaluate(OVERFLOW) <= 0, "the rollback confirmation scrolls sideways"
        page.screenshot(path=str(shots / f"rollback-confirm-{width}.png"), full_page=True)
        page.goto(f"{web_server}/changes/{done.pk}/")
        result = page.locator("[data-rollback-result]")
        assert result.is_visible() and "left as it was" in result.inner_text()
        assert page.evaluate(OVERFLOW) <= 0, "the rolled-back request's page scrolls sideways"
        page.screenshot(path=str(shots / f"rollback-result-{width}.png"), full_page=True)
