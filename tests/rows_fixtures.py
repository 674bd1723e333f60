"""Inventory rows without a fleet: a host of four CPUs with one running guest, for page tests about words and
times (the database is what these tests are about; the fleet tests prove the libvirt side)."""

from __future__ import annotations

import uuid
from typing import Any

from hosts.models import Domain, Host, HostCPU, NumaCell


def host_with_guest(tuning: dict[str, Any], *, name: str = "kvm-rows", guest: str = "rows-guest") -> Domain:
    """Return a running two-vCPU guest on an up host of four CPUs, with ``tuning`` live and in the config."""
    host = Host.objects.create(
        name=name,
        uri=f"qemu+tcp://127.0.0.1:{Host.objects.count() + 16000}/system",
        transport="tcp",
        status=Host.Status.UP,
    )
    cell = NumaCell.objects.create(host=host, cell_id=0)
    HostCPU.objects.bulk_create(
        HostCPU(host=host, cell=cell, cpu_id=c, core_id=c, socket_id=0, siblings=str(c)) for c in range(4)
    )
    return Domain.objects.create(
        host=host,
        uuid=uuid.uuid4(),
        name=guest,
        state="running",
        vcpus_current=2,
        vcpus_max=2,
        tuning_live=tuning,
        tuning_config=tuning,
        affinity={"0": "0-3", "1": "0-3"},
    )
