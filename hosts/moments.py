"""Moments shown to people: in the user's time zone, always labelled with that zone.

``when(cr.approved_at)`` gives ``<time datetime="2026-12-02T06:54:48+00:00" title="Europe/Berlin,
UTC+01:00">2026-12-02 07:54:48 CET</time>``; ``when(x, "minute")`` leaves out the seconds, ``when(x, "time")``
the date. The zone is the one hosts.timezones activated for the request, so every page agrees. Templates use
these through the ``clock`` template tags (hosts/templatetags/clock.py); tables call them directly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from django.utils.dateformat import format as format_date
from django.utils.html import format_html
from django.utils.timesince import timesince

from hosts.timezones import utc_offset, zone_label

FORMATS = {"second": "Y-m-d H:i:s", "minute": "Y-m-d H:i", "time": "H:i:s"}


def _moment(value: Any) -> Any:
    """A datetime as it is; an ISO 8601 string (as kept in JSON fields) as the datetime it names."""
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return value
    return value


def when(value: Any, precision: str = "second") -> Any:
    """Show a datetime (or an ISO string) in the active zone with the zone's name; anything else as it is."""
    value = _moment(value)
    if not isinstance(value, datetime):
        return value if value not in (None, "") else "—"
    aware = value if timezone.is_aware(value) else timezone.make_aware(value, timezone.get_default_timezone())
    local = timezone.localtime(aware)
    text = f"{format_date(local, FORMATS.get(precision, FORMATS['second']))} {zone_label(aware)}"
    title = f"{timezone.get_current_timezone_name()}, {utc_offset(local)}"
    utc_iso = aware.astimezone(UTC).isoformat()
    return format_html('<time datetime="{}" title="{}">{}</time>', utc_iso, title, text)


def current_zone() -> str:
    """The active zone's IANA name, e.g. for ``<body data-time-zone>``."""
    return timezone.get_current_timezone_name()


def ago(value: Any) -> Any:
    """Show how long ago a moment was, with the labelled moment itself as the tooltip."""
    if not isinstance(value, datetime):
        return value if value not in (None, "") else "—"
    aware = value if timezone.is_aware(value) else timezone.make_aware(value, timezone.get_default_timezone())
    local = timezone.localtime(aware)
    exact = f"{format_date(local, FORMATS['second'])} {zone_label(aware)}"
    return format_html(
        '<time datetime="{}" title="{}">{} ago</time>', aware.astimezone(UTC).isoformat(), exact, timesince(aware)
    )
