"""Applied pins are checked against the kernel, not only against libvirt's word: the QEMU threads' real
affinity (``taskset -pc`` on ``/proc/<qemu pid>/task/*``), the guest's cpuset cgroups, and virsh's live and
persistent views, and the change request's per-guest result reports the same values."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from hosts.harness.fleet import Fleet
from hosts.models import ChangeTarget, Domain, Host
from tests.conftest import virsh, wait_for

pytestmark = [pytest.mark.fleet, pytest.mark.django_db(transaction=True)]

# The db guest's vCPUs 0-1 already hold CPU 1, so its own plan may put every vCPU there; its emulator and
# iothread go to the housekeeping CPU 0. vCPUs 2-3 and the iothread float over 0-1 before the change.
PINS = {
    "vcpupin": {"strategy": "explicit", "cpus": {"0": "1", "1": "1", "2": "1", "3": "1"}},
    "emulatorpin": {"strategy": "housekeeping"},
    "iothreadpin": {"strategy": "housekeeping"},
}


def thread_affinity(fleet: Fleet, index: int, name: str) -> dict[str, str]:
    """Return ``thread name -> CPU list`` for every thread of a guest's QEMU process, as the kernel says."""
    pid = (fleet.host(index).directory / "run" / "qemu" / f"{name}.pid").read_text().strip()
    out: dict[str, str] = {}
    for task in sorted(Path(f"/proc/{pid}/task").iterdir()):
        comm = (task / "comm").read_text().strip()
        taskset = subprocess.run(["taskset", "-pc", task.name], capture_output=True, text=True, check=True)
        out[comm if task.name != pid else "main"] = taskset.stdout.rsplit(":", 1)[1].strip()
    return out


def cpuset_cgroup(name: str, *parts: str) -> str:
    matches = list(Path("/sys/fs/cgroup/cpuset/machine").glob(f"qemu-*-{name}.libvirt-qemu"))
    assert len(matches) == 1, matches
    return matches[0].joinpath(*parts, "cpuset.cpus").read_text().strip()


def pin_table(output: str) -> dict[str, str]:
    """Parse ``virsh -q vcpupin``/``iothreadinfo`` lines (``N  cpulist``) into a dict."""
    return dict(line.split() for line in output.splitlines() if line.strip())


def sched(output: str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in output.splitlines() if ":" in line)}


@pytest.fixture
def restore_db_guest(fleet: Fleet) -> Iterator[str]:
    """Put isoa1-db back as the fleet defined it even if the test fails half-way (the fleet lives all session)."""
    uri, name = fleet.host(0).uri, f"{fleet.prefix}1-db"
    xml = virsh(uri, "dumpxml", "--inactive", "--security-info", name)
    live_vcpus = pin_table(virsh(uri, "vcpupin", name, "--live"))
    live_io = pin_table(virsh(uri, "iothreadinfo", name, "--live"))
    live_emulator = virsh(uri, "emulatorpin", name, "--live").split()[-1]
    yield name
    path = fleet.host(0).directory / "restore-db.xml"
    path.write_text(xml)
    virsh(uri, "define", str(path))
    for vcpu, cpus in live_vcpus.items():
        virsh(uri, "vcpupin", name, vcpu, cpus, "--live")
    for iothread, cpus in live_io.items():
        virsh(uri, "iothreadpin", name, iothread, cpus, "--live")
    virsh(uri, "emulatorpin", name, live_emulator, "--live")


def test_applied_pins_show_in_thread_affinity_cgroups_virsh_and_the_result(
    fleet: Fleet,
    fleet_hosts: list[Host],
    celery_worker: subprocess.Popen[bytes],
    restore_db_guest: str,
    operator: User,
    approver: User,
    admin_user: User,
    login: Callable[[User], Client],
) -> None:
    name, uri = restore_db_guest, fleet.host(0).uri
    op, ap = login(operator), login(approver)
    partition = login(admin_user).post(f"/api/hosts/{fleet_hosts[0].pk}/partition/", {"housekeeping_cpus": "0"})
    assert partition.status_code == 200, partition.content
    threads = thread_affinity(fleet, 0, name)
    assert threads["CPU 2/KVM"] == "0,1" and threads["IO iothread1"] == "0,1"  # the change is not a no-op

    profile = op.post("/api/profiles/", {"name": "db-iso", "content": PINS}, content_type="application/json")
    assert profile.status_code == 201, profile.content
    domain = Domain.objects.get(name=name)
    created = op.post(
        "/api/change-requests/",
        {"profile": profile.json()["id"], "domains": [domain.pk], "scope": "both", "reason": "isolate db"},
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    cr_id = created.json()["id"]
    approved = ap.post(f"/api/change-requests/{cr_id}/approve/", {"comment": "ok"}, content_type="application/json")
    assert approved.status_code == 200, approved.content
    wait_for(
        lambda: ap.get(f"/api/change-requests/{cr_id}/").json()["status"] not in ("scheduled", "applying"),
        90,
        0.5,
        "apply",
    )
    done = ap.get(f"/api/change-requests/{cr_id}/").json()
    assert done["status"] == "applied", done

    # The kernel: each vCPU thread may run on CPU 1 only; the emulator (main thread) and iothread on CPU 0.
    threads = thread_affinity(fleet, 0, name)
    assert {n: threads[f"CPU {n}/KVM"] for n in range(4)} == dict.fromkeys(range(4), "1"), threads
    assert threads["main"] == "0" and threads["IO iothread1"] == "0", threads
    assert [cpuset_cgroup(name, f"vcpu{n}") for n in range(4)] == ["1"] * 4
    assert cpuset_cgroup(name, "emulator") == "0"
    assert cpuset_cgroup(name, "iothread1") == "0"

    # libvirt, live and persistent.
    for scope in ("--live", "--config"):
        assert pin_table(virsh(uri, "vcpupin", name, scope)) == {"0": "1", "1": "1", "2": "1", "3": "1"}
        assert virsh(uri, "emulatorpin", name, scope).split()[-1] == "0"
        assert pin_table(virsh(uri, "iothreadinfo", name, scope)) == {"1": "0"}

    # What the request reports is what the kernel and libvirt say.
    (result,) = done["results"]
    for scope in ("live", "config"):
        assert result["after"][scope]["vcpupin"] == {"0": "1", "1": "1", "2": "1", "3": "1"}
        assert result["after"][scope]["emulatorpin"] == "0"
        assert result["after"][scope]["iothreadpin"] == {"1": "0"}
    assert result["after"]["affinity"] == {"0": "1", "1": "1", "2": "1", "3": "1"}
    assert result["before"]["live"]["vcpupin"]["2"] == "0-1"
    assert ChangeTarget.objects.get(change_request_id=cr_id).after == {
        k: v for k, v in result["after"].items() if k != "config_xml"
    }

    # The inventory is refreshed right after the request is recorded (no sync needed): the guest's API shows
    # the new pins.
    def synced() -> dict[str, Any] | None:
        body: dict[str, Any] = op.get(f"/api/domains/{domain.pk}/").json()
        return body if body["tuning"]["live"]["vcpupin"]["2"] == "1" else None

    body = wait_for(synced, 10, 0.05, "the inventory to show the new pins")
    assert isinstance(body, dict) and body["affinity"]["2"] == "1", body

    rolled = ap.post(f"/api/change-requests/{cr_id}/rollback/")
    assert rolled.status_code == 202, rolled.content
    wait_for(lambda: ap.get(f"/api/change-requests/{cr_id}/").json()["status"] == "rolled_back", 90, 0.5, "rollback")
    threads = thread_affinity(fleet, 0, name)
    assert threads["CPU 2/KVM"] == "0,1" and threads["IO iothread1"] == "0,1", threads
    assert threads["CPU 0/KVM"] == "1" and threads["main"] == "0"  # as the fleet pinned them
    assert pin_table(virsh(uri, "vcpupin", name, "--config"))["2"] == "0-1"
