"""The inventory: libvirt hosts, their CPU topology, their guests and their CPU tuning."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse


class HostQuerySet(models.QuerySet["Host"]):
    """Hosts, narrowed to those isoweb may talk to."""

    def in_service(self) -> HostQuerySet:
        """Hosts not in maintenance: synced, charted and changed (removed hosts are never in ``Host.objects``)."""
        return self.filter(maintenance_since__isnull=True)


class RegisteredHostManager(models.Manager["Host"]):
    """The hosts of the inventory: a removed host is kept (its change requests and audit events name it) but
    is no longer listed, synced, charted or changed. ``Host.all_objects`` has the removed ones too; foreign
    keys (a change target's host) reach them through Django's plain base manager."""

    def get_queryset(self) -> HostQuerySet:
        return HostQuerySet(self.model, using=self._db).filter(removed_at__isnull=True)

    def in_service(self) -> HostQuerySet:
        return self.get_queryset().in_service()


class Host(models.Model):
    """A libvirt host that isoweb reaches through a URI and keeps in sync.

    Its lifecycle (hosts/host_lifecycle.py): an admin may edit its name and URI, put it in maintenance (no
    sync, apply or chart touches it; change requests on its guests are refused) and back, and remove it. A
    removal is soft: the row stays, with ``removed_at``, so the change requests and audit events that name it
    stay readable, while its guests leave the inventory. Names and URIs are unique among registered hosts only.
    """

    class Status(models.TextChoices):
        UP = "up", "Up"
        DOWN = "down", "Down"
        UNRESPONSIVE = "unresponsive", "Not answering"
        UNKNOWN = "unknown", "Unknown"

    class Transport(models.TextChoices):
        LOCAL = "local", "Local"
        UNIX = "unix", "Unix socket"
        TCP = "tcp", "TCP (unencrypted)"
        TLS = "tls", "TLS"
        SSH = "ssh", "SSH"

    name = models.CharField(max_length=100)
    uri = models.CharField("libvirt URI", max_length=500)
    transport = models.CharField(max_length=10, choices=Transport.choices)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.UNKNOWN)
    last_seen_at = models.DateTimeField(null=True, blank=True, help_text="Last time the host answered.")
    last_sync_at = models.DateTimeField(null=True, blank=True, help_text="Last sync attempt.")
    last_error = models.TextField(blank=True, help_text="Why the last sync failed, in plain words.")
    status_since = models.DateTimeField(null=True, blank=True, help_text="Since when the host has this status.")
    failures = models.PositiveIntegerField(default=0, help_text="Syncs in a row that found the host down or hung.")
    retry_at = models.DateTimeField(
        null=True, blank=True, help_text="A host that does not answer is not synced again before this."
    )
    hostname = models.CharField(max_length=255, blank=True)
    libvirt_version = models.CharField(max_length=32, blank=True)
    hypervisor_version = models.CharField(max_length=32, blank=True)
    cpu_model = models.CharField(max_length=100, blank=True)
    sync_round_trips = models.PositiveIntegerField(null=True, blank=True)
    sync_seconds = models.FloatField(null=True, blank=True)
    housekeeping_cpus = models.CharField(
        max_length=200,
        blank=True,
        help_text="CPUs reserved for the host's own work and QEMU emulator threads (a cpulist); "
        "the other online CPUs form the guest pool.",
    )
    auto_reassert = models.BooleanField(
        "re-assert automatically",
        default=False,
        help_text="Put the approved state back on this host's guests as soon as drift is found, "
        "without a change request to approve (each repair is audited with the drift it repaired).",
    )
    allow_unverified = models.BooleanField(
        "allow unverified connections",
        default=False,
        help_text="An admin's override: accept URI parameters that switch off checking the host's certificate or "
        "SSH host key (no_verify=1). Flagged on every host page.",
    )
    unverified_reason = models.CharField("reason for allowing unverified connections", max_length=300, blank=True)
    maintenance_since = models.DateTimeField(
        null=True, blank=True, help_text="In maintenance since then: not synced, charted or changed."
    )
    maintenance_reason = models.CharField(max_length=300, blank=True, help_text="Why the host is in maintenance.")
    removed_at = models.DateTimeField(null=True, blank=True, help_text="Removed from the inventory then.")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = RegisteredHostManager()
    all_objects = models.Manager()  # noqa: DJ012 - declared second so that ``objects`` stays the default manager

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["name"], condition=models.Q(removed_at__isnull=True), name="host_name_unique_registered"
            ),
            models.UniqueConstraint(
                fields=["uri"], condition=models.Q(removed_at__isnull=True), name="host_uri_unique_registered"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("hosts:host-detail", args=[self.pk])

    def validate_constraints(self, exclude: Collection[str] | None = None) -> None:
        """Report a name or URI that another registered host has against its field (the conditional unique
        constraints, which hold it in the database, would report it against no field)."""
        skip = set(exclude or ())
        if not self.is_removed:
            others = Host.objects.exclude(pk=self.pk) if self.pk else Host.objects.all()
            labels = {"name": "name", "uri": "libvirt URI"}
            errors = {
                field: [f"Another host already has this {label}."]
                for field, label in labels.items()
                if field not in skip and others.filter(**{field: getattr(self, field)}).exists()
            }
            if errors:
                raise ValidationError(errors)
        super().validate_constraints(exclude={*skip, "name", "uri"})

    @property
    def in_maintenance(self) -> bool:
        return self.maintenance_since is not None

    @property
    def is_removed(self) -> bool:
        return self.removed_at is not None

    @property
    def is_encrypted(self) -> bool:
        return self.transport != self.Transport.TCP


class NumaCell(models.Model):
    """A NUMA cell of a host."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="cells")
    cell_id = models.PositiveIntegerField()
    memory_kib = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["host", "cell_id"]
        constraints = [
            models.UniqueConstraint(fields=["host", "cell_id"], name="numacell_unique_per_host"),
        ]

    def __str__(self) -> str:
        return f"{self.host} cell {self.cell_id}"


class HostCPU(models.Model):
    """A logical CPU of a host, placed in its NUMA cell, socket and core."""

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="cpus")
    cell = models.ForeignKey(NumaCell, on_delete=models.CASCADE, related_name="cpus")
    cpu_id = models.PositiveIntegerField()
    socket_id = models.IntegerField(null=True, blank=True)
    die_id = models.IntegerField(null=True, blank=True)
    core_id = models.IntegerField(null=True, blank=True)
    siblings = models.CharField(max_length=100, help_text="Hyperthread siblings as a cpulist.")
    online = models.BooleanField(default=True)

    class Meta:
        ordering = ["host", "cpu_id"]
        constraints = [
            models.UniqueConstraint(fields=["host", "cpu_id"], name="hostcpu_unique_per_host"),
        ]

    def __str__(self) -> str:
        return f"{self.host} CPU {self.cpu_id}"


class Domain(models.Model):
    """A libvirt guest ("domain") on a host, with its CPU tuning live and in the persistent config.

    ``tuning_live`` and ``tuning_config`` hold what libvirt's getters report, in libvirt's vocabulary:
    ``{"vcpupin": {"0": "0-3"}, "emulatorpin": "0-3", "iothreadpin": {"1": "0-3"}, "sched": {...}}``.
    ``affinity`` is the kernel's real affinity of each vCPU thread, which can differ from the pin.
    """

    class State(models.TextChoices):
        RUNNING = "running", "Running"
        BLOCKED = "blocked", "Blocked"
        PAUSED = "paused", "Paused"
        SHUTDOWN = "shutdown", "Shutting down"
        SHUTOFF = "shutoff", "Shut off"
        CRASHED = "crashed", "Crashed"
        PMSUSPENDED = "pmsuspended", "Suspended"
        NOSTATE = "nostate", "No state"

    class Placement(models.TextChoices):
        STATIC = "static", "Static"
        AUTO = "auto", "Auto (numad)"

    host = models.ForeignKey(Host, on_delete=models.CASCADE, related_name="domains")
    uuid = models.UUIDField()
    name = models.CharField(max_length=200)
    state = models.CharField(max_length=16, choices=State.choices, default=State.NOSTATE)
    persistent = models.BooleanField(default=True)
    is_stale = models.BooleanField(
        default=False, help_text="The host did not answer the last sync; this is the last known state."
    )
    vcpus_current = models.PositiveIntegerField(default=0)
    vcpus_max = models.PositiveIntegerField(default=0)
    placement = models.CharField(max_length=10, choices=Placement.choices, default=Placement.STATIC)
    iothread_ids = models.JSONField(default=list, blank=True)
    tuning_live = models.JSONField(null=True, blank=True)
    tuning_config = models.JSONField(null=True, blank=True)
    affinity = models.JSONField(default=dict, blank=True)
    vcpu_states = models.JSONField(default=dict, blank=True)
    synced_at = models.DateTimeField(null=True, blank=True)
    desired_state = models.JSONField(
        default=dict,
        blank=True,
        help_text="What the applied change requests say each managed field should be, per scope: "
        '{"live": {...}, "config": {...}} in the shape of ChangeTarget.desired. Fields no request set '
        "are not managed.",
    )

    class Meta:
        ordering = ["host__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["host", "uuid"], name="domain_uuid_unique_per_host"),
        ]
        indexes = [models.Index(fields=["name"], name="domain_name_idx")]

    def __str__(self) -> str:
        return f"{self.name} on {self.host}"

    def get_absolute_url(self) -> str:
        return reverse("hosts:domain-detail", args=[self.pk])

    @property
    def is_running(self) -> bool:
        return self.state in {self.State.RUNNING, self.State.BLOCKED, self.State.PAUSED}

    def tuning_rows(self) -> list[dict[str, Any]]:
        """Return every tuning field with its live and config value, flagging differences."""
        live = self.tuning_live or {}
        config = self.tuning_config or {}
        rows: list[dict[str, Any]] = []

        def add(label: str, lv: Any, cv: Any, *, unset: Any = None) -> None:
            # In the persistent config a scheduler parameter of 0 means "not set": the default applies.
            both = self.tuning_live is not None and self.tuning_config is not None
            differs = both and cv != unset and lv != cv
            rows.append({"field": label, "live": lv, "config": cv, "differs": differs, "unset": cv == unset})

        vcpus = sorted({*live.get("vcpupin", {}), *config.get("vcpupin", {})}, key=int)
        for n in vcpus:
            add(f"vcpupin {n}", live.get("vcpupin", {}).get(n), config.get("vcpupin", {}).get(n))
        add("emulatorpin", live.get("emulatorpin"), config.get("emulatorpin"))
        threads = sorted({*live.get("iothreadpin", {}), *config.get("iothreadpin", {})}, key=int)
        for n in threads:
            add(f"iothreadpin {n}", live.get("iothreadpin", {}).get(n), config.get("iothreadpin", {}).get(n))
        names = list(dict.fromkeys([*live.get("sched", {}), *config.get("sched", {})]))
        for name in names:
            add(name, live.get("sched", {}).get(name), config.get("sched", {}).get(name), unset=0)
        return rows
