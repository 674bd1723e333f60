"""The audit log: an append-only record of every change."""

from __future__ import annotations

from typing import Any

from django.db import models


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    """Audit events can be added and read, never changed or removed, one by one or in bulk."""

    def update(self, **kwargs: Any) -> int:
        raise ValueError("audit events are append-only")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise ValueError("audit events are append-only")

    def bulk_update(self, *args: Any, **kwargs: Any) -> int:
        raise ValueError("audit events are append-only")


class AuditEvent(models.Model):
    """An append-only record of a change: who did what to which object, with the before and after.

    Rows are written by service functions in the same transaction as the change they record, and are
    never updated or deleted through the ORM.
    """

    class Action(models.TextChoices):
        HOST_CREATE = "host.create", "Host added"
        HOST_UPDATE = "host.update", "Host changed"
        HOST_PARTITION = "host.partition", "Host CPU partition set"
        HOST_DOWN = "host.down", "Host went down"
        HOST_UP = "host.up", "Host came back"
        PROFILE_CREATE = "profile.create", "Profile created"
        PROFILE_REVISE = "profile.revise", "Profile revised"
        CHANGE_CREATE = "change.create", "Change request submitted"
        CHANGE_APPROVE = "change.approve", "Change request approved"
        CHANGE_REJECT = "change.reject", "Change request rejected"
        CHANGE_APPLY = "change.apply", "Apply started"
        CHANGE_APPLIED = "change.applied", "Guest changed and verified"
        CHANGE_FAILED = "change.failed", "Guest change failed and was restored"
        CHANGE_ABORTED = "change.aborted", "Change request failed before touching anything"
        CHANGE_ROLLBACK = "change.rollback", "Rollback requested"
        CHANGE_ROLLED_BACK = "change.rolled_back", "Guest rolled back"
        CHANGE_UNKNOWN = "change.unknown", "Host stopped answering mid-change: guest to verify"
        CHANGE_SETTLED = "change.settled", "Guest left unknown verified when its host answered"
        DRIFT_FOUND = "drift.found", "Drift found"
        DRIFT_RESOLVED = "drift.resolved", "Drift resolved"
        DRIFT_REASSERT = "drift.reassert", "Approved state re-asserted automatically"
        HOST_MAINTENANCE = "host.maintenance", "Host put in maintenance"
        HOST_RESUME = "host.resume", "Host back in service"
        HOST_REMOVE = "host.remove", "Host removed"
        USER_CREATE = "user.create", "User created"
        USER_UPDATE = "user.update", "User changed"
        USER_DEACTIVATE = "user.deactivate", "User deactivated"
        USER_PASSWORD = "user.password", "Password reset"
        TOKEN_CREATE = "token.create", "API token created"
        TOKEN_REVOKE = "token.revoke", "API token revoked"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        "auth.User",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="audit_events",
        help_text="Who acted; empty for the system (e.g. a sync noticing a host went down).",
    )
    action = models.CharField(max_length=40, choices=Action.choices, db_index=True)
    host = models.ForeignKey(
        "hosts.Host", null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    domain = models.ForeignKey(
        "hosts.Domain", null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    change_request = models.ForeignKey(
        "hosts.ChangeRequest", null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    profile = models.ForeignKey(
        "hosts.PinProfile", null=True, blank=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    object_repr = models.CharField(max_length=200, help_text="What was changed, as it was named then.")
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    message = models.TextField(blank=True)

    # Foreign keys to deleted hosts, users, ... are still set to NULL: Django does that through the base
    # manager, not this one.
    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action} {self.object_repr}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise ValueError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise ValueError("audit events are append-only")
