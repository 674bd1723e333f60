"""One clock in a real browser whose zone is Europe/Berlin: the approve and apply times on the change page, the
audit page and the guest page are shown in Berlin time, labelled, and the same instant reads the same everywhere.

Everything is real: Daphne, the Celery worker applying the request, the libvirt fleet, Redis and Debian's
Chromium with ``timezone_id="Europe/Berlin"``; the user never chose a zone, so it comes from the browser.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import zoneinfo
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from django.contrib.auth.models import User

from hosts.harness.fleet import Fleet
from hosts.models import Domain, Host, UserSettings
from tests.conftest import ARTIFACTS, CHROMIUM_ARGS, wait_for
from tests.test_live_charts_e2e import _api, _token

pytestmark = [pytest.mark.fleet, pytest.mark.django_db(transaction=True)]
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
TIME = re.compile(r'<time datetime="([^"]+)" title="([^"]+)">([^<]+)</time>')


@contextlib.contextmanager
def berlin_page(base: str, user: User) -> Iterator[Any]:
    """Debian's Chromium in the Europe/Berlin zone, logged in as ``user`` through the login form."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(timezone_id="Europe/Berlin", viewport={"width": 1280, "height": 1400})
            page = context.new_page()
            page.goto(f"{base}/accounts/login/")
            page.fill("input[name=username]", user.username)
            page.fill("input[name=password]", f"{user.username}-pass-123")
            page.click("button[type=submit], input[type=submit]")
            page.wait_for_url(lambda url: "/accounts/login/" not in url)
            yield page
        finally:
            browser.close()


def _berlin(iso: str) -> datetime:
    return datetime.fromisoformat(iso).astimezone(BERLIN)


def _times(html: str) -> list[tuple[datetime, str, str]]:
    """Every labelled time on a page: the instant, its tooltip and the text shown."""
    return [(_berlin(iso), title, text) for iso, title, text in TIME.findall(html)]


def _assert_shown_in_berlin(html: str) -> None:
    for moment, title, text in _times(html):
        if text.endswith(" ago"):  # "5 minutes ago", with the labelled moment as its tooltip
            assert title == moment.strftime("%Y-%m-%d %H:%M:%S ") + (moment.tzname() or ""), title
            continue
        assert title.startswith("Europe/Berlin, UTC+0"), title
        assert text.startswith(moment.strftime("%Y-%m-%d %H:%M")) or text.startswith(moment.strftime("%H:%M:%S"))
        assert text.endswith(f" {moment.tzname()}"), text


def test_a_berlin_browser_sees_approve_and_apply_times_in_berlin_time_everywhere(
    fleet: Fleet,
    fleet_hosts: list[Host],
    web_server: str,
    celery_worker: subprocess.Popen[bytes],
    viewer: User,
    operator: User,
    approver: User,
) -> None:
    guest = Domain.objects.get(host=fleet_hosts[0], name=f"{fleet.prefix}1-web")
    tokens = {"operator": _token(operator), "approver": _token(approver)}
    profile = _api(
        web_server, tokens["operator"], "/api/profiles/", {"name": "weights", "content": {"sched": {"cpu_shares": 700}}}
    )
    change = _api(
        web_server,
        tokens["operator"],
        "/api/change-requests/",
        {"profile": profile["id"], "domains": [guest.pk], "scope": "live", "reason": "weights"},
    )
    _api(web_server, tokens["approver"], f"/api/change-requests/{change['id']}/approve/", {"comment": "ok"})
    detail = wait_for(
        lambda: (
            (d := _api(web_server, tokens["operator"], f"/api/change-requests/{change['id']}/"))["status"] == "applied"
            and d
        ),
        60,
        0.5,
        "the request to be applied",
    )
    assert isinstance(detail, dict)
    decided = _berlin(detail["decided_at"].replace("Z", "+00:00"))
    decided_text = decided.strftime("%Y-%m-%d %H:%M:%S ") + decided.tzname()

    with berlin_page(web_server, viewer) as page:
        assert page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone") == "Europe/Berlin"
        page.goto(f"{web_server}/changes/{change['id']}/")
        assert page.get_attribute("body", "data-time-zone") == "Europe/Berlin"
        change_page = page.content()
        _assert_shown_in_berlin(change_page)
        assert f"approved by <strong>{approver.username}</strong>, " in change_page
        assert decided_text in change_page  # the approval, in Berlin time, labelled
        started = re.search(r"started <time[^>]*>([^<]+)</time>", change_page)
        assert started and started.group(1).endswith((" CET", " CEST"))
        page.screenshot(path=str(ARTIFACTS / "time-zone-change.png"), full_page=True)

        page.goto(f"{web_server}/audit/?change_request={change['id']}")
        audit_page = page.content()
        _assert_shown_in_berlin(audit_page)
        shown = [text for _moment, _title, text in _times(audit_page)]
        # The approval's audit row is within a second of the request's decision time, in the same clock.
        approved_at = [m for m, _t, text in _times(audit_page) if abs((m - decided).total_seconds()) < 2]
        assert approved_at, (decided_text, shown)

        page.goto(f"{web_server}{guest.get_absolute_url()}")
        assert page.get_attribute("body", "data-time-zone") == "Europe/Berlin"
        _assert_shown_in_berlin(page.content())

    settings = UserSettings.objects.get(user=viewer)  # taken from the browser, once
    assert (settings.time_zone, settings.time_zone_source) == ("Europe/Berlin", "browser")
