"""The four-eyes flow through the pages: an operator writes a profile and proposes it (preview, then
submit), an approver approves it, the real Celery worker applies it, and the page shows the result."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client

from hosts.harness.fleet import Fleet
from hosts.models import ChangeRequest, Domain, Host, PinProfile
from tests.conftest import virsh, wait_for

pytestmark = [pytest.mark.fleet, pytest.mark.django_db(transaction=True)]


def _form_value(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no {name} field on the page"
    return match.group(1)


def test_profile_proposal_approval_and_apply_through_the_pages(
    fleet: Fleet,
    fleet_hosts: list[Host],
    celery_worker: subprocess.Popen[bytes],
    operator: User,
    approver: User,
    login: Callable[[User], Client],
) -> None:
    op, ap = login(operator), login(approver)
    dom = Domain.objects.get(name=f"{fleet.prefix}3-db")

    refused = op.post("/profiles/new/", {"name": "bad", "sched_vcpu_quota": "0"})
    assert refused.status_code == 400 and "leave unset" in refused.content.decode()
    assert not PinProfile.objects.exists()

    created = op.post(
        "/profiles/new/",
        {
            "name": "quota-40",
            "description": "cap vCPUs at 40 %",
            "sched_vcpu_period": "100000",
            "sched_vcpu_quota": "40000",
        },
    )
    assert created.status_code == 302, created.content.decode()[:2000]
    revision = PinProfile.objects.get(name="quota-40").latest_revision
    assert revision.content == {"sched": {"vcpu_period": 100000, "vcpu_quota": 40000}}

    form = {"profile_revision": revision.pk, "domains": [dom.pk], "scope": "live", "reason": "noisy neighbour"}
    preview = op.post("/changes/new/", form)
    page = preview.content.decode()
    assert preview.status_code == 200 and "40000" in page and not ChangeRequest.objects.exists()
    submitted = op.post("/changes/new/", {**form, "previewed": _form_value(page, "previewed"), "action": "submit"})
    assert submitted.status_code == 302
    cr = ChangeRequest.objects.get()
    detail = op.get(f"/changes/{cr.pk}/").content.decode()
    assert "someone else must approve" in detail.lower()
    assert op.post(f"/changes/{cr.pk}/approve/", {"comment": "mine"}).status_code == 403

    approved = ap.post(f"/changes/{cr.pk}/approve/", {"comment": "go"})
    assert approved.status_code == 302
    wait_for(lambda: ChangeRequest.objects.get(pk=cr.pk).status == "applied", 90, 0.5, what="applied")
    assert "vcpu_quota     : 40000" in virsh(dom.host.uri, "schedinfo", dom.name, "--live")
    final = ap.get(f"/changes/{cr.pk}/").content.decode()
    assert "Applied" in final and "Roll back" in final
    virsh(dom.host.uri, "schedinfo", dom.name, "--live", "vcpu_quota=-1")
