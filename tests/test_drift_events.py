"""Drift from libvirt events: a change made by hand through libvirt is in the API within seconds.

A real ``manage.py watch_drift`` process (spawned like the product's other processes, the ``watcher`` fixture)
watches the test fleet.
The latency from the ``virsh`` command returning to the drift being served by ``GET /api/drift/`` is printed
(run pytest with ``-s`` to see it) and asserted generously (10 s) so a loaded machine does not fail it; the
issue's target is 2 s, and the measured value is what the report quotes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from hosts.drift.watch import VCPU_POLL_SECONDS
from hosts.harness.fleet import Fleet
from hosts.models import AuditEvent, Drift, Host
from tests.conftest import ARTIFACTS, logged_in_page, virsh, wait_for
from tests.drift_fixtures import PROFILE, apply_profile, domain, watcher  # noqa: F401 - a fixture

pytestmark = [pytest.mark.fleet, pytest.mark.django_db(transaction=True)]

GENEROUS = 10.0


def _drift_in_api(client: Client, domain_id: int, field: str, *, open_: bool = True) -> dict[str, Any] | None:
    flag = "true" if open_ else "false"
    rows = client.get(f"/api/drift/?open={flag}&domain={domain_id}").json()["results"]
    return next((row for row in rows if row["field"] == field), None)


def _latency(client: Client, domain_id: int, field: str, started: float, *, open_: bool = True) -> float:
    wait_for(lambda: _drift_in_api(client, domain_id, field, open_=open_), GENEROUS, 0.02, what=f"drift {field}")
    return time.monotonic() - started


@pytest.mark.usefixtures("watcher")
def test_vcpupin_and_schedinfo_by_hand_are_drift_in_the_api_within_seconds_and_resolve_when_undone(
    fleet: Fleet,
    fleet_hosts: list[Host],
    celery_worker: subprocess.Popen[bytes],
    operator: User,
    approver: User,
    viewer: User,
    login: Callable[[User], Client],
) -> None:
    name = f"{fleet.prefix}3-web"
    dom = domain(name)
    uri = dom.host.uri
    # Applied while the watcher listens: the apply's own writes raise tunable events, which must not be drift.
    apply_profile(login(operator), login(approver), PROFILE, [dom.pk], "both")
    time.sleep(3)  # the watcher re-checks a guest it skipped while the change was working on it after ~2 s
    assert not Drift.objects.filter(domain=dom).exists()

    client = login(viewer)
    started = time.monotonic()
    virsh(uri, "vcpupin", name, "0", "0", "--live")
    pin_latency = _latency(client, dom.pk, "vcpupin 0", started)
    started = time.monotonic()
    virsh(uri, "schedinfo", name, "--live", "vcpu_quota=20000")
    sched_latency = _latency(client, dom.pk, "vcpu_quota", started)
    print(
        f"\ndrift detection latency (virsh returned -> in GET /api/drift/): vcpupin {pin_latency * 1000:.0f} ms, "
        f"schedinfo {sched_latency * 1000:.0f} ms"
    )
    assert pin_latency < GENEROUS and sched_latency < GENEROUS

    pin = _drift_in_api(client, dom.pk, "vcpupin 0")
    assert pin is not None and (pin["expected"], pin["observed"], pin["detected_by"]) == ("0-1", "0", "event")
    quota = _drift_in_api(client, dom.pk, "vcpu_quota")
    assert quota is not None and (quota["scope"], quota["observed"], quota["detected_by"]) == ("live", 20000, "event")
    assert AuditEvent.objects.filter(action="drift.found", domain=dom).count() == 2

    virsh(uri, "vcpupin", name, "0", "0-1", "--live")
    virsh(uri, "schedinfo", name, "--live", "vcpu_quota=50000")
    started = time.monotonic()
    _latency(client, dom.pk, "vcpu_quota", started, open_=False)
    wait_for(lambda: not Drift.objects.filter(domain=dom, resolved_at__isnull=True).exists(), GENEROUS, 0.1)
    assert AuditEvent.objects.filter(action="drift.resolved", domain=dom).count() == 2


@pytest.mark.usefixtures("watcher")
def test_a_guest_started_with_config_values_other_than_desired_is_drift_detected_at_start(
    fleet: Fleet,
    fleet_hosts: list[Host],
    celery_worker: subprocess.Popen[bytes],
    operator: User,
    approver: User,
    login: Callable[[User], Client],
) -> None:
    name = f"{fleet.prefix}3-batch"
    dom = domain(name)
    uri = dom.host.uri
    apply_profile(login(operator), login(approver), {"sched": {"vcpu_quota": 50000}}, [dom.pk], "both")
    time.sleep(3)
    try:
        virsh(uri, "schedinfo", name, "--config", "vcpu_quota=30000")  # no event: config-only
        virsh(uri, "destroy", name)
        virsh(uri, "start", name)

        def live_drift() -> Drift | None:
            return Drift.objects.filter(domain=dom, scope="live", field="vcpu_quota", resolved_at__isnull=True).first()

        found = wait_for(live_drift, GENEROUS, 0.1, what="live drift after the start")
        assert isinstance(found, Drift)
        assert (found.expected, found.observed, found.detected_by) == (50000, 30000, "start")
        config = Drift.objects.get(domain=dom, scope="config", field="vcpu_quota", resolved_at__isnull=True)
        assert config.observed == 30000
    finally:
        virsh(uri, "schedinfo", name, "--config", "vcpu_quota=50000")
        virsh(uri, "schedinfo", name, "--live", "vcpu_quota=50000")


@pytest.mark.usefixtures("watcher")
def test_an_open_guest_page_shows_new_drift_without_a_reload(
    fleet: Fleet,
    fleet_hosts: list[Host],
    web_server: str,
    celery_worker: subprocess.Popen[bytes],
    operator: User,
    approver: User,
    viewer: User,
    login: Callable[[User], Client],
) -> None:
    """The watcher's notice reaches the page through the channel layer and the guest's live socket (Daphne,
    Redis, Chromium), and the page swaps its drift section in place."""
    name = f"{fleet.prefix}3-web"
    dom = domain(name)
    uri, url = dom.host.uri, f"{web_server}{dom.get_absolute_url()}"
    apply_profile(login(operator), login(approver), PROFILE, [dom.pk], "both")
    time.sleep(3)
    try:
        with logged_in_page(web_server, viewer) as page:
            page.goto(url)
            wait_for(lambda: page.get_attribute("body", "data-live-tables") == "connected", 15, 0.2, "the live socket")
            page.evaluate("window.__sameDocument = true")  # gone if the page reloads
            assert "No open drift." in page.inner_text("#drift")
            virsh(uri, "vcpupin", name, "1", "0", "--live")
            wait_for(lambda: "vcpupin 1" in page.inner_text("#drift"), GENEROUS, 0.1, what="drift on the open page")
            assert page.evaluate("window.__sameDocument") is True
            assert "1 open" in page.inner_text("#drift h2")
            page.screenshot(path=str(ARTIFACTS / "drift-guest-page.png"), full_page=True)
    finally:
        virsh(uri, "vcpupin", name, "1", "0-1", "--live")


@pytest.mark.usefixtures("watcher")
def test_a_hung_host_delays_no_other_hosts_drift_and_is_watched_again_once_it_answers(
    fleet: Fleet,
    fleet_hosts: list[Host],
    celery_worker: subprocess.Popen[bytes],
    operator: User,
    approver: User,
    viewer: User,
    login: Callable[[User], Client],
) -> None:
    hung, healthy = f"{fleet.prefix}1-web", f"{fleet.prefix}2-web"
    doms = {name: domain(name) for name in (hung, healthy)}
    apply_profile(login(operator), login(approver), PROFILE, [d.pk for d in doms.values()], "both")
    time.sleep(3)
    client = login(viewer)
    daemon = fleet.host(0).pid()
    assert daemon is not None
    os.kill(daemon, signal.SIGSTOP)  # a daemon that accepts nothing and answers nothing
    try:
        time.sleep(2 * VCPU_POLL_SECONDS)  # the watcher's calls to it are now stuck or timing out
        started = time.monotonic()
        virsh(doms[healthy].host.uri, "vcpupin", healthy, "0", "0", "--live")
        latency = _latency(client, doms[healthy].pk, "vcpupin 0", started)
        print(f"\ndrift on a healthy host while another hangs: {latency * 1000:.0f} ms")
    finally:
        os.kill(daemon, signal.SIGCONT)
        virsh(doms[healthy].host.uri, "vcpupin", healthy, "0", "0-1", "--live")
    # Back: the watcher reconnects (with backoff) and sees the next hand change there too.
    uri = doms[hung].host.uri
    try:
        virsh(uri, "vcpupin", hung, "0", "0", "--live")
        wait_for(lambda: _drift_in_api(client, doms[hung].pk, "vcpupin 0"), 60, 0.2, what="drift on the host back")
    finally:
        virsh(uri, "vcpupin", hung, "0", "0-1", "--live")
