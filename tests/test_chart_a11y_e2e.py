"""The live charts in a real browser: the user's time zone, keyboard-operable legends, a text alternative,
and foreign load on dedicated CPUs.

Real parts: Daphne serving the app, the stats collector as its own process, the libvirt fleet, Redis, and
Debian's Chromium through Playwright, with the browser's own time zone set per test (``timezone_id``).
The fleet's ``db`` guest holds host CPU 1 alone (vCPUs 0 and 1 pinned there, its emulator on CPU 0), so
its host's CPU 1 carries a foreign-load line.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User

from hosts.models import Domain, Host
from tests.conftest import ARTIFACTS, CHROMIUM_ARGS, _stop, spawn, wait_for

pytestmark = [pytest.mark.fleet, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def collector(fleet_hosts: list[Host], redis_server: str) -> Iterator[subprocess.Popen[bytes]]:
    proc, log = spawn("a11y-collector", [sys.executable, "manage.py", "collect_stats"])
    try:
        time.sleep(1)
        assert proc.poll() is None, "the collector exited at start; see a11y-collector.log"
        yield proc
    finally:
        _stop(proc)
        log.close()


@contextlib.contextmanager
def browser_page(base: str, user: User, zone: str, *, drop_page_zone: bool = False) -> Iterator[Any]:
    """Chromium with its clock in ``zone``, logged in as ``user``. ``drop_page_zone``: the page says no zone."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(timezone_id=zone, viewport={"width": 1280, "height": 1400})
            if drop_page_zone:
                # Runs before the page's own scripts, so the charts find no zone on <body>.
                context.add_init_script(
                    "document.addEventListener('DOMContentLoaded', function () {"
                    " delete document.body.dataset.timeZone; delete document.body.dataset.timeZoneSource; });"
                )
            page = context.new_page()
            page.goto(f"{base}/accounts/login/")
            page.fill("input[name=username]", user.username)
            page.fill("input[name=password]", f"{user.username}-pass-123")
            page.click("button[type=submit], input[type=submit]")
            page.wait_for_url(lambda url: "/accounts/login/" not in url)
            yield page
        finally:
            browser.close()


def latest(page: Any) -> dict[str, Any]:
    raw = page.get_attribute("[data-latest]", "data-latest") or ""
    return json.loads(raw) if raw else {}


def in_zone(epoch: float, zone: str, form: str = "%H:%M:%S") -> str:
    return datetime.fromtimestamp(epoch, UTC).astimezone(ZoneInfo(zone)).strftime(form)


def window_minutes(newest: float, zone: str) -> set[str]:
    """Every "HH:MM" of ``zone``'s clock in the 5-minute window up to ``newest`` (and the minute after)."""
    return {in_zone(newest - back, zone, "%H:%M") for back in range(-60, 306, 5)}


def table_as_of(page: Any, chart: str) -> str:
    return str(page.locator(f'[data-chart-table="{chart}"] .note').text_content())  # also while it is closed


@pytest.fixture
def db_guest(fleet_hosts: list[Host]) -> Domain:
    return Domain.objects.get(host=fleet_hosts[0], name__endswith="-db")


def test_chart_times_follow_the_page_s_zone_and_fall_back_to_the_browser_s(
    web_server: str, collector: subprocess.Popen[bytes], viewer: User, db_guest: Domain
) -> None:
    from hosts.timezones import set_time_zone

    url = f"{web_server}{db_guest.get_absolute_url()}"
    set_time_zone(viewer.pk, "Asia/Tokyo")  # the user's own choice, which the page puts on <body>
    with browser_page(web_server, viewer, "Europe/Berlin") as page:
        page.goto(url)
        wait_for(lambda: latest(page).get("vcpu"), 30, 0.5, "the chart's first values")
        body = page.evaluate("[document.body.dataset.timeZone, document.body.dataset.timeZoneSource]")
        assert page.get_attribute("[data-live-root]", "data-time-zone") == "Asia/Tokyo", body
        holder = page.locator('[data-chart="guest-cpu"]')
        assert holder.get_attribute("data-time-axis") == "Time (Asia/Tokyo)"  # the label drawn under the axis
        assert "(Asia/Tokyo)" in (holder.get_attribute("aria-label") or "")
        # The table's "As of" is the newest frame's time in Tokyo, not in the browser's Berlin.
        wait_for(lambda: "As of" in table_as_of(page, "guest-cpu"), 10, 0.25, "the table's time")
        newest = latest(page)["t"]
        shown = table_as_of(page, "guest-cpu")
        assert in_zone(newest, "Asia/Tokyo") in shown and "(Asia/Tokyo)" in shown, (shown, newest)
        assert in_zone(newest, "Europe/Berlin") not in shown
        # The x axis's tick labels (drawn on the canvas, mirrored in data-x-ticks) are Tokyo's clock times
        # within the 5-minute window, none of them Berlin's.
        ticks = {t[:5] for t in json.loads(holder.get_attribute("data-x-ticks") or "[]") if t}  # "HH:MM[:SS]"
        assert ticks and ticks <= window_minutes(newest, "Asia/Tokyo"), ticks
        assert not ticks & window_minutes(newest, "Europe/Berlin"), ticks
    with browser_page(web_server, viewer, "America/New_York", drop_page_zone=True) as page:
        page.goto(url)
        wait_for(lambda: latest(page).get("vcpu"), 30, 0.5, "the chart's first values")
        assert page.get_attribute("[data-live-root]", "data-time-zone") == "America/New_York"
        holder = page.locator('[data-chart="guest-cpu"]')
        assert holder.get_attribute("data-time-axis") == "Time (America/New_York)"
        ticks = {t[:5] for t in json.loads(holder.get_attribute("data-x-ticks") or "[]") if t}
        assert ticks and ticks <= window_minutes(latest(page)["t"], "America/New_York"), ticks


def test_legend_entries_are_buttons_that_the_keyboard_toggles(
    web_server: str, collector: subprocess.Popen[bytes], viewer: User, db_guest: Domain
) -> None:
    with browser_page(web_server, viewer, "UTC") as page:
        page.goto(f"{web_server}{db_guest.get_absolute_url()}")
        buttons = page.locator('[data-chart="guest-cpu"] .u-legend button.legend-toggle')
        wait_for(lambda: buttons.count() >= 4, 30, 0.5, "legend buttons (4 vCPUs)")
        first = buttons.first
        assert first.get_attribute("aria-pressed") == "true"
        row = page.locator('[data-chart="guest-cpu"] .u-legend .u-series').first  # vCPU 0 (no row for time)
        # Reached with Tab from the control before the charts, like any button.
        page.locator("[data-series-all=hide]").focus()
        for _ in range(12):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.classList.contains('legend-toggle')"):
                break
        assert page.evaluate("document.activeElement.classList.contains('legend-toggle')")
        first.focus()
        page.keyboard.press("Space")
        wait_for(lambda: first.get_attribute("aria-pressed") == "false", 5, 0.1, "Space to hide the series")
        assert "u-off" in (row.get_attribute("class") or "")
        page.keyboard.press("Enter")
        wait_for(lambda: first.get_attribute("aria-pressed") == "true", 5, 0.1, "Enter to show it again")
        assert "u-off" not in (row.get_attribute("class") or "")


def test_each_chart_has_a_live_table_of_its_latest_values_and_labels(
    web_server: str, collector: subprocess.Popen[bytes], viewer: User, db_guest: Domain
) -> None:
    with browser_page(web_server, viewer, "UTC") as page:
        page.goto(f"{web_server}{db_guest.get_absolute_url()}")
        wait_for(lambda: latest(page).get("vcpu"), 30, 0.5, "the chart's first values")
        for chart in ("guest-cpu", "guest-delay"):
            holder = page.locator(f'[data-chart="{chart}"]')
            assert holder.get_attribute("role") == "figure" and "Latest values" in (
                holder.get_attribute("aria-label") or ""
            )
            canvas = holder.locator("canvas").first
            assert canvas.get_attribute("role") == "img" and canvas.get_attribute("aria-label")
        box = page.locator('[data-chart-table="guest-cpu"]')
        box.locator("summary").click()  # open the collapsible table
        rows = box.locator("tbody tr")
        wait_for(lambda: rows.count() >= 4, 10, 0.25, "a row per series")

        def table() -> dict[str, str]:
            out = {}
            for i in range(rows.count()):
                out[rows.nth(i).locator("th").inner_text()] = rows.nth(i).locator("td").inner_text()
            return out

        first_time = table_as_of(page, "guest-cpu")
        wait_for(lambda: table_as_of(page, "guest-cpu") != first_time, 15, 0.25, "the table to update live")
        # The table shows what the chart drew: vCPU 0's value equals the newest frame's (read in one go).
        values = page.evaluate(
            "() => { var rows = {}; document.querySelectorAll('[data-chart-table=guest-cpu] tbody tr').forEach("
            "function (tr) { rows[tr.querySelector('th').textContent] = tr.querySelector('td').textContent; });"
            " return [rows, JSON.parse(document.querySelector('[data-latest]').dataset.latest)]; }"
        )
        shown, newest = values
        assert shown["vCPU 0"] == f"{newest['vcpu']['0']:.1f}", (shown, newest)
        assert set(table()) >= {"vCPU 0", "vCPU 1", "vCPU 2", "vCPU 3", "emulator + I/O threads"}
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.locator("[data-live-root]").screenshot(path=str(ARTIFACTS / "chart-a11y.png"))


def test_foreign_load_is_drawn_on_the_cpu_map_the_host_chart_and_the_owner_s_chart(
    web_server: str, collector: subprocess.Popen[bytes], viewer: User, db_guest: Domain, fleet_hosts: list[Host]
) -> None:
    host_url = f"{web_server}{fleet_hosts[0].get_absolute_url()}"
    guest_url = f"{web_server}{db_guest.get_absolute_url()}"
    with browser_page(web_server, viewer, "UTC") as page:
        page.goto(host_url)
        foreign = page.locator('.cpumap .cpu[data-cpu-id="1"] .cpu-foreign')
        wait_for(lambda: foreign.count() == 1 and "foreign" in foreign.inner_text(), 40, 0.5, "CPU 1's foreign load")
        assert page.locator('.cpumap .cpu[data-cpu-id="0"] .cpu-foreign').count() == 0  # CPU 0 is nobody's alone
        wait_for(lambda: "1" in latest(page).get("foreign", {}), 10, 0.5, "foreign load in the host frame")
        legend = page.locator('[data-chart="host-cpu"] .u-legend').inner_text()
        assert "CPU 1 foreign load" in legend and "CPU 0 foreign load" not in legend
        page.goto(guest_url)
        wait_for(lambda: latest(page).get("foreign"), 30, 0.5, "foreign load in the guest frame")
        assert set(latest(page)["foreign"]) == {"0", "1"}  # the two vCPUs pinned to CPU 1
        legend = page.locator('[data-chart="guest-delay"] .u-legend').inner_text()
        assert "vCPU 0 foreign load on its CPU" in legend and "vCPU 2 foreign load" not in legend
        isolation = page.locator("[data-isolation]")
        wait_for(lambda: "% of the time" in isolation.inner_text(), 45, 1, "the isolation score on the page")
        assert 0.0 <= float(isolation.get_attribute("data-score") or "-1") <= 1.0
