"""Human units where the approver decides: "unlimited", "50% of one CPU (20 ms per 40 ms)", shares as weights,
and a cap typed as a percentage stored with the period it was worked out against."""

from __future__ import annotations

import html
import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client

from hosts import units
from hosts.changes.requests import create_change_request
from hosts.forms.profiles import ProfileForm
from hosts.planning.profiles import create_profile
from tests.rows_fixtures import host_with_guest

UNCAPPED = {"vcpupin": {"0": "0-3", "1": "0-3"}, "sched": {"cpu_shares": 1024, "vcpu_period": 100000, "vcpu_quota": -1}}


def _text(page: str) -> str:
    """The page's text with tags dropped and white space folded, as a person reads it."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", page)))


def test_a_quota_is_said_with_its_period_as_a_share_of_one_cpu() -> None:
    assert units.cap(20000, 40000) == "50% of one CPU (20 ms per 40 ms)"
    assert units.cap(12500, 100000) == "12.5% of one CPU (12.5 ms per 100 ms)"
    assert units.cap(250000, 1000000) == "25% of one CPU (250 ms per 1 s)"


def test_unlimited_and_unset_quotas_say_so() -> None:
    assert units.cap(-1, 100000) == "unlimited"
    assert units.cap(0, 0, config=True) == "not set (unlimited)"
    assert units.cap(None, 100000) == "—"


def test_a_quota_without_a_period_names_the_period_it_is_measured_against() -> None:
    assert units.cap(50000, None) == "50% of one CPU (50 ms per 100 ms, libvirt's default period)"
    profile_words = units.cap(50000, None, guest_period=True)
    assert profile_words.startswith("50 ms per each guest's own period")


def test_shares_are_plain_numbers_with_a_word_about_relative_weight() -> None:
    text = units.shares(2048)
    assert text.startswith("2048 ")
    assert "relative weight" in text
    assert units.sched_value("vcpu_period", 40000) == "40 ms"


def test_a_diff_words_a_quota_with_the_guests_period_when_the_profile_sets_none() -> None:
    rows = [{"field": "vcpu_quota", "current": -1, "desired": 20000, "changes": True}]
    [row] = units.describe_diff_part("live", rows, {"vcpu_period": 40000, "vcpu_quota": -1})
    assert row["current_text"] == "unlimited"
    assert row["desired_text"] == "50% of one CPU (20 ms per 40 ms)"


def test_a_diff_words_a_quota_with_the_period_the_profile_sets() -> None:
    rows = [
        {"field": "vcpu_period", "current": 40000, "desired": 100000, "changes": True},
        {"field": "vcpu_quota", "current": 20000, "desired": 20000, "changes": False},
    ]
    period, quota = units.describe_diff_part("live", rows, {"vcpu_period": 40000, "vcpu_quota": 20000})
    assert period["desired_text"] == "100 ms"
    assert quota["current_text"] == "50% of one CPU (20 ms per 40 ms)"
    assert quota["desired_text"] == "20% of one CPU (20 ms per 100 ms)"


def test_a_cap_typed_as_a_percentage_stores_its_period_too() -> None:
    form = ProfileForm({"name": "half", "percent_vcpu_quota": "50"})
    assert form.is_valid(), form.errors
    assert form.content() == {"sched": {"vcpu_period": 100000, "vcpu_quota": 50000}}
    # With a period given, the percentage is worked out against that one.
    form = ProfileForm({"name": "half", "percent_vcpu_quota": "50", "sched_vcpu_period": "40000"})
    assert form.is_valid(), form.errors
    assert form.content() == {"sched": {"vcpu_period": 40000, "vcpu_quota": 20000}}


def test_a_quota_typed_in_microseconds_keeps_the_guests_period() -> None:
    form = ProfileForm({"name": "raw", "sched_vcpu_quota": "20000"})
    assert form.is_valid(), form.errors
    assert form.content() == {"sched": {"vcpu_quota": 20000}}


@pytest.mark.django_db
def test_the_change_form_preview_and_the_requests_diff_say_unlimited_and_the_share(
    operator: User, approver: User, login: Callable[[User], Client]
) -> None:
    guest = host_with_guest(UNCAPPED)
    profile = create_profile(
        name="half-cpu", description="", content={"sched": {"vcpu_period": 40000, "vcpu_quota": 20000}}, actor=operator
    )
    revision = profile.revisions.get()
    preview = login(operator).post(
        "/changes/new/",
        {"profile_revision": revision.pk, "domains": [guest.pk], "scope": "live", "reason": "cap", "action": "preview"},
    )
    assert preview.status_code == 200
    page = _text(preview.content.decode())
    assert "unlimited" in page
    assert "50% of one CPU (20 ms per 40 ms)" in page
    assert "100 ms" in page and "40 ms" in page  # the period's own row, current -> desired

    cr = create_change_request(
        revision=revision, domain_ids=[guest.pk], scope="live", reason="cap the guest", actor=operator
    )
    detail = _text(login(approver).get(f"/changes/{cr.pk}/").content.decode())
    assert "unlimited" in detail
    assert "50% of one CPU (20 ms per 40 ms)" in detail


@pytest.mark.django_db
def test_the_guest_page_and_the_profile_page_word_caps_and_shares(
    operator: User, viewer: User, login: Callable[[User], Client]
) -> None:
    guest = host_with_guest({"sched": {"cpu_shares": 512, "vcpu_period": 40000, "vcpu_quota": 20000}})
    page = _text(login(viewer).get(guest.get_absolute_url()).content.decode())
    assert "50% of one CPU (20 ms per 40 ms)" in page
    assert "512 (relative weight" in page

    profile = create_profile(
        name="quota-only", description="", content={"sched": {"vcpu_quota": 50000}}, actor=operator
    )
    page = _text(login(viewer).get(profile.get_absolute_url()).content.decode())
    assert "50 ms per each guest's own period (50% of one CPU at the default 100 ms)" in page
