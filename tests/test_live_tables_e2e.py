"""Live pages in a real browser: after an apply, the guest page's pinning, caps and live-vs-config tables change
without a reload, and an open change request page follows its request from pending to applied.

Everything is real: Daphne (pages, API, websockets), the Celery worker applying the change, the libvirt fleet,
Redis as the channel layer, and Debian's Chromium.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.db import connection

from hosts.harness.fleet import Fleet
from hosts.inventory import mark_host_down
from hosts.libvirt.errors import HostTimeout
from hosts.live import push
from hosts.models import Domain, Host
from tests.conftest import ARTIFACTS, logged_in_page, wait_for
from tests.test_live_charts_e2e import _api, _token

pytestmark = [pytest.mark.fleet, pytest.mark.django_db(transaction=True)]


def test_after_an_apply_the_guest_pages_tables_change_without_a_reload(
    fleet: Fleet,
    fleet_hosts: list[Host],
    web_server: str,
    celery_worker: subprocess.Popen[bytes],
    viewer: User,
    operator: User,
    approver: User,
) -> None:
    guest = Domain.objects.get(host=fleet_hosts[0], name=f"{fleet.prefix}1-web")
    assert (guest.tuning_live or {}).get("sched", {}).get("vcpu_quota", -1) <= 0  # not capped yet
    tokens = {"operator": _token(operator), "approver": _token(approver)}
    with logged_in_page(web_server, viewer) as page:
        page.goto(f"{web_server}{guest.get_absolute_url()}")
        wait_for(lambda: page.get_attribute("body", "data-live-tables") == "connected", 15, 0.2, "the live socket")
        page.evaluate("window.__sameDocument = true")  # gone if the page reloads
        caps_before = page.inner_text("#guest-caps")
        assert "20% of one CPU" not in caps_before

        profile = _api(
            web_server,
            tokens["operator"],
            "/api/profiles/",
            {
                "name": "cap-and-pin",
                "content": {
                    "vcpupin": {"strategy": "pool", "cpus": "1"},
                    "sched": {"vcpu_period": 100000, "vcpu_quota": 20000},
                },
            },
        )
        change = _api(
            web_server,
            tokens["operator"],
            "/api/change-requests/",
            {"profile": profile["id"], "domains": [guest.pk], "scope": "live", "reason": "cap and pin"},
        )
        request_page = page.context.browser.new_page()  # a second window, logged in as the same viewer
        request_page.goto(f"{web_server}/accounts/login/")
        request_page.fill("input[name=username]", viewer.username)
        request_page.fill("input[name=password]", f"{viewer.username}-pass-123")
        request_page.click("button[type=submit], input[type=submit]")
        request_page.wait_for_url(lambda url: "/accounts/login/" not in url)
        request_page.goto(f"{web_server}/changes/{change['id']}/")
        request_page.evaluate("window.__sameDocument = true")
        assert request_page.inner_text("#cr-status").startswith("Pending")

        _api(web_server, tokens["approver"], f"/api/change-requests/{change['id']}/approve/", {"comment": "ok"})
        wait_for(
            lambda: (
                _api(web_server, tokens["operator"], f"/api/change-requests/{change['id']}/")["status"] == "applied"
            ),
            60,
            0.5,
            "the request to be applied",
        )
        # The open request page follows: its status section now says Applied, with no reload.
        wait_for(
            lambda: "Applied" in request_page.inner_text("#cr-status"), 20, 0.25, "the request page to say Applied"
        )
        assert request_page.evaluate("window.__sameDocument === true")

        wait_for(lambda: "20% of one CPU (20 ms per 100 ms)" in page.inner_text("#guest-caps"), 15, 0.25, "the new cap")
        vcpupin = page.inner_text("#guest-vcpupin")
        live_config = page.inner_text("#guest-live-config")
        assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
        # Both vCPUs are pinned live to CPU 1 now: the pinning table and the side-by-side table say so.
        rows = page.eval_on_selector_all(
            "#guest-vcpupin tbody tr", "rs => rs.map(r => r.querySelectorAll('td')[1].textContent.trim())"
        )
        assert rows == ["1", "1"], (rows, vcpupin)
        assert "20% of one CPU (20 ms per 100 ms)" in live_config
        assert int(page.get_attribute("body", "data-live-refreshes") or 0) >= 1
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "live-tables-after-apply.png"), full_page=True)


def _in_thread(work: Callable[[], object]) -> None:
    """Run database work off the test's thread, where Playwright's sync API runs an event loop (Django refuses
    ORM calls from a thread with a running loop)."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if errors:
        raise errors[0]


def test_the_guest_page_shows_its_host_stop_answering_without_a_reload(
    fleet: Fleet, fleet_hosts: list[Host], web_server: str, redis_server: str, viewer: User
) -> None:
    host = fleet_hosts[1]
    guest = Domain.objects.get(host=host, name=f"{fleet.prefix}2-web")
    with logged_in_page(web_server, viewer) as page:
        page.goto(f"{web_server}{guest.get_absolute_url()}")
        wait_for(lambda: page.get_attribute("body", "data-live-tables") == "connected", 15, 0.2, "the live socket")
        page.evaluate("window.__sameDocument = true")
        assert "Up" in page.inner_text("#guest-facts")

        # What the collector does when a host stops answering: the inventory marks it, the collector tells the
        # open pages through the channel layer (hosts.live.push.status_text, the collector's own message).
        reason = f"{host.name} did not answer within 2 s"
        _in_thread(lambda: mark_host_down(host.pk, HostTimeout(reason)))
        publisher = push.Publisher()
        try:
            text = push.status_text(push.GUEST, guest.pk, up=False, reason=reason, since=time.time())
            publisher.send([(push.guest_group(guest.pk), text)])
        finally:
            publisher.close()
        wait_for(lambda: "Not answering" in page.inner_text("#guest-facts"), 15, 0.25, "the host shown not answering")
        assert page.evaluate("window.__sameDocument === true"), "the page was reloaded"
