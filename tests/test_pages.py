"""The pages an operator reads: the CPU map's classification and the guest page, against the real fleet."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client

from hosts.harness.fleet import Fleet
from hosts.host_map import EXCLUSIVE, FLOATING, SHARED, load_host_cpu_map
from hosts.inventory import sync_host
from hosts.models import Domain, Host, HostCPU, NumaCell
from tests.conftest import virsh


def _host_with_cpus(count: int) -> Host:
    host = Host.objects.create(name="kvm", uri="qemu+tcp://127.0.0.1:1/system", transport="tcp")
    cell = NumaCell.objects.create(host=host, cell_id=0)
    for c in range(count):
        HostCPU.objects.create(host=host, cell=cell, cpu_id=c, core_id=c, socket_id=0, siblings=str(c))
    return host


def _guest(host: Host, name: str, vcpupin: dict[str, str], emulatorpin: str, running: bool = True) -> Domain:
    tuning = {"vcpupin": vcpupin, "emulatorpin": emulatorpin, "iothreadpin": {}, "sched": {}}
    return Domain.objects.create(
        host=host,
        uuid=uuid.uuid4(),
        name=name,
        state="running" if running else "shutoff",
        vcpus_current=len(vcpupin),
        vcpus_max=len(vcpupin),
        tuning_live=tuning if running else None,
        tuning_config=tuning,
    )


def _placements(host: Host) -> dict[int, dict[str, str]]:
    cpu_map = load_host_cpu_map(host)
    return {
        cpu.cpu_id: {g.domain_name: g.placement for g in cpu.by_guest}
        for cell in cpu_map.cells
        for core in cell.cores
        for cpu in core.cpus
    }


def test_cpu_map_tells_exclusive_shared_and_floating_apart(db: None) -> None:
    host = _host_with_cpus(4)
    _guest(host, "latency", {"0": "2", "1": "3"}, "0")
    _guest(host, "noisy", {"0": "0-1"}, "0-1")
    _guest(host, "stopped", {"0": "0-3"}, "0-3", running=False)
    placements = _placements(host)
    assert placements[2]["latency"] == placements[3]["latency"] == EXCLUSIVE
    assert placements[0]["latency"] == SHARED and placements[0]["noisy"] == SHARED  # both emulators on CPU 0
    assert placements[1]["noisy"] == EXCLUSIVE  # the shut-off guest does not compete with running threads
    assert placements[3]["stopped"] == FLOATING


def test_one_floating_running_guest_makes_every_cpu_shared(db: None) -> None:
    host = _host_with_cpus(2)
    _guest(host, "pinned", {"0": "1"}, "1")
    _guest(host, "floater", {"0": "0-1"}, "0-1")
    placements = _placements(host)
    assert placements[1] == {"pinned": SHARED, "floater": FLOATING}


@pytest.mark.fleet
def test_host_page_draws_every_cpu_and_guest(
    viewer: User, login: Callable[[User], Client], fleet: Fleet, fleet_hosts: list[Host]
) -> None:
    host = fleet_hosts[0]
    page = login(viewer).get(f"/hosts/{host.pk}/").content.decode()
    for cpu in host.cpus.all():
        assert f"CPU {cpu.cpu_id}" in page
    for name in fleet.host(0).guest_names:
        assert name in page
    assert "unencrypted" in page  # the fleet speaks qemu+tcp


@pytest.mark.fleet
def test_guest_page_highlights_live_config_differences(
    viewer: User, login: Callable[[User], Client], fleet: Fleet, fleet_hosts: list[Host]
) -> None:
    host = fleet_hosts[0]
    name = f"{fleet.prefix}1-web"
    dom = Domain.objects.get(host=host, name=name)
    client = login(viewer)
    assert "row-diff" not in client.get(f"/guests/{dom.pk}/").content.decode()
    virsh(host.uri, "emulatorpin", name, "1", "--live")
    try:
        sync_host(host.pk)
        page = client.get(f"/guests/{dom.pk}/").content.decode()
        # The side-by-side table flags exactly the one field that differs, and it is the emulator pin.
        assert page.count('<span class="badge warn">differs</span>') == 1
        flagged = page.split('<span class="badge warn">differs</span>')[0].rsplit("<code>", 1)[1]
        assert flagged.startswith("emulatorpin")
    finally:
        virsh(host.uri, "emulatorpin", name, "0-1", "--live")
