"""``/metrics``: who may scrape it, and the values it serves against libvirt's own counters.

Real parts: Daphne serving the app, the stats collector as its own process, the libvirt fleet, Redis, and
prometheus_client's own OpenMetrics parser reading the answer.
"""

from __future__ import annotations

import secrets
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import override_settings
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from hosts.harness.fleet import Fleet
from hosts.live import push
from hosts.metrics import may_scrape
from hosts.models import Domain, Host
from tests.conftest import _free_port, _stop, spawn, virsh, wait_for

TOKEN = secrets.token_urlsafe(24)
# The test server allows no network at all (TEST-NET-1 holds no client here): only the token opens /metrics.
NO_NETWORK = "192.0.2.0/24"


# --- the access decision ---------------------------------------------------------------------------------


@override_settings(ISOWEB_METRICS_TOKEN="", ISOWEB_METRICS_NETWORKS=["127.0.0.0/8", "::1/128"])
def test_by_default_only_loopback_may_scrape_and_no_token_is_accepted() -> None:
    assert may_scrape("127.0.0.1", None) and may_scrape("::1", None) and may_scrape("::ffff:127.0.0.1", "")
    assert not may_scrape("10.1.2.3", None)
    assert not may_scrape("10.1.2.3", "Bearer ")  # an empty token setting accepts no token, not an empty one
    assert not may_scrape("", None) and not may_scrape(None, None) and not may_scrape("not-an-address", None)


@override_settings(ISOWEB_METRICS_TOKEN="s3cret-token", ISOWEB_METRICS_NETWORKS=["10.0.0.0/8", "2001:db8::/32"])
def test_a_configured_network_or_the_bearer_token_may_scrape_and_nothing_else() -> None:
    assert may_scrape("10.200.0.7", None) and may_scrape("2001:db8::5", None)
    assert not may_scrape("127.0.0.1", None)  # loopback is no longer in the list
    assert may_scrape("203.0.113.9", "Bearer s3cret-token") and may_scrape("203.0.113.9", "bearer  s3cret-token ")
    assert not may_scrape("203.0.113.9", "Bearer s3cret-tokenX")
    assert not may_scrape("203.0.113.9", "Basic s3cret-token")
    assert not may_scrape("203.0.113.9", "s3cret-token")


# --- over HTTP, against libvirt ---------------------------------------------------------------------------


@pytest.fixture
def metrics_server(fleet_hosts: list[Host], redis_server: str) -> Iterator[str]:
    """Daphne with a metrics token and no allowed network, and the stats collector sampling every second."""
    port = _free_port()
    env = {"ISOWEB_METRICS_TOKEN": TOKEN, "ISOWEB_METRICS_NETWORKS": NO_NETWORK}
    daphne, daphne_log = spawn(
        "metrics-daphne",
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "isoweb.asgi:application"],
        **env,
    )
    collector, collector_log = spawn(
        "metrics-collector",
        [sys.executable, "manage.py", "collect_stats", "--interval", "1", "--background-interval", "1"],
    )

    def answers() -> bool:
        assert daphne.poll() is None, "daphne exited; see metrics-daphne.log"
        assert collector.poll() is None, "the collector exited; see metrics-collector.log"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.3):
                return True
        except OSError:
            return False

    try:
        wait_for(answers, 30, what="daphne")
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(collector)
        _stop(daphne)
        collector_log.close()
        daphne_log.close()


@pytest.fixture
def burner(fleet: Fleet, fleet_hosts: list[Host]) -> Iterator[str]:
    """The CPU burner running: a vCPU counter that grows a second per second is a strict test of freshness."""
    uri, name = fleet.host(0).uri, f"{fleet.prefix}1-burn"
    virsh(uri, "start", name)
    try:
        from hosts.inventory import sync_host

        assert sync_host(fleet_hosts[0].pk).ok  # the collector learns the new guest's id from the inventory
        yield name
    finally:
        virsh(uri, "destroy", name)


def scrape(base: str, token: str | None) -> tuple[int, str, str]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    request = urllib.request.Request(f"{base}/metrics", headers=headers)  # noqa: S310 - our own loopback server
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def vcpu_counters(uri: str, names: list[str]) -> dict[tuple[str, str, str], float]:
    """libvirt's own per-vCPU counters, in seconds, keyed like the metrics: (metric, guest, vcpu)."""
    out: dict[tuple[str, str, str], float] = {}
    for name in names:
        for item in virsh(uri, "domstats", "--vcpu", name).split():
            key, _, value = item.partition("=")
            parts = key.split(".")
            if len(parts) == 3 and parts[0] == "vcpu" and parts[1].isdigit() and parts[2] in ("time", "delay"):
                metric = "isoweb_vcpu_cpu_seconds" if parts[2] == "time" else "isoweb_vcpu_delay_seconds"
                out[(metric, name, parts[1])] = int(value) / 1e9
    return out


def samples(text: str) -> dict[str, list[Any]]:
    """Parse the answer with prometheus_client's OpenMetrics parser: family name -> its samples."""
    return {family.name: list(family.samples) for family in text_string_to_metric_families(text)}


@pytest.mark.fleet
@pytest.mark.django_db(transaction=True)
def test_metrics_refuse_a_request_without_the_token_from_a_network_not_allowed(metrics_server: str) -> None:
    status, _type, body = scrape(metrics_server, None)
    assert status == 403 and "ISOWEB_METRICS_TOKEN" in body
    assert scrape(metrics_server, "wrong-" + TOKEN)[0] == 403
    status, content_type, body = scrape(metrics_server, TOKEN)
    assert status == 200 and content_type.startswith("application/openmetrics-text"), content_type
    assert body.rstrip().endswith("# EOF")


@pytest.mark.fleet
@pytest.mark.django_db(transaction=True)
def test_vcpu_counters_lie_between_libvirt_s_readings_before_and_after_the_scrape(
    metrics_server: str, burner: str, fleet: Fleet, fleet_hosts: list[Host]
) -> None:
    """Each vCPU counter served is one the collector read a moment ago. libvirt's counters only grow, so the
    served value must lie between libvirt's own readings taken just before and just after the scrape, give or
    take 1 % (and its sample time between the two readings' times). The collector samples every second;
    the scrape comes 2.5 s after the first reading so the served sample is newer than it."""
    host = fleet_hosts[0]
    uri = fleet.host(0).uri
    guests = list(Domain.objects.filter(host=host, state=Domain.State.RUNNING).values_list("name", flat=True))
    assert burner in guests
    push.mark_watched([(push.HOST, host.pk)])

    def served() -> dict[str, list[Any]]:
        status, _type, body = scrape(metrics_server, TOKEN)
        assert status == 200, body
        return samples(body)

    wait_for(
        lambda: any(s.labels.get("guest") == burner for s in served().get("isoweb_vcpu_cpu_seconds", [])),
        30,
        0.5,
        "the burner's counters in /metrics",
    )
    problems: list[str] = []
    for _attempt in range(3):  # a tick delayed past the window by a busy machine is measured again
        before_at, before = time.time(), vcpu_counters(uri, guests)
        time.sleep(2.5)
        families = served()
        after_at, after = time.time(), vcpu_counters(uri, guests)
        problems = []
        checked = 0
        for family in ("isoweb_vcpu_cpu_seconds", "isoweb_vcpu_delay_seconds"):
            for sample in families[family]:
                if sample.labels["host"] != host.name:
                    continue
                key = (family, sample.labels["guest"], sample.labels["vcpu"])
                low, high = before[key], after[key]
                checked += 1
                if not low * 0.99 - 1e-3 <= sample.value <= high * 1.01 + 1e-3:
                    problems.append(f"{key}: {sample.value} not within [{low}, {high}] +- 1 %")
                stamp = float(sample.timestamp)
                if not before_at - 0.05 <= stamp <= after_at:
                    problems.append(f"{key}: sampled at {stamp}, not between {before_at} and {after_at}")
        assert checked >= 2 * sum(1 for k in before if k[0] == "isoweb_vcpu_cpu_seconds")
        if not problems:
            break
    assert not problems, problems
    burn = next(
        s for s in families["isoweb_vcpu_cpu_seconds"] if s.labels["guest"] == burner and s.labels["vcpu"] == "0"
    )
    assert burn.name == "isoweb_vcpu_cpu_seconds_total" and burn.value > 1.0  # a counter, and it really burned

    # The fleet's db guest holds CPU 1 alone (vcpupin 0,1 -> 1, its emulator on 0): foreign load and score.
    db = f"{fleet.prefix}1-db"
    foreign = [s for s in families["isoweb_dedicated_cpu_foreign_load_ratio"] if s.labels["host"] == host.name]
    assert [(s.labels["cpu"], s.labels["guest"]) for s in foreign] == [("1", db)]
    assert 0.0 <= foreign[0].value <= 1.0
    scores = {s.labels["guest"]: s.value for s in families["isoweb_guest_isolation_score_ratio"]}
    assert 0.0 <= scores[db] <= 1.0
    # Host status (an OpenMetrics state set), open drifts, change outcomes and apply durations are served too.
    up = {
        s.labels["isoweb_host_status"]: s.value for s in families["isoweb_host_status"] if s.labels["host"] == host.name
    }
    assert up["up"] == 1.0 and up["down"] == 0.0
    assert {s.labels["host"]: s.value for s in families["isoweb_open_drifts"]}[host.name] == 0.0
    assert {s.labels["status"] for s in families["isoweb_change_targets"]} >= {"applied", "failed"}
    assert any(
        s.name == "isoweb_guest_apply_duration_seconds_count" for s in families["isoweb_guest_apply_duration_seconds"]
    )
