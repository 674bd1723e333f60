"""Per-user settings: the time zone every page shows times in."""

from __future__ import annotations

import zoneinfo
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models


@lru_cache(maxsize=1)
def known_time_zones() -> frozenset[str]:
    """Return the IANA zone names this machine knows (``Europe/Berlin``, ``UTC``, ...)."""
    return frozenset(zoneinfo.available_timezones())


def validate_time_zone(value: str) -> None:
    """Refuse a name that is not an IANA time zone this machine knows."""
    if value not in known_time_zones():
        raise ValidationError(
            "%(value)s is not a known time zone; use an IANA name such as Europe/Berlin or UTC.",
            code="unknown_time_zone",
            params={"value": str(value)[:64]},
        )


class UserSettings(models.Model):
    """One user's display settings: the time zone pages show times in.

    A user who never chose one gets the browser's zone, recorded the first time it is seen (``source``
    says which), so every page, every session and the chart axes agree on one clock.
    """

    class Source(models.TextChoices):
        BROWSER = "browser", "Taken from the browser"
        CHOSEN = "chosen", "Chosen by the user"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="isoweb_settings")
    time_zone = models.CharField(max_length=64, validators=[validate_time_zone], help_text="An IANA zone name.")
    time_zone_source = models.CharField(max_length=10, choices=Source.choices, default=Source.BROWSER)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "user settings"
        verbose_name_plural = "user settings"

    def __str__(self) -> str:
        return f"settings of {self.user}"
