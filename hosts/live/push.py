"""Push live data to browsers: group names, who is watching, and every send to the channel layer from sync code.

One module owns the sync-to-channel-layer boundary so there is one place that decides how a message is
shaped and what it costs. The collector sends a whole tick through :class:`Publisher`, which keeps one
event loop (and so one pool of channels-redis connections) for the life of the process instead of paying
``async_to_sync``'s loop setup per message; other sync code (the apply engine) calls
:func:`announce_markers` after its transaction commits.

Watching: every open chart refreshes a short-lived Redis key for its guest and host; the collector samples
watched hosts every second and the others at its background rate, and sends frames only to watched groups.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from hosts.live import history

log = logging.getLogger(__name__)

WATCH_TTL_SECONDS = 15
WATCH_REFRESH_SECONDS = 5
HOST, GUEST = "host", "guest"


def group_name(kind: str, object_id: int) -> str:
    """Return the channel-layer group of one host's or guest's live chart."""
    return f"stats.{kind}.{int(object_id)}"


def host_group(host_id: int) -> str:
    return group_name(HOST, host_id)


def guest_group(domain_id: int) -> str:
    return group_name(GUEST, domain_id)


def _watch_key(kind: str, object_id: int) -> str:
    return f"isoweb:watch:{kind}:{int(object_id)}"


def mark_watched(targets: Iterable[tuple[str, int]]) -> None:
    """Note that someone has these charts open, for the next ``WATCH_TTL_SECONDS``."""
    pipe = history.client().pipeline(transaction=False)
    for kind, object_id in targets:
        pipe.set(_watch_key(kind, object_id), 1, ex=WATCH_TTL_SECONDS)
    pipe.execute()


def watched(kind: str, object_ids: Iterable[int]) -> set[int]:
    """Return which of these hosts or guests have an open chart."""
    ids = list(object_ids)
    if not ids:
        return set()
    values = history.client().mget([_watch_key(kind, i) for i in ids])
    return {i for i, value in zip(ids, values, strict=True) if value is not None}


def frame_text(kind: str, object_id: int, frame_json: str) -> str:
    """Wrap a stored frame as the websocket message a chart receives each tick."""
    return f'{{"type":"frame","kind":"{kind}","id":{int(object_id)},"frame":{frame_json}}}'


def status_text(kind: str, object_id: int, *, up: bool, reason: str = "", since: float | None = None) -> str:
    """Return the message telling a chart its host stopped (since ``since``, epoch seconds) or resumed answering."""
    message = {"type": "status", "kind": kind, "id": int(object_id), "up": up, "reason": reason[:300]}
    if since:
        message["since"] = round(since, 3)
    return json.dumps(message)


SENDS_IN_FLIGHT = 32  # group sends one publisher has in flight at once, across all its callers


class Publisher:
    """Send many messages to many groups from sync threads, on one private event loop."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="live-publisher", daemon=True)
        self._thread.start()
        self._layer = get_channel_layer()
        # Each group send holds a Redis connection while it runs, and the channel layer's pool refuses more
        # than 100 at once ("Too many connections"): a tick of a host with 100 guests, or several hosts
        # ticking together, would lose frames. Every send of this publisher shares this bound instead.
        self._in_flight = asyncio.Semaphore(SENDS_IN_FLIGHT)

    async def _send_one(self, group: str, text: str) -> None:
        async with self._in_flight:
            await self._layer.group_send(group, {"type": "live.text", "text": text})

    async def _send_all(self, messages: list[tuple[str, str]]) -> None:
        results = await asyncio.gather(
            *(self._send_one(group, text) for group, text in messages), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                log.warning("could not push a live frame: %s", result)

    def send(self, messages: list[tuple[str, str]], timeout: float = 5.0) -> None:
        """Send each ``(group, text)``: one channel-layer message per group, all concurrently."""
        if messages and self._layer is not None:
            asyncio.run_coroutine_threadsafe(self._send_all(messages), self._loop).result(timeout)

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def marker(kind: str, label: str, ts: datetime | float) -> dict[str, Any]:
    """Return a chart marker: a change applied or rolled back at ``ts`` (a datetime or epoch seconds).

    ``kind`` is an audit action (``change.applied``, ``change.rolled_back``); the short forms ``applied`` and
    ``rolled_back`` are accepted and normalised, so live and reloaded markers look the same.
    """
    when = ts.timestamp() if isinstance(ts, datetime) else float(ts)
    kind = str(kind)
    if "." not in kind:
        kind = f"change.{kind}"
    return {"kind": kind[:40], "label": str(label)[:200], "t": round(when, 3)}


def change_marker_label(change_request_id: int, kind: str) -> str:
    """Label a change request's marker the same way live and from history: ``CR-12 applied``."""
    short = str(kind).rsplit(".", 1)[-1].replace("_", " ")
    return f"CR-{int(change_request_id)} {short}"


def announce_markers(markers: Iterable[tuple[int, int | None, str, str, datetime | float]]) -> None:
    """Draw markers on guests' charts (and their hosts') now, for everyone watching, in one go.

    Each marker is ``(domain_id, host_id, kind, label, ts)``. Call this after the transactions that
    recorded the changes have committed, so a chart that reloads its caps on a marker reads the new ones.
    ``kind`` is the audit action, e.g. ``"change.applied"`` or ``"change.rolled_back"``. A channel layer that
    is down loses only the live markers; charts show them from the audit log on their next load.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    sends: list[tuple[str, dict[str, Any]]] = []
    for domain_id, host_id, kind, label, ts in markers:
        message = {"type": "live.marker", "domain_id": int(domain_id), "marker": marker(kind, label, ts)}
        sends.append((guest_group(domain_id), message))
        if host_id is not None:
            sends.append((host_group(host_id), message))
    if not sends:
        return

    async def send_all() -> list[Any]:
        return await asyncio.gather(*(layer.group_send(g, m) for g, m in sends), return_exceptions=True)

    try:
        failures = [r for r in async_to_sync(send_all)() if isinstance(r, BaseException)]
    except Exception as exc:  # the changes themselves have succeeded; lost live markers must not fail them
        failures = [exc]
    if failures:
        log.warning("could not announce %d of %d chart markers: %s", len(failures), len(sends), failures[0])


def drift_text(drift: dict[str, Any]) -> str:
    """Return the message telling an open page that a drift was found, changed or resolved."""
    return json.dumps({"type": "drift", "drift": drift}, default=str)


def announce_drift(drifts: Iterable[dict[str, Any]]) -> None:
    """Tell the open pages of the guests and hosts concerned that these drifts were found, changed or resolved.

    Each drift is a dict with at least ``id``, ``domain_id`` and ``host_id`` (hosts.drift.record's shape). Call
    this after the transaction that recorded them has committed; a channel layer that is down loses only the
    live notice (the pages read the drifts on their next load).
    """
    layer = get_channel_layer()
    if layer is None:
        return
    sends: list[tuple[str, dict[str, Any]]] = []
    for drift in drifts:
        message = {"type": "live.text", "text": drift_text(drift)}
        sends.append((guest_group(drift["domain_id"]), message))
        sends.append((host_group(drift["host_id"]), message))
    if not sends:
        return

    async def send_all() -> list[Any]:
        return await asyncio.gather(*(layer.group_send(g, m) for g, m in sends), return_exceptions=True)

    try:
        failures = [r for r in async_to_sync(send_all)() if isinstance(r, BaseException)]
    except Exception as exc:  # the drift is recorded; a lost live notice must not undo that
        failures = [exc]
    if failures:
        log.warning("could not announce %d of %d drift notices: %s", len(failures), len(sends), failures[0])
