"""What a locked-out login is told, and which client address the lockout counts against.

django-axes refuses a user name from a client address after too many failed logins (settings: the
authentication section). Its middleware hands the refused request to ``lockout_response``: the login page
says when to try again, the API answers 429 with ``Retry-After``. Every attempt made while locked out counts
as another failure and starts the cool-off again, so the time to retry is now plus the cool-off.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from axes.helpers import get_cool_off
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone


def client_address(request: HttpRequest) -> str:
    """Return the client's address: the connection's own, or the one the trusted proxies say they served.

    With ``ISOWEB_TRUSTED_PROXY_COUNT`` proxies in front, each appending to X-Forwarded-For, the client is the
    Nth entry from the right; anything further left was written by the client and is not believed.
    """
    remote = str(request.META.get("REMOTE_ADDR", ""))
    count = int(getattr(settings, "ISOWEB_TRUSTED_PROXY_COUNT", 0))
    if count <= 0:
        return remote
    forwarded = [part.strip() for part in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")]
    forwarded = [part for part in forwarded if part]
    return forwarded[-count] if len(forwarded) >= count else remote


def lockout_response(request: HttpRequest, *args: Any) -> HttpResponse:
    """Answer a locked-out login: 429 with when to retry, as JSON for the API and as a page otherwise."""
    cool_off = get_cool_off(request) or timedelta(0)
    seconds = max(1, math.ceil(cool_off.total_seconds()))
    retry_at = timezone.now() + timedelta(seconds=seconds)
    if request.path.startswith("/api/"):
        detail = (
            "Too many failed logins for this user name from your address: locked out. "
            f"Try again in {seconds} s (after {retry_at:%Y-%m-%d %H:%M:%S} UTC)."
        )
        response: HttpResponse = JsonResponse(
            {"detail": detail, "retry_after": retry_at.isoformat(), "retry_after_seconds": seconds}, status=429
        )
    else:
        response = render(
            request,
            "registration/lockout.html",
            {"retry_at": retry_at, "retry_after_seconds": seconds, "failure_limit": settings.AXES_FAILURE_LIMIT},
            status=429,
        )
    response["Retry-After"] = str(seconds)
    return response
