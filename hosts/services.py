"""Service functions: every change to hosts and their inventory goes through here.

Each function is atomic and writes its audit row in the same transaction. Views, API views, tasks and
management commands validate input and call one of these; none saves domain state itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import as_completed
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AnonymousUser, User
from django.db import transaction
from django.db.models import Case, Q, Value, When
from django.utils import timezone

from hosts import libvirt_client, threads
from hosts.libvirt_client import Inventory, VirtError
from hosts.models import AuditEvent, Domain, Host, HostCPU, NumaCell
from hosts.models.rows import update_rows
from hosts.uri import validate_host_uri

log = logging.getLogger(__name__)

_HOST_AUDIT_FIELDS = ("name", "uri", "transport")


Actor = User | AnonymousUser | None


def audit_user(actor: Actor) -> User | None:
    """Return the acting user for the audit row; None stands for the system itself."""
    return actor if isinstance(actor, User) else None


def _host_snapshot(host: Host) -> dict[str, Any]:
    return {name: getattr(host, name) for name in _HOST_AUDIT_FIELDS}


@transaction.atomic
def create_host(*, name: str, uri: str, actor: Actor) -> Host:
    """Register a host after validating its URI; raises ValidationError and saves nothing if refused."""
    parsed = validate_host_uri(uri)
    host = Host(name=name.strip(), uri=parsed.uri, transport=parsed.transport)
    host.full_clean()
    host.save()
    AuditEvent.objects.create(
        actor=audit_user(actor),
        action=AuditEvent.Action.HOST_CREATE,
        host=host,
        object_repr=host.name,
        after=_host_snapshot(host),
    )
    return host


@dataclass(frozen=True)
class SyncResult:
    """What one sync of one host did."""

    host_id: int
    ok: bool
    domains: int = 0
    round_trips: int = 0
    seconds: float = 0.0
    error: str = ""
    transient: bool = False
    inventory: Inventory | None = None  # what was read, for a caller that needs more than the stored rows


def sync_host(host_id: int) -> SyncResult:
    """Read a host's facts, topology and guests from libvirt and store them (see sync_hosts)."""
    return sync_hosts([host_id])[0]


def sync_hosts(host_ids: Sequence[int], *, light: bool = False) -> list[SyncResult]:
    """Sync several hosts: read them from libvirt at the same time, then store them all in one transaction.

    A host that does not answer is marked down with libvirt's reason in plain words and its guests are
    kept, marked stale; the next sync that reaches it brings it back up. ``light=True`` refreshes what
    re-planning a live change needs (see libvirt_client.fetch_inventory) and keeps the rest as it was.
    """
    reads = read_hosts(host_ids, light=light)
    with transaction.atomic():
        return store_reads(reads)


HostRead = tuple[Host, Inventory | VirtError]


def read_hosts(host_ids: Sequence[int], *, light: bool = False) -> list[HostRead]:
    """Read several hosts from libvirt at the same time (no database write); in ``host_ids``' order."""
    reads = {host.pk: (host, got) for host, got in read_hosts_as_answered(host_ids, light=light)}
    return [reads[pk] for pk in dict.fromkeys(host_ids) if pk in reads]


def read_hosts_as_answered(
    host_ids: Sequence[int], *, light: bool = False, keep_config: bool = False
) -> Iterator[HostRead]:
    """Start reading several hosts from libvirt at the same time; the iterator returned gives each as soon as
    it has answered (or failed), so the caller can store one host while the others are still being read.
    ``light`` and ``keep_config`` are libvirt_client.fetch_inventory's."""

    def fetch(host: Host) -> HostRead:
        try:
            return host, libvirt_client.fetch_inventory(host.uri, light=light, keep_config=keep_config)
        except VirtError as exc:
            return host, exc

    hosts = list(Host.objects.filter(pk__in=set(host_ids)).order_by("pk"))
    if not hosts:
        raise Host.DoesNotExist(f"no host among {list(host_ids)}")
    futures = [threads.host_pool().submit(fetch, host) for host in hosts]  # the reads start here, not when
    return (future.result() for future in as_completed(futures))  # the caller begins to iterate


def store_reads(reads: Sequence[HostRead]) -> list[SyncResult]:
    """Store what ``read_hosts`` found, in the caller's transaction: a host that answered gets its inventory
    stored, one that did not is marked down."""
    results = []
    for host, got in reads:
        if isinstance(got, VirtError):
            mark_host_down(host.pk, got.message)
            results.append(SyncResult(host.pk, ok=False, error=got.message, transient=not got.permanent))
        else:
            store_inventory(host.pk, got)
            results.append(
                SyncResult(
                    host.pk,
                    ok=True,
                    domains=len(got.domains),
                    round_trips=got.round_trips,
                    seconds=got.seconds,
                    inventory=got,
                )
            )
    return results


@transaction.atomic
def mark_host_down(host_id: int, reason: str) -> None:
    """Record that a host did not answer; keep its guests as they were, marked stale."""
    host = Host.objects.select_for_update().get(pk=host_id)
    was = host.status
    host.status = Host.Status.DOWN
    host.last_error = reason
    host.last_sync_at = timezone.now()
    host.save(update_fields=["status", "last_error", "last_sync_at"])
    host.domains.update(is_stale=True)
    if was != Host.Status.DOWN:
        AuditEvent.objects.create(
            action=AuditEvent.Action.HOST_DOWN,
            host=host,
            object_repr=host.name,
            message=reason,
        )
    log.warning("host %s is down: %s", host.name, reason)


def _store_topology(host: Host, inventory: Inventory) -> None:
    wanted = {
        (cpu.cpu_id, cell.cell_id, cpu.socket_id, cpu.die_id, cpu.core_id, cpu.siblings, cpu.online)
        for cell in inventory.host.cells
        for cpu in cell.cpus
    }
    have = set(
        HostCPU.objects.filter(host=host).values_list(
            "cpu_id", "cell__cell_id", "socket_id", "die_id", "core_id", "siblings", "online"
        )
    )
    cells_wanted = {(c.cell_id, c.memory_kib) for c in inventory.host.cells}
    cells_have = set(NumaCell.objects.filter(host=host).values_list("cell_id", "memory_kib"))
    if wanted == have and cells_wanted == cells_have:
        return
    NumaCell.objects.filter(host=host).delete()  # cascades to the CPUs
    for cell in inventory.host.cells:
        row = NumaCell.objects.create(host=host, cell_id=cell.cell_id, memory_kib=cell.memory_kib)
        HostCPU.objects.bulk_create(
            HostCPU(
                host=host,
                cell=row,
                cpu_id=cpu.cpu_id,
                socket_id=cpu.socket_id,
                die_id=cpu.die_id,
                core_id=cpu.core_id,
                siblings=cpu.siblings,
                online=cpu.online,
            )
            for cpu in cell.cpus
        )


# What a sync writes to the host's row; only a complete read has the host's identity.
_HOST_SYNC_FIELDS = ("status", "last_error", "last_seen_at", "last_sync_at", "sync_round_trips", "sync_seconds")
_HOST_IDENTITY_FIELDS = ("hostname", "libvirt_version", "hypervisor_version", "cpu_model")

_DOMAIN_FIELDS = (
    "name",
    "state",
    "persistent",
    "is_stale",
    "vcpus_current",
    "vcpus_max",
    "placement",
    "iothread_ids",
    "tuning_live",
    "tuning_config",
    "affinity",
    "vcpu_states",
)


@transaction.atomic(savepoint=False)  # a failure aborts the caller's whole transaction anyway
def store_inventory(host_id: int, inventory: Inventory) -> None:
    """Write one sync's findings: host facts, topology (only if it changed), and every guest."""
    host = Host.objects.select_for_update().get(pk=host_id)
    now = timezone.now()
    came_back = host.status == Host.Status.DOWN
    host.status = Host.Status.UP
    host.last_error = ""
    host.last_seen_at = host.last_sync_at = now
    if inventory.complete:  # a light read has only which CPUs are online
        host.hostname = inventory.host.hostname
        host.libvirt_version = inventory.host.libvirt_version
        host.hypervisor_version = inventory.host.hypervisor_version
        host.cpu_model = inventory.host.cpu_model
    host.sync_round_trips = inventory.round_trips
    host.sync_seconds = inventory.seconds
    host.save(update_fields=[*_HOST_SYNC_FIELDS, *(_HOST_IDENTITY_FIELDS if inventory.complete else ())])
    if inventory.complete:
        _store_topology(host, inventory)
    else:
        # One statement, touching only the CPUs that came online or went offline.
        online = Q(cpu_id__in=inventory.host.online)
        HostCPU.objects.filter(host=host).filter((online & Q(online=False)) | (~online & Q(online=True))).update(
            online=Case(When(online, then=Value(True)), default=Value(False))
        )

    existing = {str(d.uuid): d for d in Domain.objects.filter(host=host)}
    to_create: list[Domain] = []
    to_update: list[Domain] = []
    for facts in inventory.domains:
        values = {
            "name": facts.name,
            "state": facts.state,
            "persistent": facts.persistent,
            "is_stale": False,
            "vcpus_current": facts.vcpus_current,
            "vcpus_max": facts.vcpus_max,
            "placement": facts.placement,
            "iothread_ids": list(facts.iothread_ids),
            "tuning_live": facts.live.as_json() if facts.live else None,
            "tuning_config": facts.config.as_json() if facts.config else None,
            "affinity": {str(k): v for k, v in sorted((facts.affinity or {}).items())},
            "vcpu_states": {str(k): v for k, v in sorted(facts.vcpu_states.items())},
        }
        if facts.config is None and not inventory.complete and facts.persistent:
            del values["tuning_config"]  # not read this time: keep what the last full sync saw
        if facts.affinity is None:
            del values["affinity"], values["vcpu_states"]
        row = existing.pop(facts.uuid, None)
        if row is None:
            to_create.append(Domain(host=host, uuid=facts.uuid, synced_at=now, **values))
        elif any(getattr(row, name) != value for name, value in values.items()):
            for name, value in values.items():
                setattr(row, name, value)
            to_update.append(row)
    Domain.objects.bulk_create(to_create)
    # Most guests do not change between syncs: rewrite only those that did, stamp all of them.
    update_rows(to_update, _DOMAIN_FIELDS)
    Domain.objects.filter(host=host).update(synced_at=now)
    # Guests undefined on the host since the last sync are gone for good.
    Domain.objects.filter(pk__in=[d.pk for d in existing.values()]).delete()
    if came_back:
        AuditEvent.objects.create(action=AuditEvent.Action.HOST_UP, host=host, object_repr=host.name)
