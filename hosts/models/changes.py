"""Change requests: a profile revision proposed for guests, approved by someone else, applied by workers."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q
from django.urls import reverse


class ChangeRequest(models.Model):
    """A proposal to apply one profile revision to some guests, in some scope, for a stated reason.

    Someone other than the requester approves or rejects it; the rule is checked by the service with the
    row locked and by the ``change_request_four_eyes`` constraint, so no code path can approve its own.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending approval"
        REJECTED = "rejected", "Rejected"
        SCHEDULED = "scheduled", "Approved, waiting to apply"
        APPLYING = "applying", "Applying"
        APPLIED = "applied", "Applied"
        PARTIALLY_APPLIED = "partially_applied", "Partially applied"
        FAILED = "failed", "Failed"
        ROLLED_BACK = "rolled_back", "Rolled back"

    class Scope(models.TextChoices):
        LIVE = "live", "Live (running guest only)"
        CONFIG = "config", "Persistent config (next start)"
        BOTH = "both", "Live and persistent config"

    profile_revision = models.ForeignKey(
        "hosts.PinProfileRevision", on_delete=models.PROTECT, related_name="change_requests"
    )
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.BOTH)
    reason = models.TextField()
    apply_at = models.DateTimeField(null=True, blank=True, help_text="Apply no earlier than this; empty: at once.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING, db_index=True)
    status_message = models.TextField(blank=True, help_text="Why the request stands as it does, in plain words.")
    requested_by = models.ForeignKey("auth.User", on_delete=models.PROTECT, related_name="change_requests")
    created_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.PROTECT, related_name="decided_change_requests"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_comment = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    rolled_back_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.PROTECT, related_name="rolled_back_change_requests"
    )
    rolled_back_at = models.DateTimeField(null=True, blank=True)

    # A request that changed (or tried to change) guests can be rolled back.
    ROLLBACKABLE = (Status.APPLIED, Status.PARTIALLY_APPLIED, Status.FAILED)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(decided_by__isnull=True) | ~Q(decided_by=F("requested_by")),
                name="change_request_four_eyes",
                violation_error_message="A change request must be decided by someone other than its requester.",
            ),
        ]

    def __str__(self) -> str:
        return f"CR-{self.pk} {self.profile_revision}"

    def get_absolute_url(self) -> str:
        return reverse("hosts:change-detail", args=[self.pk])

    @property
    def rolling_back(self) -> bool:
        """A rollback was asked for and some of its per-host jobs have not finished.

        Reads ``jobs`` through ``.all()`` so that lists which prefetch them ask the database nothing more.
        """
        return any(job.kind == ApplyJob.Kind.ROLLBACK and job.status != ApplyJob.Status.DONE for job in self.jobs.all())


class ChangeTarget(models.Model):
    """One guest of a change request: its plan, the snapshot taken before applying, and the result."""

    class Status(models.TextChoices):
        PLANNED = "planned", "Planned"
        APPLYING = "applying", "Applying"
        APPLIED = "applied", "Applied and verified"
        FAILED = "failed", "Failed, restored"
        RESTORE_FAILED = "restore_failed", "Failed, restore failed too"
        SKIPPED = "skipped", "Not applied"
        ROLLED_BACK = "rolled_back", "Rolled back"
        UNKNOWN = "unknown", "Unknown: the host stopped answering mid-change; verified when it answers"

    # Guests a rollback puts back: changed, or possibly half-changed.
    ROLLBACKABLE = (Status.APPLIED, Status.RESTORE_FAILED)

    change_request = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="targets")
    host = models.ForeignKey("hosts.Host", on_delete=models.PROTECT, related_name="change_targets")
    domain = models.ForeignKey("hosts.Domain", null=True, on_delete=models.SET_NULL, related_name="change_targets")
    domain_uuid = models.UUIDField()
    domain_name = models.CharField(max_length=200)
    desired = models.JSONField(help_text="The planned tuning: only the fields the profile sets.")
    diff = models.JSONField(default=list, help_text="Per field: current value, desired value, whether it changes.")
    warnings = models.JSONField(default=list)
    before = models.JSONField(null=True, blank=True, help_text="Snapshot taken just before applying.")
    after = models.JSONField(null=True, blank=True, help_text="What libvirt reported after applying.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PLANNED)
    error = models.TextField(blank=True)
    restore_error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["change_request", "host__name", "domain_name"]
        constraints = [
            models.UniqueConstraint(fields=["change_request", "host", "domain_uuid"], name="change_target_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.change_request} → {self.domain_name}"


class ApplyJob(models.Model):
    """One unit of worker work: apply (or roll back) a change request's guests on one host.

    A job is claimed by the worker that creates it (or later, with the host rows locked, if its host was
    busy), so a redelivered task never runs the same job twice at once; a job whose worker died, or whose
    lease expired, is claimed again.
    """

    class Kind(models.TextChoices):
        APPLY = "apply", "Apply"
        ROLLBACK = "rollback", "Roll back"
        SETTLE = "settle", "Verify guests left unknown"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"

    change_request = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="jobs")
    host = models.ForeignKey("hosts.Host", on_delete=models.PROTECT, related_name="apply_jobs")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveIntegerField(default=0)
    claimed_at = models.DateTimeField(null=True, blank=True, help_text="Last sign of life of the claiming worker.")
    claimed_by = models.CharField(max_length=200, blank=True, help_text="hostname:pid of the claiming worker.")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["change_request", "host", "kind"], name="apply_job_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.change_request} on {self.host}"
