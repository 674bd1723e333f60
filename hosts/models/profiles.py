"""Pin profiles: named, versioned descriptions of how a guest's threads are placed and capped."""

from __future__ import annotations

from django.db import models
from django.urls import reverse


class PinProfile(models.Model):
    """A named pin profile. Its content lives in immutable revisions; editing adds a revision."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    created_by = models.ForeignKey("auth.User", null=True, on_delete=models.SET_NULL, related_name="pin_profiles")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("hosts:profile-detail", args=[self.pk])

    @property
    def latest_revision(self) -> PinProfileRevision | None:
        return self.revisions.order_by("-number").first()


class PinProfileRevision(models.Model):
    """One version of a profile's content, in libvirt's vocabulary; never changed once written.

    ``content`` is the normalised profile JSON (see hosts/planning/schema.py): any of ``vcpupin``,
    ``emulatorpin``, ``iothreadpin``, ``sched`` and ``allow_shared_emulator``.
    """

    profile = models.ForeignKey(PinProfile, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    content = models.JSONField()
    comment = models.CharField(max_length=200, blank=True)
    created_by = models.ForeignKey(
        "auth.User", null=True, on_delete=models.SET_NULL, related_name="pin_profile_revisions"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["profile", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["profile", "number"], name="profile_revision_number_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.profile.name} r{self.number}"
