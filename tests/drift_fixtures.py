"""Helpers for the drift tests: applying a profile through the normal four-eyes flow, and reaching behind
libvirt's back to a guest's vCPU threads and cgroup files (what an operator's ``taskset`` or ``echo`` does)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from hosts.harness.fleet import Fleet
from hosts.models import Domain, Drift, Host
from tests.conftest import ARTIFACTS, _stop, spawn, wait_for

# What the drift tests apply first: every managed field a hand change can then move.
PROFILE = {
    "vcpupin": {"strategy": "explicit", "cpus": {"0": "0-1", "1": "0-1"}},
    "sched": {"vcpu_period": 100000, "vcpu_quota": 50000},
}


def open_drifts(dom_id: int) -> dict[tuple[str, str], Drift]:
    """A guest's open drifts by (scope, field)."""
    return {(d.scope, d.field): d for d in Drift.objects.filter(domain_id=dom_id, resolved_at__isnull=True)}


def apply_profile(op: Client, ap: Client, content: dict[str, Any], domain_ids: list[int], scope: str) -> int:
    """Propose ``content`` for guests as the operator, approve as the approver, wait until it is applied."""
    name = f"drift-test-{abs(hash((str(content), tuple(domain_ids), scope))) % 10**8}"
    profile = op.post("/api/profiles/", {"name": name, "content": content}, content_type="application/json")
    assert profile.status_code == 201, profile.content
    created = op.post(
        "/api/change-requests/",
        {"profile": profile.json()["id"], "domains": domain_ids, "scope": scope, "reason": "drift test"},
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    return approve_and_wait(ap, created.json()["id"])


def approve_and_wait(ap: Client, cr_id: int) -> int:
    """Approve a pending request and wait until the worker has applied it; fail on any other outcome."""
    approved = ap.post(f"/api/change-requests/{cr_id}/approve/", {"comment": "ok"}, content_type="application/json")
    assert approved.status_code == 200, approved.content
    return wait_applied(ap, cr_id)


def wait_applied(client: Client, cr_id: int) -> int:
    def finished() -> bool:
        return client.get(f"/api/change-requests/{cr_id}/").json()["status"] not in ("pending", "scheduled", "applying")

    wait_for(finished, 120, 0.5, what=f"CR-{cr_id} to finish")
    done = client.get(f"/api/change-requests/{cr_id}/").json()
    assert done["status"] == "applied", done
    return cr_id


def vcpu_threads(fleet: Fleet, name: str) -> dict[int, int]:
    """The thread id of each vCPU of a running guest, from its QEMU process's thread names (``CPU 0/KVM``)."""
    member = next(m for m in fleet.members if name in m.guest_names or name.startswith(f"{fleet.prefix}{m.index + 1}-"))
    proc = member.qemu_processes()[name]
    threads = {}
    for task in Path(f"/proc/{proc.pid}/task").iterdir():
        match = re.match(r"CPU (\d+)/", (task / "comm").read_text())
        if match:
            threads[int(match.group(1))] = int(task.name)
    return threads


def affinity_of(tid: int) -> str:
    """The kernel's affinity of a thread, as ``/proc`` says (the independent witness)."""
    status = Path(f"/proc/{tid}/status").read_text()
    return re.search(r"Cpus_allowed_list:\s*(\S+)", status).group(1)  # type: ignore[union-attr]


def taskset(cpus: str, tid: int) -> None:
    subprocess.run(["taskset", "-pc", cpus, str(tid)], check=True, capture_output=True, timeout=10)


def vcpu_quota_file(name: str, vcpu: int = 0) -> Path:
    """The cgroup file holding a vCPU thread's CFS quota (cgroup v1 ``cpu.cfs_quota_us``, v2 ``cpu.max``)."""
    v1 = list(Path("/sys/fs/cgroup/cpu/machine").glob(f"qemu-*-{name}.libvirt-qemu/vcpu{vcpu}/cpu.cfs_quota_us"))
    if v1:
        return v1[0]
    v2 = list(Path("/sys/fs/cgroup/machine.slice").glob(f"*{name}*/libvirt/vcpu{vcpu}/cpu.max"))
    assert len(v2) == 1, f"no cgroup quota file for {name} vCPU {vcpu}"
    return v2[0]


def vcpu_cpuset_file(name: str, vcpu: int = 0) -> Path | None:
    """The cgroup v1 cpuset file of a vCPU thread, or None on a host without the v1 cpuset controller."""
    found = list(Path("/sys/fs/cgroup/cpuset/machine").glob(f"qemu-*-{name}.libvirt-qemu/vcpu{vcpu}/cpuset.cpus"))
    return found[0] if found else None


def write_quota(path: Path, quota: int, period: int = 100000) -> None:
    path.write_text(str(quota) if path.name == "cpu.cfs_quota_us" else f"{quota} {period}")


def domain(name: str) -> Domain:
    return Domain.objects.select_related("host").get(name=name)


@pytest.fixture
def watcher(fleet_hosts: list[Host]) -> Iterator[subprocess.Popen[bytes]]:
    """A real drift watcher process, subscribed to every fleet host before the test goes on."""
    proc, log = spawn("watch-drift", [sys.executable, "manage.py", "watch_drift"])
    path = ARTIFACTS / "watch-drift.log"

    def subscribed() -> bool:
        assert proc.poll() is None, f"watch_drift exited; see {path}"
        text = path.read_text(errors="replace")
        return all(f"watching {host.name} for drift events" in text for host in fleet_hosts)

    try:
        wait_for(subscribed, 60, 0.2, what="watch_drift to subscribe to every host")
        yield proc
    finally:
        _stop(proc)
        log.close()
