"""One clock: pages in the user's time zone (from the browser until chosen), always labelled; the apply-at field
entered in that zone; the API in UTC with an explicit offset."""

from __future__ import annotations

import re
import zoneinfo
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import User
from django.template import Context, Template
from django.test import Client
from django.utils import timezone

from hosts.changes.requests import create_change_request
from hosts.models import ChangeRequest, UserSettings
from hosts.planning.profiles import create_profile
from tests.rows_fixtures import host_with_guest

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
pytestmark = pytest.mark.django_db


def _client(user: User, zone: str | None = None) -> Client:
    client = Client()
    client.force_login(user)
    if zone is not None:
        client.cookies["isoweb_browser_tz"] = zone
    return client


def _request(operator: User) -> ChangeRequest:
    guest = host_with_guest({"sched": {"cpu_shares": 1024}})
    profile = create_profile(name="weights", description="", content={"sched": {"cpu_shares": 512}}, actor=operator)
    return create_change_request(
        revision=profile.revisions.get(), domain_ids=[guest.pk], scope="live", reason="weights", actor=operator
    )


def test_a_user_without_a_zone_gets_the_browsers_recorded_once(viewer: User) -> None:
    page = _client(viewer, "Europe/Berlin").get("/settings/").content.decode()
    assert 'data-time-zone="Europe/Berlin"' in page
    row = UserSettings.objects.get(user=viewer)
    assert (row.time_zone, row.time_zone_source) == ("Europe/Berlin", "browser")
    # A later browser elsewhere does not move a recorded zone.
    assert 'data-time-zone="Europe/Berlin"' in _client(viewer, "Asia/Tokyo").get("/settings/").content.decode()


def test_a_cookie_that_is_no_zone_is_ignored(viewer: User) -> None:
    page = _client(viewer, "Mars/Olympus").get("/settings/").content.decode()
    assert 'data-time-zone="UTC"' in page and 'data-time-zone-source="default"' in page
    assert not UserSettings.objects.filter(user=viewer).exists()


def test_the_settings_page_sets_the_zone_and_refuses_unknown_names(viewer: User) -> None:
    client = _client(viewer, "Europe/Berlin")
    assert client.post("/settings/", {"time_zone": "America/New_York"}).status_code == 302
    assert UserSettings.objects.get(user=viewer).time_zone == "America/New_York"
    assert UserSettings.objects.get(user=viewer).time_zone_source == "chosen"
    refused = client.post("/settings/", {"time_zone": "Europe/Atlantis"})
    assert refused.status_code == 400
    assert "Europe/Atlantis is not one of the available choices" in refused.content.decode()
    assert UserSettings.objects.get(user=viewer).time_zone == "America/New_York"
    # Back to the browser's zone with one button.
    assert client.post("/settings/", {"use_browser": "1"}).status_code == 302
    assert UserSettings.objects.get(user=viewer).time_zone == "Europe/Berlin"


def test_the_when_filter_shows_the_moment_in_the_active_zone_with_its_name() -> None:
    moment = datetime(2026, 12, 2, 6, 54, 48, tzinfo=UTC)
    with timezone.override(BERLIN):
        html = Template("{% load clock %}{{ t|when }}").render(Context({"t": moment}))
    assert ">2026-12-02 07:54:48 CET</time>" in html
    assert 'datetime="2026-12-02T06:54:48+00:00"' in html
    summer = datetime(2026, 7, 1, 6, 0, tzinfo=UTC)
    with timezone.override(BERLIN):
        assert ">2026-07-01 08:00 CEST</time>" in Template('{% load clock %}{{ t|when:"minute" }}').render(
            Context({"t": summer})
        )


def test_the_change_page_shows_its_times_in_the_users_zone_labelled(operator: User, viewer: User) -> None:
    cr = _request(operator)
    UserSettings.objects.create(user=viewer, time_zone="Europe/Berlin", time_zone_source="chosen")
    page = _client(viewer).get(f"/changes/{cr.pk}/").content.decode()
    created = cr.created_at.astimezone(BERLIN)
    label = created.strftime("%Y-%m-%d %H:%M:%S ") + created.tzname()
    assert label in page
    shown = re.findall(r'<time datetime="([^"]+)" title="([^"]+)">([^<]+)</time>', page)
    assert shown, "times are shown in <time> elements"
    for iso, title, text in shown:
        assert title.startswith("Europe/Berlin, UTC+0")
        assert text.endswith(("CET", "CEST"))
        moment = datetime.fromisoformat(iso).astimezone(BERLIN)
        assert text.startswith(moment.strftime("%Y-%m-%d %H:%M"))


def test_apply_at_is_entered_in_the_users_zone(operator: User) -> None:
    UserSettings.objects.create(user=operator, time_zone="Europe/Berlin", time_zone_source="chosen")
    guest = host_with_guest({"sched": {"cpu_shares": 1024}})
    profile = create_profile(name="later", description="", content={"sched": {"cpu_shares": 512}}, actor=operator)
    client = _client(operator)
    form = client.get("/changes/new/").content.decode()
    assert "Apply at (Europe/Berlin)" in form
    data = {
        "profile_revision": profile.revisions.get().pk,
        "domains": [guest.pk],
        "scope": "live",
        "reason": "later",
        "apply_at": "2030-06-01T10:00",
        "action": "preview",
    }
    preview = client.post("/changes/new/", data)
    assert preview.status_code == 200
    fingerprint = re.search(r'name="previewed" value="([^"]+)"', preview.content.decode())
    assert fingerprint and fingerprint.group(1)
    answer = client.post("/changes/new/", {**data, "action": "submit", "previewed": fingerprint.group(1)})
    assert answer.status_code == 302, answer.content.decode()[:2000]
    cr = ChangeRequest.objects.get()
    assert cr.apply_at == datetime(2030, 6, 1, 8, 0, tzinfo=UTC)  # 10:00 CEST
    assert "2030-06-01 10:00 CEST" in client.get(f"/changes/{cr.pk}/").content.decode()


def test_the_api_answers_in_utc_with_an_offset_whoever_asks(operator: User, viewer: User) -> None:
    cr = _request(operator)
    UserSettings.objects.create(user=viewer, time_zone="Asia/Tokyo", time_zone_source="chosen")
    body = _client(viewer).get(f"/api/change-requests/{cr.pk}/").json()
    created = body["created_at"]
    assert created.endswith("Z") or created.endswith("+00:00")
    assert datetime.fromisoformat(created.replace("Z", "+00:00")) == cr.created_at
