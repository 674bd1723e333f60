"""Service functions for the inventory: registering hosts, syncing them, and their CPU partition.

Each function is atomic and writes its audit row in the same transaction. Views, API views, tasks and
management commands validate input and call one of these; none saves inventory state itself."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Case, Count, Q, QuerySet, Value, When
from django.utils import timezone

from hosts.audit import Actor, audit_user
from hosts.cpulist import CpulistError, format_cpulist, parse_cpulist
from hosts.libvirt import connection, deadlines, pools
from hosts.libvirt.errors import HostTimeout, VirtError
from hosts.libvirt.facts import DomainFacts, Inventory
from hosts.libvirt.inventory import fetch_inventory
from hosts.models import AuditEvent, Domain, Host, HostCPU, NumaCell
from hosts.models.rows import update_rows
from hosts.uri import validate_host_uri

log = logging.getLogger(__name__)

_HOST_AUDIT_FIELDS = ("name", "uri", "transport", "allow_unverified", "unverified_reason")


def _host_snapshot(host: Host) -> dict[str, Any]:
    return {name: getattr(host, name) for name in _HOST_AUDIT_FIELDS}


@transaction.atomic
def create_host(
    *, name: str, uri: str, actor: Actor, allow_unverified: bool = False, unverified_reason: str = ""
) -> Host:
    """Register a host after validating its URI; raises ValidationError and saves nothing if refused.

    ``allow_unverified`` (with a reason) is the admin's override for URI parameters that switch off checking
    the host's certificate or SSH host key; it is stored on the host, audited and flagged on its pages.
    """
    reason = unverified_reason.strip()
    if allow_unverified and not reason:
        raise ValidationError({"unverified_reason": "Say why this host may be reached without verifying it."})
    parsed = validate_host_uri(uri, allow_unverified=allow_unverified)
    host = Host(
        name=name.strip(),
        uri=parsed.uri,
        transport=parsed.transport,
        allow_unverified=allow_unverified,
        unverified_reason=reason if allow_unverified else "",
    )
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
    inventory: Inventory | None = None  # what was read, for a caller that needs more than the stored rows


def sync_host(host_id: int) -> SyncResult:
    """Read a host's facts, topology and guests from libvirt and store them (see sync_hosts)."""
    return sync_hosts([host_id])[0]


def sync_hosts(host_ids: Sequence[int], *, light: bool = False) -> list[SyncResult]:
    """Sync several hosts: read them from libvirt at the same time, then store them all in one transaction.

    A host that does not answer is marked down with libvirt's reason in plain words and its guests are
    kept, marked stale; the next sync that reaches it brings it back up. ``light=True`` refreshes what
    re-planning a live change needs (see fetch_inventory) and keeps the rest as it was.
    """
    reads = begin_reading_hosts(host_ids, light=light)()
    with transaction.atomic():
        return store_reads(reads)


HostRead = tuple[Host, Inventory | VirtError]


def begin_reading_hosts(
    host_ids: Sequence[int], *, light: bool = False, keep_config: bool = False
) -> Callable[[], list[HostRead]]:
    """Start reading several hosts from libvirt at the same time, and return at once a function that waits
    for the reads and gives them in ``host_ids``' order: the caller can do something else meanwhile.
    ``light`` and ``keep_config`` are fetch_inventory's."""

    def fetch(host: Host) -> Inventory | VirtError:
        try:
            return fetch_inventory(host.uri, name=host.name, light=light, keep_config=keep_config)
        except VirtError as exc:
            return exc

    hosts = {host.pk: host for host in Host.objects.filter(pk__in=set(host_ids)).annotate(guests=Count("domains"))}
    if not hosts:
        raise Host.DoesNotExist(f"no host among {list(host_ids)}")
    started, began = time.monotonic(), time.time()
    reads = [(hosts[pk], pools.host_pool().submit(fetch, hosts[pk])) for pk in dict.fromkeys(host_ids) if pk in hosts]

    def answers() -> list[HostRead]:
        # Each host gets its own deadline from when its read began; a hung one costs the others nothing.
        out: list[HostRead] = []
        for host, future in reads:
            seconds = deadlines.host_seconds(host.guests)  # type: ignore[attr-defined]
            try:
                out.append((host, deadlines.wait(future, started + seconds - time.monotonic(), host.name)))
            except HostTimeout:
                connection.mark_stuck(host.uri, future, began)
                out.append((host, HostTimeout(f"{host.name} did not answer within {deadlines.said(seconds)}")))
        return out

    return answers


def store_reads(reads: Sequence[HostRead]) -> list[SyncResult]:
    """Store what ``begin_reading_hosts`` found, in the caller's transaction: the hosts that answered get their
    inventories stored (together, see store_inventories), those that did not are marked down."""
    results = []
    answered: list[tuple[int, Inventory]] = []
    # A host removed while it was being read is left alone (its row locked, so a removal waits for this store).
    registered = set(
        Host.objects.select_for_update().filter(pk__in=[h.pk for h, _ in reads]).values_list("pk", flat=True)
    )
    for host, got in reads:
        if host.pk not in registered:
            results.append(SyncResult(host.pk, ok=False, error="the host was removed while it was being read"))
        elif isinstance(got, VirtError):
            mark_host_down(host.pk, got)
            results.append(SyncResult(host.pk, ok=False, error=got.message))
        else:
            answered.append((host.pk, got))
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
    store_inventories(answered)
    return results


# A host that hangs costs a worker its deadline at every try: it is tried again after this many sync
# intervals, doubling at each failure, at most MAX_RETRY_SECONDS apart. A host that refuses at once is
# tried at every sync; one that refused for a permanent reason (say, authentication) every MAX_RETRY_SECONDS.
MAX_RETRY_SECONDS = 300


def _retry_delay(error: VirtError, failures: int) -> float | None:
    """Seconds before the next periodic sync of a host that failed ``failures`` times in a row with ``error``."""
    if error.unresponsive:
        return min(float(settings.ISOWEB_SYNC_INTERVAL) * 2.0 ** (failures - 1), MAX_RETRY_SECONDS)
    if error.permanent:
        return MAX_RETRY_SECONDS
    return None


@transaction.atomic
def mark_host_down(host_id: int, error: VirtError) -> None:
    """Record that a host did not answer (down: it refused; unresponsive: it hung), with the reason and when
    to try again; keep its guests as they were, marked stale."""
    host = Host.objects.select_for_update().get(pk=host_id)
    was, now = host.status, timezone.now()
    host.status = Host.Status.UNRESPONSIVE if error.unresponsive else Host.Status.DOWN
    if host.status != was or host.status_since is None:
        host.status_since = now
    host.failures += 1
    delay = _retry_delay(error, host.failures)
    host.retry_at = now + timedelta(seconds=delay) if delay is not None else None
    host.last_error = error.message
    host.last_sync_at = now
    host.save(update_fields=["status", "status_since", "failures", "retry_at", "last_error", "last_sync_at"])
    host.domains.update(is_stale=True)
    if was != host.status:
        AuditEvent.objects.create(
            action=AuditEvent.Action.HOST_DOWN,
            host=host,
            object_repr=host.name,
            message=f"{host.get_status_display()}: {error.message}",
        )
    log.warning("host %s is %s: %s", host.name, host.status, error.message)


def hosts_due_for_sync(host_ids: Sequence[int] | None = None) -> list[int]:
    """The hosts (of ``host_ids``, or all) worth reading now: all but those waiting out their retry delay or in
    maintenance (removed hosts are never in ``Host.objects``)."""
    due = _past_retry().filter(maintenance_since__isnull=True)
    if host_ids is not None:
        due = due.filter(pk__in=host_ids)
    return sorted(due.values_list("pk", flat=True))


def hosts_answering(host_ids: Sequence[int]) -> list[int]:
    """The hosts worth waiting for when a change starts: not those the last sync found hung or whose retry
    delay has not passed (only a sync brings a hung host back; a change does not wait for one)."""
    due = _past_retry().filter(pk__in=host_ids).exclude(status=Host.Status.UNRESPONSIVE)
    return sorted(due.values_list("pk", flat=True))


def _past_retry() -> QuerySet[Host]:
    """Hosts not waiting out a retry delay."""
    return Host.objects.filter(Q(retry_at__isnull=True) | Q(retry_at__lte=timezone.now()))


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
_HOST_SYNC_FIELDS = (
    "status",
    "status_since",
    "failures",
    "retry_at",
    "last_error",
    "last_seen_at",
    "last_sync_at",
    "sync_round_trips",
    "sync_seconds",
)


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


def domain_values(facts: DomainFacts, *, complete: bool) -> dict[str, Any]:
    """A guest row's fields as a read found them; what the read did not look at is left out (kept)."""
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
    if facts.config is None and not complete and facts.persistent:
        del values["tuning_config"]  # not read this time: keep what the last full sync saw
    if facts.affinity is None:
        del values["affinity"], values["vcpu_states"]
    return values


def _store_guests(answered: Sequence[tuple[int, Inventory]], ids: list[int], now: datetime) -> None:
    """Write every guest the reads saw, in a fixed number of statements; those no longer defined go."""
    existing = {(d.host_id, str(d.uuid)): d for d in Domain.objects.filter(host_id__in=ids)}
    to_create: list[Domain] = []
    to_update: list[Domain] = []
    for host_id, inventory in answered:
        for facts in inventory.domains:
            values = domain_values(facts, complete=inventory.complete)
            row = existing.pop((host_id, facts.uuid), None)
            if row is None:
                to_create.append(Domain(host_id=host_id, uuid=facts.uuid, synced_at=now, **values))
            elif any(getattr(row, name) != value for name, value in values.items()):
                for name, value in values.items():
                    setattr(row, name, value)
                to_update.append(row)
    # Guests undefined on their host since the last sync are gone for good.
    Domain.objects.filter(pk__in=[d.pk for d in existing.values()]).delete()
    Domain.objects.bulk_create(to_create)
    # Most guests do not change between syncs: rewrite only those that did, stamp all of them.
    update_rows(to_update, _DOMAIN_FIELDS)
    Domain.objects.filter(host_id__in=ids).update(synced_at=now)


@transaction.atomic(savepoint=False)  # a failure aborts the caller's whole transaction anyway
def store_inventories(answered: Sequence[tuple[int, Inventory]]) -> None:
    """Write several hosts' sync findings: host facts, topology (only if it changed), and every guest.

    The statements do not grow with the number of hosts or guests (a complete read's topology is compared,
    and rewritten if it changed, per host): each ORM statement costs a few hundred microseconds of CPU
    here, and this runs on the path between a change's approval and its first write.
    """
    if not answered:
        return
    now = timezone.now()
    ids = [host_id for host_id, _inventory in answered]
    hosts = {host.pk: host for host in Host.objects.select_for_update().filter(pk__in=ids).order_by("pk")}
    came_back = [hosts[pk] for pk in ids if hosts[pk].status in (Host.Status.DOWN, Host.Status.UNRESPONSIVE)]
    for host_id, inventory in answered:
        host = hosts[host_id]
        if host.status != Host.Status.UP or host.status_since is None:
            host.status_since = now
        host.status, host.last_error, host.failures, host.retry_at = Host.Status.UP, "", 0, None
        host.last_seen_at = host.last_sync_at = now
        host.sync_round_trips, host.sync_seconds = inventory.round_trips, inventory.seconds
        if inventory.complete:  # a light read has only which CPUs are online
            host.hostname = inventory.host.hostname
            host.libvirt_version = inventory.host.libvirt_version
            host.hypervisor_version = inventory.host.hypervisor_version
            host.cpu_model = inventory.host.cpu_model
            _store_topology(host, inventory)
    complete = [hosts[pk] for pk, inventory in answered if inventory.complete]
    light = [(pk, inventory) for pk, inventory in answered if not inventory.complete]
    update_rows(complete, [*_HOST_SYNC_FIELDS, *_HOST_IDENTITY_FIELDS])
    update_rows([hosts[pk] for pk, _inventory in light], _HOST_SYNC_FIELDS)
    if light:
        # One statement, touching only the CPUs that came online or went offline.
        online = Q()
        for pk, inventory in light:
            online |= Q(host_id=pk, cpu_id__in=inventory.host.online)
        changed = (online & Q(online=False)) | (~online & Q(online=True))
        HostCPU.objects.filter(host_id__in=[pk for pk, _inventory in light]).filter(changed).update(
            online=Case(When(online, then=Value(True)), default=Value(False))
        )

    _store_guests(answered, ids, now)
    AuditEvent.objects.bulk_create(
        AuditEvent(action=AuditEvent.Action.HOST_UP, host=host, object_repr=host.name) for host in came_back
    )


@transaction.atomic
def set_host_partition(host_id: int, *, housekeeping_cpus: str, actor: Actor) -> Host:
    """Set which CPUs a host keeps for itself (housekeeping); the other online CPUs form the guest pool."""
    host = Host.objects.select_for_update().get(pk=host_id)
    text = (housekeeping_cpus or "").strip()
    online = set(host.cpus.filter(online=True).values_list("cpu_id", flat=True))
    if text:
        try:
            cpus = parse_cpulist(text, host_cpus=host.cpus.values_list("cpu_id", flat=True))
        except CpulistError as exc:
            raise ValidationError({"housekeeping_cpus": [str(exc)]}) from exc
        offline = sorted(cpus - online)
        if offline:
            raise ValidationError({"housekeeping_cpus": [f"CPU {format_cpulist(offline)} is offline."]})
        if not online - cpus:
            raise ValidationError(
                {"housekeeping_cpus": ["Leave at least one online CPU outside housekeeping for the guests."]}
            )
        text = format_cpulist(cpus)
    before = host.housekeeping_cpus
    host.housekeeping_cpus = text
    host.save(update_fields=["housekeeping_cpus"])
    AuditEvent.objects.create(
        actor=audit_user(actor),
        action=AuditEvent.Action.HOST_PARTITION,
        host=host,
        object_repr=host.name,
        before={"housekeeping_cpus": before},
        after={"housekeeping_cpus": text},
    )
    return host
