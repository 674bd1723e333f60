"""Drift: a managed field of a guest found holding something other than what approved changes put there."""

from __future__ import annotations

from django.db import models


class Drift(models.Model):
    """One field of one guest, in one scope, that differs from its desired state.

    The desired state (``Domain.desired_state``) is what the applied change requests say the field should
    be; only fields some request set are managed. A drift stays open until the field holds the desired value
    again (by a remediation request, an automatic re-assert, or a hand change back) and is then resolved.
    """

    class Scope(models.TextChoices):
        LIVE = "live", "Live"
        CONFIG = "config", "Persistent config"

    class DetectedBy(models.TextChoices):
        EVENT = "event", "libvirt event"
        POLL = "poll", "Periodic verification"
        START = "start", "Guest started with other config values"

    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="drifts")
    domain = models.ForeignKey("hosts.Domain", on_delete=models.CASCADE, related_name="drifts")
    scope = models.CharField(max_length=10, choices=Scope.choices)
    field = models.CharField(max_length=64, help_text="The field in libvirt's vocabulary, e.g. 'vcpupin 0'.")
    expected = models.JSONField(null=True, blank=True, help_text="The desired value.")
    observed = models.JSONField(null=True, blank=True, help_text="What the guest held when it was found.")
    detected_by = models.CharField(max_length=10, choices=DetectedBy.choices)
    detected_at = models.DateTimeField(db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True, db_index=True)
    resolution = models.CharField(max_length=200, blank=True, help_text="How it was resolved, in plain words.")
    remediation = models.ForeignKey(
        "hosts.ChangeRequest",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="remediated_drifts",
        help_text="The change request proposed (or applied automatically) to put the desired value back.",
    )

    class Meta:
        ordering = ["-detected_at", "-id"]
        constraints = [
            # At most one open drift per guest, scope and field.
            models.UniqueConstraint(
                fields=["domain", "scope", "field"],
                condition=models.Q(resolved_at__isnull=True),
                name="drift_open_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.domain.name} {self.scope} {self.field}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None
