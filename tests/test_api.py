"""The REST API against the real fleet: token auth, hosts with topology, guests with tuning, filters, schema."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client

from hosts.harness.fleet import Fleet
from hosts.models import Domain, Host
from tests.conftest import virsh

pytestmark = pytest.mark.fleet


def test_token_from_username_and_password_opens_the_api(viewer: User, fleet_hosts: list[Host]) -> None:
    client = Client()
    refused = client.post("/api/auth/token/", {"username": "vera", "password": "wrong"})
    assert refused.status_code == 400
    token = client.post("/api/auth/token/", {"username": "vera", "password": "vera-pass-123"}).json()["token"]
    assert Client().get("/api/hosts/").status_code in (401, 403)
    listed = Client(HTTP_AUTHORIZATION=f"Token {token}").get("/api/hosts/")
    assert listed.status_code == 200
    assert [h["name"] for h in listed.json()["results"]] == [h.name for h in fleet_hosts]


def test_host_detail_includes_topology(viewer: User, login: Callable[[User], Client], fleet_hosts: list[Host]) -> None:
    host = fleet_hosts[0]
    body = login(viewer).get(f"/api/hosts/{host.pk}/").json()
    assert body["status"] == "up" and body["transport"] == "tcp"
    cpus = [cpu["cpu_id"] for cell in body["cells"] for cpu in cell["cpus"]]
    assert sorted(cpus) == sorted(host.cpus.values_list("cpu_id", flat=True))
    assert body["cpu_count"] == len(cpus) and body["domain_count"] == host.domains.count()
    assert {"socket_id", "core_id", "siblings", "online"} <= set(body["cells"][0]["cpus"][0])


def test_domain_detail_has_live_and_config_tuning_and_affinity(
    viewer: User, login: Callable[[User], Client], fleet: Fleet, fleet_hosts: list[Host]
) -> None:
    dom = Domain.objects.get(name=f"{fleet.prefix}1-db")
    body = login(viewer).get(f"/api/domains/{dom.pk}/").json()
    live, config = body["tuning"]["live"], body["tuning"]["config"]
    assert live["vcpupin"] == {"0": "1", "1": "1", "2": "0-1", "3": "0-1"}
    assert live["emulatorpin"] == config["emulatorpin"] == "0"
    assert live["iothreadpin"] == {"1": "0-1"}
    assert live["sched"]["cpu_shares"] == int(
        virsh(dom.host.uri, "schedinfo", dom.name, "--live").split("cpu_shares")[1].split(":")[1].split()[0]
    )
    assert set(live["sched"]) == {
        "cpu_shares",
        "vcpu_period",
        "vcpu_quota",
        "emulator_period",
        "emulator_quota",
        "global_period",
        "global_quota",
        "iothread_period",
        "iothread_quota",
    }
    assert body["affinity"] == {"0": "1", "1": "1", "2": "0-1", "3": "0-1"}


def test_domains_filter_by_host_name_and_state(
    viewer: User, login: Callable[[User], Client], fleet: Fleet, fleet_hosts: list[Host]
) -> None:
    client = login(viewer)
    host = fleet_hosts[1]
    by_host = client.get("/api/domains/", {"host": host.pk}).json()
    assert {d["name"] for d in by_host["results"]} == set(fleet.host(1).guest_names)
    by_name = client.get("/api/domains/", {"name": "-db"}).json()
    assert {d["name"] for d in by_name["results"]} == {f"{fleet.prefix}{i}-db" for i in (1, 2, 3)}
    # The fleet's CPU burner is defined but left shut off until a test needs it.
    shutoff = client.get("/api/domains/", {"state": "shutoff"}).json()["results"]
    assert [d["name"] for d in shutoff] == [f"{fleet.prefix}1-burn"]
    running = client.get("/api/domains/", {"state": "running"}).json()["count"]
    assert running == Domain.objects.count() - 1 > 0
    assert client.get("/api/domains/", {"state": "bogus"}).status_code == 400


def test_openapi_schema_describes_the_api(viewer: User, login: Callable[[User], Client]) -> None:
    response = login(viewer).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/api/hosts/", "/api/hosts/{id}/", "/api/hosts/{id}/sync/", "/api/domains/", "/api/domains/{id}/"} <= set(
        paths
    )
