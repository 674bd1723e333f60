"""Show every page in its user's time zone: the middleware that activates it, and setting it.

A user's zone is stored in ``UserSettings``. One who never chose a zone gets the browser's: the page's
script (static/js/timezone.js) puts the browser's IANA zone name in the ``isoweb_browser_tz`` cookie, and the
first request that carries it records it for the user (``source=browser``); the settings page changes it
(``source=chosen``). A cookie value is only ever used after it was checked against the zones this machine
knows. The API is left in UTC: its times are ISO 8601 with their offset (``...Z``) whoever asks.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from hosts.models.users import UserSettings, known_time_zones

BROWSER_COOKIE = "isoweb_browser_tz"
API_PREFIX = "/api/"


def browser_zone(request: HttpRequest) -> str | None:
    """Return the browser's zone from its cookie, or None when absent or not a zone this machine knows."""
    value = request.COOKIES.get(BROWSER_COOKIE, "")[:64]
    return value if value in known_time_zones() else None


def set_time_zone(user_id: int, zone: str, *, source: str = UserSettings.Source.CHOSEN) -> UserSettings:
    """Record a user's time zone (validated: an unknown name raises ValidationError naming the field)."""
    row = UserSettings.objects.filter(user_id=user_id).first() or UserSettings(user_id=user_id)
    row.time_zone, row.time_zone_source = zone, source
    row.full_clean(exclude=["user"])
    row.save()
    return row


def _adopt_browser_zone(user_id: int, zone: str) -> None:
    """Record the browser's zone for a user who has none yet (two first requests at once: one wins)."""
    try:
        with transaction.atomic():
            UserSettings.objects.create(user_id=user_id, time_zone=zone, time_zone_source=UserSettings.Source.BROWSER)
    except IntegrityError:
        pass


def user_zone(request: HttpRequest) -> tuple[str, str]:
    """Return the zone a request's pages are shown in and where it came from.

    The source is ``chosen`` or ``browser`` (recorded for the user), ``default`` (a user whose browser has not
    said its zone yet: the server's ``TIME_ZONE``) or ``anonymous`` (nobody logged in).
    """
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        stored = UserSettings.objects.filter(user_id=user.pk).values_list("time_zone", "time_zone_source").first()
        if stored is not None:
            return stored[0], stored[1]
        zone = browser_zone(request)
        if zone is not None:
            _adopt_browser_zone(user.pk, zone)
            return zone, UserSettings.Source.BROWSER
        return str(settings.TIME_ZONE), "default"
    # Before login (the login page): the browser's zone if it said so already; nothing is recorded.
    return browser_zone(request) or str(settings.TIME_ZONE), "anonymous"


class UserTimeZoneMiddleware:
    """Activate the user's time zone for the pages of each request (after authentication)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(API_PREFIX):
            timezone.deactivate()
            return self.get_response(request)
        zone, source = user_zone(request)
        request.time_zone_source = source  # type: ignore[attr-defined]
        timezone.activate(zoneinfo.ZoneInfo(zone))
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()


def zone_label(when: datetime | None = None) -> str:
    """Name the active zone as pages label times: its abbreviation at ``when`` (``CET``), or its offset."""
    moment = timezone.localtime(when) if when is not None else timezone.localtime()
    abbreviation = moment.tzname() or ""
    if abbreviation and not abbreviation.lstrip("+-").isdigit():
        return abbreviation
    return utc_offset(moment)


def utc_offset(moment: datetime) -> str:
    """Return ``UTC+01:00`` for a moment in a zone."""
    offset = moment.utcoffset()
    if offset is None:
        return "UTC"
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
