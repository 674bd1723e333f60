"""Keep the charts' recent past in Redis: 16 minutes at full resolution and 25 hours in 1-minute buckets.

Why Redis sorted sets rather than the database: the collector writes one frame per guest per second; at
100 guests on a handful of hosts that is hundreds of rows a second, which would dominate SQLite's single
writer and every backup, for data nobody needs after a day. Redis is already running (broker and channel
layer), writes are pipelined (one round trip per host per tick), and a sorted set scored by the sample's
wall time answers "the last N seconds" with one ``ZRANGEBYSCORE``, survives page reloads and collector
restarts, and is trimmed by time and by count so memory stays bounded: at most ``FULL_MAX_FRAMES`` +
``MINUTE_MAX_FRAMES`` frames per guest or host, and a vanished guest's keys expire after a day.
A frame (its format: hosts/live/frames.py) is stored as the JSON text the websocket sends, so history goes
out without re-encoding.
Losing Redis loses the charts' past, never anything the product relies on.

Downsampling happens in the collector (:class:`MinuteBuckets`): the minute in progress is lost if the
collector restarts, which costs at most one point of the 24-hour view.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings

from hosts.live import frames

FULL = "1s"
MINUTE = "1m"
FULL_SECONDS = 16 * 60
FULL_MAX_FRAMES = 1200
MINUTE_SECONDS = 25 * 3600
MINUTE_MAX_FRAMES = 1600
KEY_TTL_SECONDS = MINUTE_SECONDS
RESOLUTIONS = {FULL: (FULL_SECONDS, FULL_MAX_FRAMES), MINUTE: (MINUTE_SECONDS, MINUTE_MAX_FRAMES)}

# Frame fields (hosts/live/frames.py): per-item lists keyed by an id list, and scalars.
_KEYED_FIELDS = frames.KEYED_FIELDS
_SCALAR_FIELDS = frames.SCALAR_FIELDS

_client_lock = threading.Lock()
_clients: dict[str, redis.Redis] = {}


def client() -> redis.Redis:
    """Return this process's Redis client for ``REDIS_URL`` (thread-safe, pooled)."""
    url = settings.REDIS_URL
    with _client_lock:
        if url not in _clients:
            _clients[url] = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        return _clients[url]


def key(resolution: str, kind: str, object_id: int) -> str:
    """Return the sorted set holding one guest's or host's frames at one resolution."""
    return f"isoweb:stats:{resolution}:{kind}:{object_id}"


def add(pipe: Any, resolution: str, kind: str, object_id: int, frame_json: str, ts: float) -> None:
    """Queue one frame on a pipeline (the collector sends a whole tick in one round trip)."""
    pipe.zadd(key(resolution, kind, object_id), {frame_json: ts})


def trim(pipe: Any, resolution: str, kind: str, object_id: int, now: float) -> None:
    """Queue dropping frames older than the resolution's span or beyond its count, and refresh the TTL."""
    span, most = RESOLUTIONS[resolution]
    name = key(resolution, kind, object_id)
    pipe.zremrangebyscore(name, "-inf", now - span)
    pipe.zremrangebyrank(name, 0, -(most + 1))
    pipe.expire(name, KEY_TTL_SECONDS)


def recent(kind: str, object_id: int, *, resolution: str = FULL, seconds: float | None = None) -> list[str]:
    """Return the stored frames (JSON texts, oldest first) of the last ``seconds`` at one resolution."""
    span, most = RESOLUTIONS[resolution]
    since = f"({time.time() - (seconds or span)}"
    members = client().zrangebyscore(key(resolution, kind, object_id), since, "+inf", start=0, num=most)
    return [m.decode() if isinstance(m, bytes) else str(m) for m in members]


@dataclass
class _Bucket:
    minute: int
    count: int = 0
    scalars: dict[str, list[float]] = field(default_factory=dict)
    keyed: dict[str, dict[int, list[float]]] = field(default_factory=dict)

    def add(self, frame: dict[str, Any]) -> None:
        self.count += 1
        for name in _SCALAR_FIELDS:
            value = frame.get(name)
            if isinstance(value, int | float):
                acc = self.scalars.setdefault(name, [0.0, 0.0])
                acc[0] += value
                acc[1] += 1
        for ids_name, value_names in _KEYED_FIELDS.items():
            ids = frame.get(ids_name)
            if not isinstance(ids, list):
                continue
            for value_name in value_names:
                values = frame.get(value_name)
                if not isinstance(values, list):
                    continue  # an optional field this frame does not carry
                # A value name may follow different id lists in different kinds of frame ("f").
                per_id = self.keyed.setdefault(f"{ids_name}.{value_name}", {})
                for item, value in zip(ids, values, strict=False):
                    if isinstance(value, int | float):
                        acc = per_id.setdefault(item, [0.0, 0.0])
                        acc[0] += value
                        acc[1] += 1

    def frame(self) -> dict[str, Any]:
        out: dict[str, Any] = {"t": self.minute * 60}
        for name, (total, count) in self.scalars.items():
            out[name] = round(total / count, 1)
        for ids_name, value_names in _KEYED_FIELDS.items():
            present = [v for v in value_names if f"{ids_name}.{v}" in self.keyed]
            if not present:
                continue
            ids = sorted({i for v in present for i in self.keyed[f"{ids_name}.{v}"]})
            out[ids_name] = ids
            for value_name in present:
                per_id = self.keyed[f"{ids_name}.{value_name}"]
                out[value_name] = [round(per_id[i][0] / per_id[i][1], 1) if i in per_id else None for i in ids]
        return out


class MinuteBuckets:
    """Average each series' full-resolution frames into 1-minute frames, emitting a minute once it is over."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, int], _Bucket] = {}

    def add(self, kind: str, object_id: int, frame: dict[str, Any]) -> dict[str, Any] | None:
        """Add a frame; return the previous minute's averaged frame when this frame starts a new minute."""
        minute = math.floor(frame["t"] / 60)
        series = (kind, object_id)
        bucket = self._buckets.get(series)
        finished = None
        if bucket is None or bucket.minute != minute:
            if bucket is not None and bucket.count:
                finished = bucket.frame()
            bucket = self._buckets[series] = _Bucket(minute)
        bucket.add(frame)
        return finished

    def forget(self, keep: set[tuple[str, int]]) -> None:
        """Drop the buckets of series no longer collected (guests gone), bounding memory."""
        for series in list(self._buckets):
            if series not in keep:
                del self._buckets[series]


def dumps(frame: dict[str, Any]) -> str:
    """Encode a frame compactly (it is stored and sent as is)."""
    return json.dumps(frame, separators=(",", ":"))
