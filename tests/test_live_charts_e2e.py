"""End to end in headless Chromium: the burner's chart shows 100 %, then 20 % after an approved cap.

Everything is real: Daphne serving the app on a loopback port, the collector as its own process, the Celery
worker applying the change request, the libvirt fleet, Redis, and Debian's Chromium driven by Playwright.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User

from hosts.accounts import issue_token
from hosts.harness.fleet import Fleet
from hosts.inventory import sync_host
from hosts.models import Domain, Host
from tests.conftest import ARTIFACTS, _stop, logged_in_page, spawn, virsh, wait_for

pytestmark = [pytest.mark.fleet, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def collector(fleet_hosts: list[Host], redis_server: str) -> Iterator[subprocess.Popen[bytes]]:
    """The stats collector as its own process, as the Procfile runs it."""
    proc, log = spawn("collector", [sys.executable, "manage.py", "collect_stats"])
    try:
        time.sleep(1)
        assert proc.poll() is None, "the collector exited at start; see artifacts/charts/collector.log"
        yield proc
    finally:
        _stop(proc)
        log.close()


@pytest.fixture
def burner(fleet: Fleet, fleet_hosts: list[Host]) -> Iterator[Domain]:
    member = fleet.host(0)
    name = f"{fleet.prefix}1-burn"
    virsh(member.uri, "start", name)
    try:
        # The change-request planner works from the inventory: let it learn that the burner now runs.
        assert sync_host(fleet_hosts[0].pk).ok
        yield Domain.objects.get(host=fleet_hosts[0], name=name)
    finally:
        virsh(member.uri, "destroy", name)


def _token(user: User) -> str:
    return issue_token(user, actor=user).secret


def _api(base: str, token: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """Call the REST API over HTTP on the running server, as the token's user."""
    request = urllib.request.Request(  # noqa: S310 - our own loopback server
        f"{base}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Token {token}", "Content-Type": "application/json"},
        method="POST" if body is not None else "GET",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - our own loopback server
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{request.method} {path}: {exc.code} {exc.read()[:500]!r}") from exc


def test_the_burners_chart_shows_100_percent_then_20_after_an_approved_cap_with_a_marker(
    burner: Domain,
    web_server: str,
    collector: subprocess.Popen[bytes],
    celery_worker: subprocess.Popen[bytes],
    viewer: User,
    operator: User,
    approver: User,
) -> None:
    # Playwright's sync API runs an event loop in this thread, where Django refuses ORM calls: everything
    # from the database is read here, and the API is called over HTTP with tokens.
    tokens = {"operator": _token(operator), "approver": _token(approver), "viewer": _token(viewer)}
    guest_url = f"{web_server}{burner.get_absolute_url()}"

    with logged_in_page(web_server, viewer) as page:
        page.goto(guest_url)

        def latest() -> dict[str, Any]:
            raw = page.get_attribute("[data-latest]", "data-latest") or "{}"
            return json.loads(raw) if raw else {}

        def vcpu0() -> float | None:
            return latest().get("vcpu", {}).get("0")

        wait_for(lambda: (vcpu0() or 0) >= 90, 30, 0.5, "vCPU 0 near 100 % on the chart")
        assert vcpu0() is not None and vcpu0() <= 100  # type: ignore[operator]

        profile = _api(
            web_server,
            tokens["operator"],
            "/api/profiles/",
            {
                "name": "cap20",
                "description": "",
                "content": {"sched": {"vcpu_period": 100000, "vcpu_quota": 20000}},
            },
        )
        change = _api(
            web_server,
            tokens["operator"],
            "/api/change-requests/",
            {"profile": profile["id"], "domains": [burner.pk], "scope": "live", "reason": "cap the burner"},
        )
        assert change["status"] == "pending"
        _api(web_server, tokens["approver"], f"/api/change-requests/{change['id']}/approve/", {"comment": "ok"})
        wait_for(
            lambda: _api(web_server, tokens["viewer"], f"/api/change-requests/{change['id']}/")["status"] == "applied",
            60,
            0.5,
            "the change request to be applied",
        )
        applied_at = time.monotonic()
        wait_for(lambda: 10 <= (vcpu0() or 100) <= 30, 5, 0.25, "vCPU 0 near 20 % on the chart within 5 s")
        assert time.monotonic() - applied_at <= 5
        # Live: the cap arrived with the marker and is drawn from the marker's time on, not over the window.
        live_markers = json.loads(page.get_attribute("[data-latest]", "data-markers") or "[]")
        live_segments = json.loads(page.get_attribute("[data-latest]", "data-cap-segments") or "[]")
        assert live_markers[-1]["label"] == f"CR-{change['id']} applied", live_markers
        assert live_segments[-1]["caps"].get("vcpu") == 20.0 and live_segments[-1]["from"] == live_markers[-1]["t"]
        assert live_segments[0]["caps"] == {} or live_segments[0]["caps"].get("vcpu") != 20.0

        # The marker: pushed live by the apply engine, and in any case part of the chart's history, which a
        # reload must bring back at once together with the 100 % and the 20 % stretches.
        shown_before_reload = int(page.get_attribute("[data-live-root]", "data-rendered") or 0)
        assert shown_before_reload >= 3
        page.reload()
        wait_for(lambda: latest().get("vcpu"), 10, 0.25, "the chart to fill from history after a reload")
        markers = json.loads(page.get_attribute("[data-latest]", "data-markers") or "[]")
        assert any(m["kind"] == "change.applied" for m in markers), markers
        # The reloaded marker keeps the request's number, as the live one had it.
        applied = [m for m in markers if m["kind"] == "change.applied"][-1]
        assert applied["label"] == f"CR-{change['id']} applied", markers
        caps = json.loads(page.get_attribute("[data-latest]", "data-caps") or "{}")
        assert caps.get("vcpu") == 20.0
        # The cap line starts at the change that set it, not at the window's left edge.
        segments = json.loads(page.get_attribute("[data-latest]", "data-cap-segments") or "[]")
        assert segments and segments[-1]["caps"].get("vcpu") == 20.0 and segments[-1]["from"] == applied["t"]
        wait_for(
            lambda: int(page.get_attribute("[data-live-root]", "data-rendered") or 0) >= shown_before_reload,
            10,
            0.25,
            "the reloaded chart to show at least the frames it showed before",
        )
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.wait_for_timeout(1500)
        page.locator("[data-live-root]").screenshot(path=str(ARTIFACTS / "live-chart.png"))


def test_the_host_page_paints_each_cpus_load_on_the_cpu_map(
    burner: Domain,
    web_server: str,
    collector: subprocess.Popen[bytes],
    viewer: User,
) -> None:
    host_url = f"{web_server}{Host.objects.get(pk=burner.host_id).get_absolute_url()}"
    with logged_in_page(web_server, viewer) as page:
        page.goto(host_url)
        wait_for(lambda: page.locator(".cpumap .cpu .cpu-load").count() >= 1, 30, 0.5, "CPU load on the map")
        loads = page.locator(".cpumap .cpu .cpu-load").all_inner_texts()
        assert max(int(text.rstrip(" %")) for text in loads) >= 45  # the burner's CPU
        rendered = lambda: int(page.get_attribute("[data-live-root]", "data-rendered") or 0)  # noqa: E731
        wait_for(lambda: rendered() >= 4, 15, 0.5, "the host chart to draw several samples")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "live-host-cpumap.png"), full_page=True)
