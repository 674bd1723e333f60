"""Inventory sync against the real fleet: what isoweb stores is what virsh and the kernel report."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from defusedxml.ElementTree import fromstring as parse_xml
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from hosts.cpulist import format_cpulist, parse_cpulist
from hosts.harness.fleet import Fleet
from hosts.inventory import begin_reading_hosts, store_reads, sync_host, sync_hosts
from hosts.libvirt.errors import VirtError
from hosts.libvirt.inventory import DOMAIN_STATES, fetch_inventory
from hosts.libvirt.session import HostSession
from hosts.models import Domain, Host, HostCPU
from tests.conftest import virsh

pytestmark = pytest.mark.fleet


def _cpus(text: str) -> str:
    """Normalise a cpulist so '0-1' and '0,1' compare equal."""
    return format_cpulist(parse_cpulist(text))


def _virsh_table(uri: str, *args: str) -> dict[str, str]:
    """Parse virsh's two-column tables (vcpupin, iothreadinfo) into {first column: cpulist}."""
    rows = {}
    for line in virsh(uri, *args).splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].rstrip(":").isdigit():
            rows[parts[0].rstrip(":")] = _cpus(parts[-1])
    return rows


def _virsh_schedinfo(uri: str, name: str, *flags: str) -> dict[str, int]:
    values = {}
    for line in virsh(uri, "schedinfo", name, *flags).splitlines():
        key, _, value = (part.strip() for part in line.partition(":"))
        if key != "Scheduler" and value:
            values[key] = int(value)
    return values


def test_topology_matches_virsh_capabilities(fleet_hosts: list[Host]) -> None:
    for host in fleet_hosts:
        caps = parse_xml(virsh(host.uri, "capabilities"))
        expected = {
            (
                int(cell.get("id")),
                int(cpu.get("id")),
                cpu.get("socket_id"),
                cpu.get("core_id"),
                cpu.get("siblings"),
            )
            for cell in caps.iterfind("host/topology/cells/cell")
            for cpu in cell.iterfind("cpus/cpu")
        }
        stored = {
            (cpu.cell.cell_id, cpu.cpu_id, str(cpu.socket_id), str(cpu.core_id), cpu.siblings)
            for cpu in host.cpus.select_related("cell")
        }
        assert expected and stored == expected
        assert host.cells.count() == len(caps.findall("host/topology/cells/cell"))
        assert host.status == Host.Status.UP
        assert host.libvirt_version == "9.0.0"
        assert host.hypervisor_version.startswith(virsh(host.uri, "version").split("QEMU ")[-1].strip()[:3])


def test_every_fleet_guest_is_in_the_inventory_with_its_state(fleet: Fleet, fleet_hosts: list[Host]) -> None:
    for member, host in zip(fleet.members, fleet_hosts, strict=True):
        listed = {}
        for line in virsh(host.uri, "list", "--all").splitlines():
            parts = line.split()
            listed[parts[1]] = " ".join(parts[2:])
        stored = dict(Domain.objects.filter(host=host).values_list("name", "state"))
        assert set(stored) == set(listed) and set(member.guest_names) <= set(stored)
        for name, state in listed.items():
            assert stored[name] == {"running": "running", "shut off": "shutoff", "paused": "paused"}[state]
        for dom in Domain.objects.filter(host=host):
            assert str(dom.uuid) == virsh(host.uri, "domuuid", dom.name).strip()


def test_pinning_and_caps_match_virsh_live_and_config(fleet_hosts: list[Host]) -> None:
    checked = 0
    for host in fleet_hosts:
        for dom in Domain.objects.filter(host=host, state="running"):
            for scope, tuning in (("--live", dom.tuning_live), ("--config", dom.tuning_config)):
                assert tuning is not None
                assert tuning["vcpupin"] == _virsh_table(host.uri, "vcpupin", dom.name, scope)
                emulator = virsh(host.uri, "emulatorpin", dom.name, scope).split()[-1]
                assert tuning["emulatorpin"] == _cpus(emulator)
                assert tuning["iothreadpin"] == _virsh_table(host.uri, "iothreadinfo", dom.name, scope)
                assert tuning["sched"] == _virsh_schedinfo(host.uri, dom.name, scope)
            checked += 1
    assert checked >= 9  # every fleet guest on every host


def _qemu_vcpu_threads(fleet: Fleet, host_index: int, name: str) -> dict[str, str]:
    """Return {vCPU number: Cpus_allowed_list} read straight from /proc for a guest's vCPU threads."""
    pid = (fleet.host(host_index).directory / "run" / "qemu" / f"{name}.pid").read_text().strip()
    threads = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        match = re.fullmatch(r"CPU (\d+)/(KVM|TCG)", (task / "comm").read_text().strip())
        if match:
            status = (task / "status").read_text()
            allowed = re.search(r"^Cpus_allowed_list:\s*(\S+)", status, re.M)
            assert allowed
            threads[match.group(1)] = _cpus(allowed.group(1))
    return threads


def test_real_affinity_is_what_the_kernel_reports_for_vcpu_threads(fleet: Fleet, fleet_hosts: list[Host]) -> None:
    dom = Domain.objects.get(host=fleet_hosts[0], name=f"{fleet.prefix}1-db")
    kernel = _qemu_vcpu_threads(fleet, 0, dom.name)
    assert len(kernel) == dom.vcpus_current == 4
    assert dom.affinity == kernel
    # The db guest pins vCPUs 0 and 1 to CPU 1 in its definition: the kernel agrees.
    assert kernel["0"] == kernel["1"] == "1"


def test_change_made_with_virsh_shows_after_next_sync(fleet: Fleet, fleet_hosts: list[Host]) -> None:
    host = fleet_hosts[1]
    name = f"{fleet.prefix}2-web"
    before = Domain.objects.get(host=host, name=name)
    assert before.tuning_live["vcpupin"]["1"] == "0-1"
    virsh(host.uri, "vcpupin", name, "1", "0", "--live")
    virsh(host.uri, "emulatorpin", name, "1", "--live")
    virsh(host.uri, "schedinfo", name, "--live", "vcpu_quota=30000", "emulator_quota=40000")
    virsh(host.uri, "vcpupin", name, "0", "1", "--config")
    try:
        assert sync_host(host.pk).ok
        after = Domain.objects.get(pk=before.pk)
        assert after.tuning_live["vcpupin"] == {"0": "0-1", "1": "0"}
        assert after.tuning_live["emulatorpin"] == "1"
        assert after.tuning_live["sched"]["vcpu_quota"] == 30000
        assert after.tuning_live["sched"]["emulator_quota"] == 40000
        assert after.tuning_config["vcpupin"]["0"] == "1"
        assert after.affinity["1"] == "0"
        assert after.tuning_config["sched"]["vcpu_quota"] == 0  # live-only change: config untouched
    finally:
        virsh(host.uri, "vcpupin", name, "1", "0-1", "--live")
        virsh(host.uri, "emulatorpin", name, "0-1", "--live")
        virsh(host.uri, "schedinfo", name, "--live", "vcpu_quota=-1", "emulator_quota=-1")
        virsh(host.uri, "vcpupin", name, "0", "0-1", "--config")


def test_shut_off_guest_keeps_config_and_drops_live_tuning(fleet: Fleet, fleet_hosts: list[Host]) -> None:
    host = fleet_hosts[2]
    name = f"{fleet.prefix}3-batch"
    virsh(host.uri, "destroy", name)
    try:
        assert sync_host(host.pk).ok
        dom = Domain.objects.get(host=host, name=name)
        assert dom.state == Domain.State.SHUTOFF
        assert dom.tuning_live is None and dom.affinity == {}
        assert dom.tuning_config["iothreadpin"] == _virsh_table(host.uri, "iothreadinfo", name, "--config")
    finally:
        virsh(host.uri, "start", name)


def test_sync_round_trips_are_counted_and_bounded_per_guest(fleet_hosts: list[Host]) -> None:
    host = fleet_hosts[0]
    result = sync_host(host.pk)
    running = Domain.objects.filter(host=host, state="running").count()
    stopped = Domain.objects.filter(host=host).count() - running
    assert stopped == 1  # the CPU burner, defined but not started
    # 6 per host, 5 per running guest and 2 per shut-off one: no per-field getter calls.
    assert result.round_trips == 6 + 5 * running + 2 * stopped
    assert Host.objects.get(pk=host.pk).sync_round_trips == result.round_trips


def test_light_sync_refreshes_live_tuning_and_keeps_config_and_affinity(fleet: Fleet, fleet_hosts: list[Host]) -> None:
    host = fleet_hosts[1]
    name = f"{fleet.prefix}2-batch"
    before = Domain.objects.get(host=host, name=name)
    virsh(host.uri, "schedinfo", name, "--live", "cpu_shares=777")
    known = Host.objects.get(pk=host.pk)
    HostCPU.objects.filter(host=host, cpu_id=1).update(online=False)  # as if it had been offline at the last sync
    try:
        [result] = sync_hosts([host.pk], light=True)
        assert HostCPU.objects.get(host=host, cpu_id=1).online  # the light read still sees which CPUs are online
        after = Domain.objects.get(pk=before.pk)
        assert after.tuning_live["sched"]["cpu_shares"] == 777
        assert after.tuning_config == before.tuning_config and after.tuning_config is not None
        assert after.affinity == before.affinity and after.affinity
        running = Domain.objects.filter(host=host, state="running").count()
        stopped = Domain.objects.filter(host=host).count() - running
        # The CPU map and the guests' states, then live XML and live caps only.
        assert result.round_trips == 2 + 2 * running + 2 * stopped
        kept = Host.objects.get(pk=host.pk)
        assert (kept.hostname, kept.libvirt_version, kept.cpu_model) == (
            known.hostname,
            known.libvirt_version,
            known.cpu_model,
        )
        assert kept.hostname and kept.libvirt_version
    finally:
        virsh(host.uri, "schedinfo", name, "--live", "cpu_shares=1024")


def test_storing_several_hosts_costs_the_same_statements_as_one_and_keeps_them_apart(
    fleet_hosts: list[Host],
) -> None:
    """The re-plan stores every host's read on its way to the first write: the statements do not grow with
    the hosts, and each host's CPUs and guests are still its own."""
    one = begin_reading_hosts([fleet_hosts[0].pk], light=True)()
    three = begin_reading_hosts([h.pk for h in fleet_hosts], light=True)()
    # As if CPU 1 of the first host and CPU 0 of the second had been offline at the last sync.
    HostCPU.objects.filter(host=fleet_hosts[0], cpu_id=1).update(online=False)
    HostCPU.objects.filter(host=fleet_hosts[1], cpu_id=0).update(online=False)
    with CaptureQueriesContext(connection) as for_one, transaction.atomic():
        store_reads(one)
    with CaptureQueriesContext(connection) as for_three, transaction.atomic():
        store_reads(three)
    assert len(for_three) == len(for_one) <= 8, [q["sql"][:80] for q in for_three]
    assert not HostCPU.objects.filter(host__in=fleet_hosts, online=False).exists()
    for host, (_host, inventory) in zip(fleet_hosts, three, strict=True):
        assert not isinstance(inventory, VirtError)
        stored = {str(u) for u in Domain.objects.filter(host=host).values_list("uuid", flat=True)}
        assert stored == {d.uuid for d in inventory.domains}


def test_a_light_read_keeping_config_has_each_guests_config_and_its_exact_xml(
    fleet: Fleet, fleet_hosts: list[Host]
) -> None:
    """What re-planning a change of the persistent config reads, and what becomes each guest's snapshot:
    the live and config tuning and the config's XML as virsh dumps it with its secrets, in 4 calls per
    running guest (no affinity, no host identity)."""
    host = fleet_hosts[2]
    name = f"{fleet.prefix}3-web"
    plain = fetch_inventory(host.uri, light=True)
    assert all(d.config_xml is None for d in plain.domains)
    assert next(d for d in plain.domains if d.name == name).config is None  # running: its config is not read
    read = fetch_inventory(host.uri, light=True, keep_config=True)
    web = next(d for d in read.domains if d.name == name)
    assert web.live is not None and web.config is not None and web.affinity is None
    assert web.config_xml == virsh(host.uri, "dumpxml", "--inactive", "--security-info", name)
    running = sum(d.state == "running" for d in read.domains)
    assert read.round_trips == 2 + 4 * running + 2 * (len(read.domains) - running)
    assert "config_xml" not in repr(web)  # secrets stay out of logs


def test_an_apply_session_after_a_read_of_the_host_reuses_its_cpu_map_and_guest_handles(
    fleet_hosts: list[Host],
) -> None:
    """The re-plan's read has just seen the host: the apply's session asks for neither the CPU map nor each
    guest's handle again, so reading a guest's live tuning costs its two getters alone."""
    host = fleet_hosts[0]
    fetch_inventory(host.uri, light=True)
    guest = Domain.objects.filter(host=host, state="running").first()
    assert guest is not None
    session = HostSession(host.uri)
    assert session.rt.count == 0  # the CPU map came from the read
    running = {name: code for code, name in DOMAIN_STATES.items()}["running"]
    snapshot = session.read_guest(str(guest.uuid), ("live",), state=running, with_affinity=False)
    assert snapshot.live is not None
    assert session.rt.count == 2  # live caps and live XML; no lookup of the guest
