"""A guest's QEMU threads from libvirt only, checked against the qemu process in /proc.

The API's thread ids must be the vCPU and I/O threads of the guest's qemu process (``/proc/<pid>/task/<tid>/comm``
says ``CPU n/KVM``, or ``CPU n/TCG`` where the fleet runs without KVM, and ``IO iothreadN``), and where each
may run must be the kernel's ``Cpus_allowed_list`` for that thread, also after a live ``virsh vcpupin``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from hosts.cpulist import parse_cpulist
from hosts.harness.fleet import Fleet
from hosts.inventory import sync_host
from hosts.models import Domain, Host
from tests.conftest import logged_in_page, virsh, wait_for

pytestmark = [pytest.mark.fleet]


def _status(tid: int) -> dict[str, str]:
    lines = Path(f"/proc/{tid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _comm(pid: int, tid: int) -> str:
    return Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()


def _threads(client: Client, domain: Domain) -> dict[str, Any]:
    answer = client.get(f"/api/guests/{domain.pk}/threads/")
    assert answer.status_code == 200, answer.content
    return dict(answer.json())


def _guest(fleet: Fleet, hosts: list[Host], suffix: str) -> Domain:
    return Domain.objects.get(host=hosts[0], name=f"{fleet.prefix}1-{suffix}")


@pytest.mark.django_db
def test_the_thread_ids_and_affinities_are_the_qemu_process_threads(
    fleet: Fleet, fleet_hosts: list[Host], viewer: User, login: Callable[[User], Client]
) -> None:
    guest = _guest(fleet, fleet_hosts, "batch")  # 3 vCPUs, 2 I/O threads
    body = _threads(login(viewer), guest)
    assert body["running"] is True
    vcpus = [t for t in body["threads"] if t["kind"] == "vcpu"]
    iothreads = [t for t in body["threads"] if t["kind"] == "iothread"]
    [emulator] = [t for t in body["threads"] if t["kind"] == "emulator"]
    assert [t["number"] for t in vcpus] == [0, 1, 2]
    assert sorted(t["number"] for t in iothreads) == [1, 2]

    pid = int(_status(vcpus[0]["thread_id"])["Tgid"])  # the qemu process these threads belong to
    assert f"guest={guest.name}" in Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
    tasks = {int(p.name) for p in Path(f"/proc/{pid}/task").iterdir()}
    for thread in vcpus:
        assert thread["thread_id"] in tasks
        assert _comm(pid, thread["thread_id"]) in (f"CPU {thread['number']}/KVM", f"CPU {thread['number']}/TCG")
        allowed = _status(thread["thread_id"])["Cpus_allowed_list"]
        assert parse_cpulist(thread["affinity"]) == parse_cpulist(allowed)
        assert thread["last_cpu"] in parse_cpulist(allowed)
        assert thread["cpu_time_ns"] >= 0
    for thread in iothreads:
        assert thread["thread_id"] in tasks
        assert _comm(pid, thread["thread_id"]) == f"IO iothread{thread['number']}"
        assert parse_cpulist(thread["affinity"]) == parse_cpulist(_status(thread["thread_id"])["Cpus_allowed_list"])
    # The emulator's thread id (the process id) is not available through libvirt; its pin set is the main
    # thread's.
    assert emulator["thread_id"] is None
    assert parse_cpulist(emulator["affinity"]) == parse_cpulist(_status(pid)["Cpus_allowed_list"])
    assert emulator["cpu_time_ns"] >= 0


@pytest.mark.django_db
def test_a_live_vcpupin_shows_in_the_threads_as_the_kernel_has_it(
    fleet: Fleet, fleet_hosts: list[Host], viewer: User, login: Callable[[User], Client]
) -> None:
    guest = _guest(fleet, fleet_hosts, "web")
    client = login(viewer)
    vcpu1 = next(t for t in _threads(client, guest)["threads"] if t["kind"] == "vcpu" and t["number"] == 1)
    target = "0" if parse_cpulist(vcpu1["affinity"]) != {0} else "1"
    virsh(fleet.host(0).uri, "vcpupin", guest.name, "1", target, "--live")
    try:
        moved = next(t for t in _threads(client, guest)["threads"] if t["kind"] == "vcpu" and t["number"] == 1)
        assert moved["thread_id"] == vcpu1["thread_id"]
        assert moved["affinity"] == target
        assert _status(moved["thread_id"])["Cpus_allowed_list"] == target
    finally:
        virsh(fleet.host(0).uri, "vcpupin", guest.name, "1", vcpu1["affinity"], "--live")


@pytest.mark.django_db
def test_a_guest_that_does_not_run_has_no_threads_and_unknown_ids_are_404(
    fleet: Fleet, fleet_hosts: list[Host], viewer: User, login: Callable[[User], Client]
) -> None:
    client = login(viewer)
    burner = _guest(fleet, fleet_hosts, "burn")  # defined, left shut off by the tests' fleet
    assert burner.state == "shutoff"
    body = _threads(client, burner)
    assert body["running"] is False and body["threads"] == []
    assert client.get("/api/guests/999999/threads/").status_code == 404
    assert client.get(f"/api/guests/{2**63}/threads/").status_code == 404
    assert Client().get(f"/api/guests/{burner.pk}/threads/").status_code in (401, 403)


@pytest.mark.django_db(transaction=True)
def test_the_guest_page_lists_the_threads_and_their_share(
    fleet: Fleet, fleet_hosts: list[Host], web_server: str, viewer: User
) -> None:
    guest = _guest(fleet, fleet_hosts, "db")  # 4 vCPUs, one I/O thread
    assert sync_host(fleet_hosts[0].pk).ok
    url = f"{web_server}{guest.get_absolute_url()}"
    with logged_in_page(web_server, viewer) as page:
        page.goto(url)
        rows = "[data-guest-threads] tbody tr"
        wait_for(lambda: page.locator(rows).count() == 4 + 1 + 1, 20, 0.25, "vCPUs, emulator and I/O thread rows")
        shown = page.eval_on_selector_all(
            rows,
            "rs => rs.map(r => [r.dataset.kind, r.dataset.threadId, r.querySelector('[data-field=share]').innerText])",
        )
        vcpu_tids = [int(tid) for kind, tid, _share in shown if kind == "vcpu"]
        pid = int(_status(vcpu_tids[0])["Tgid"])
        assert [_comm(pid, tid).split("/")[0] for tid in vcpu_tids] == [f"CPU {n}" for n in range(4)]
        # A second reading gives each vCPU its share of one CPU since the first.
        wait_for(
            lambda: all(
                share.endswith("%")
                for share in page.locator(f"{rows}[data-kind=vcpu] [data-field=share]").all_inner_texts()
            ),
            15,
            0.25,
            "every vCPU's share",
        )
