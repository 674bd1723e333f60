"""Whether the parts isoweb depends on answer right now, for pages to say so plainly.

The broker (Redis) carries every queued sync, apply and rollback. While it is unreachable, decisions are
still recorded (beat starts approved requests and unsent rollbacks once it is back) but nothing runs, and
every page says so in a banner rather than leaving operators to wonder why nothing moves.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
from django.conf import settings
from django.http import HttpRequest

CHECK_EVERY_SECONDS = 5.0  # a page asks at most this often per process
PING_TIMEOUT_SECONDS = 0.5

_lock = threading.Lock()
_last: tuple[float, bool] = (-1e9, True)


def broker_reachable() -> bool:
    """Whether the task broker answers a PING within half a second (checked at most every 5 s)."""
    global _last
    with _lock:
        checked_at, answer = _last
    if time.monotonic() - checked_at < CHECK_EVERY_SECONDS:
        return answer
    client = redis.Redis.from_url(
        settings.CELERY_BROKER_URL, socket_timeout=PING_TIMEOUT_SECONDS, socket_connect_timeout=PING_TIMEOUT_SECONDS
    )
    try:
        answer = bool(client.ping())
    except (redis.RedisError, OSError):
        answer = False
    finally:
        client.close()
    with _lock:
        _last = (time.monotonic(), answer)
    return answer


def health_context(request: HttpRequest) -> dict[str, Any]:
    """Template context: ``broker_down`` for the banner on every page of a logged-in user."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"broker_down": not broker_reachable()}
