"""Websocket consumers of the live charts: ``/ws/hosts/<id>/`` and ``/ws/guests/<id>/``.

A socket is closed before it joins any group unless its user is logged in, holds a role that may view the
inventory and names a host or guest that exists; other origins never get here (``SameOriginValidator``
in ``asgi.py``). On connect the chart gets its recent history, caps and markers in one message, then one
frame per collector tick. What a consumer sends is bounded (history by its store's caps, markers by count)
and what a browser may ask is tiny: a history resolution, at most once a second; anything else is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import timedelta
from typing import Any, ClassVar

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from hosts import roles
from hosts.live import history, interference, push
from hosts.models import AuditEvent, Domain, Host
from hosts.vocabulary import caps_percent

MARKER_ACTIONS = (AuditEvent.Action.CHANGE_APPLIED, AuditEvent.Action.CHANGE_ROLLED_BACK)
MAX_MARKERS = 200
MAX_CLIENT_MESSAGE_BYTES = 512
HISTORY_REQUEST_MIN_SECONDS = 1.0

ISOLATION_REFRESH_ROUNDS = 6  # x WATCH_REFRESH_SECONDS: the score on an open guest page is at most 30 s old

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404


def current_caps(domain_id: int) -> dict[str, float] | None:
    """Return a guest's live caps as the inventory holds them (the apply engine updates it on every change)."""
    domain = Domain.objects.filter(pk=domain_id).values("tuning_live").first()
    if domain is None:
        return None
    return caps_percent((domain["tuning_live"] or {}).get("sched"))


def _marker_label(row: dict[str, Any]) -> str:
    """The marker's label as the apply engine draws it live ("CR-12 applied"), so a reload keeps the number."""
    if row["change_request_id"] is not None:
        return push.change_marker_label(row["change_request_id"], row["action"])
    return str(row["message"] or row["object_repr"])


def _markers(events: Any) -> list[dict[str, Any]]:
    rows = events.filter(action__in=MARKER_ACTIONS, created_at__gte=timezone.now() - timedelta(hours=25))
    rows = rows.order_by("-created_at").values("action", "object_repr", "message", "created_at", "change_request_id")[
        :MAX_MARKERS
    ]
    return [push.marker(row["action"], _marker_label(row), row["created_at"]) for row in reversed(rows)]


def isolation(domain_id: int) -> dict[str, Any]:
    """The guest's isolation score for its page (hosts/live/interference.py), with the threshold it is held to."""
    found = interference.score(domain_id)
    return {
        "score": found.score,
        "sampled_seconds": found.sampled_seconds,
        "threshold": float(settings.ISOWEB_FOREIGN_LOAD_THRESHOLD),
    }


def caps_since(markers: list[dict[str, Any]]) -> float | None:
    """When the guest's current caps came into force, as far as the chart can tell: its last change's marker.

    ``None`` when no change was made in the markers' span: the caps have held at least that long. A change
    that did not touch the caps still counts, so a cap line is never drawn where it may not have held.
    """
    return markers[-1]["t"] if markers else None


class ChartConsumer(AsyncWebsocketConsumer):
    """Stream one host's or guest's chart; subclasses say which and what the chart needs to know."""

    kind: ClassVar[str]
    group: str | None = None
    watch_task: asyncio.Task[None] | None = None
    last_history_request: float = 0.0

    def describe(self, object_id: int) -> dict[str, Any] | None:
        """Return the chart's facts (name, caps, markers, what to mark watched), or ``None`` if absent."""
        raise NotImplementedError

    def _allowed_meta(self, user: Any, object_id: int) -> tuple[bool, dict[str, Any] | None]:
        if not roles.can_view(user):
            return False, None
        return True, self.describe(object_id)

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        self.object_id = int(self.scope["url_route"]["kwargs"]["pk"])
        allowed, meta = await database_sync_to_async(self._allowed_meta)(user, self.object_id)
        if not allowed:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        if meta is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.watch_targets: list[tuple[str, int]] = meta.pop("watch")
        host_down: str | None = meta.pop("host_down")
        self.group = push.group_name(self.kind, self.object_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await sync_to_async(push.mark_watched, thread_sensitive=False)(self.watch_targets)
        self.watch_task = asyncio.create_task(self._keep_watching())
        frames = await sync_to_async(history.recent, thread_sensitive=False)(self.kind, self.object_id)
        hello = json.dumps({"type": "hello", "kind": self.kind, "id": self.object_id, **meta})
        await self.send(text_data=f'{hello[:-1]},"resolution":"{history.FULL}","frames":[{",".join(frames)}]}}')
        if host_down is not None:
            await self.send(text_data=host_down)

    async def _keep_watching(self) -> None:
        rounds = 0
        while True:
            await asyncio.sleep(push.WATCH_REFRESH_SECONDS)
            rounds += 1
            with contextlib.suppress(Exception):  # Redis briefly away: the chart just falls back to slow
                await sync_to_async(push.mark_watched, thread_sensitive=False)(self.watch_targets)
                await self.every_few_seconds(rounds)

    async def every_few_seconds(self, rounds: int) -> None:
        """Send what changes slowly, every ``WATCH_REFRESH_SECONDS`` (``rounds`` counts the calls)."""

    async def disconnect(self, code: int) -> None:
        if self.watch_task is not None:
            self.watch_task.cancel()
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Answer ``{"type": "history", "resolution": "1s"|"1m"}``; ignore everything else."""
        if text_data is None or len(text_data) > MAX_CLIENT_MESSAGE_BYTES:
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            return
        if not isinstance(message, dict) or message.get("type") != "history":
            return
        resolution = message.get("resolution")
        if resolution not in history.RESOLUTIONS:
            return
        now = time.monotonic()
        if now - self.last_history_request < HISTORY_REQUEST_MIN_SECONDS:
            return
        self.last_history_request = now
        frames = await sync_to_async(history.recent, thread_sensitive=False)(
            self.kind, self.object_id, resolution=resolution
        )
        await self.send(text_data=f'{{"type":"history","resolution":"{resolution}","frames":[{",".join(frames)}]}}')

    async def live_text(self, event: dict[str, Any]) -> None:
        """Forward a collector frame or host status as the collector encoded it."""
        await self.send(text_data=event["text"])

    async def live_marker(self, event: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps({"type": "marker", **event["marker"]}))


def _host_down(kind: str, object_id: int, host_id: int) -> str | None:
    """The status message for a chart whose host the inventory knows to be down or not answering."""
    host = Host.objects.filter(pk=host_id).values("status", "last_error", "status_since").first()
    if host is None or host["status"] not in (Host.Status.DOWN, Host.Status.UNRESPONSIVE):
        return None
    since = host["status_since"].timestamp() if host["status_since"] else None
    return push.status_text(kind, object_id, up=False, reason=host["last_error"], since=since)


class HostChartConsumer(ChartConsumer):
    """A host's chart: each host CPU's busy %, and markers of its guests' changes."""

    kind = push.HOST

    def describe(self, object_id: int) -> dict[str, Any] | None:
        host = Host.objects.filter(pk=object_id).values("pk", "name").first()
        if host is None:
            return None
        return {
            "name": host["name"],
            "host_down": _host_down(self.kind, object_id, object_id),
            "markers": _markers(AuditEvent.objects.filter(domain__host_id=object_id)),
            "watch": [(push.HOST, object_id)],
        }


class GuestChartConsumer(ChartConsumer):
    """A guest's chart: per-vCPU load and delay, emulator overhead, its caps and change markers."""

    kind = push.GUEST
    isolation_sent: dict[str, Any] | None = None  # the score last sent to this page

    def describe(self, object_id: int) -> dict[str, Any] | None:
        domain = Domain.objects.filter(pk=object_id).values("pk", "name", "host_id").first()
        if domain is None:
            return None
        markers = _markers(AuditEvent.objects.filter(domain_id=object_id))
        self.isolation_sent = isolation(object_id)
        return {
            "isolation": self.isolation_sent,
            "name": domain["name"],
            "host_down": _host_down(self.kind, object_id, domain["host_id"]),
            "caps": current_caps(object_id) or {},
            "caps_since": caps_since(markers),
            "markers": markers,
            "watch": [(push.GUEST, object_id), (push.HOST, domain["host_id"])],
        }

    async def every_few_seconds(self, rounds: int) -> None:
        """Refresh the guest's isolation score every ``ISOLATION_REFRESH_ROUNDS`` rounds (it moves slowly); only
        a score that changed is sent, so an idle page's socket stays quiet."""
        if rounds % ISOLATION_REFRESH_ROUNDS == 0:
            found = await sync_to_async(isolation, thread_sensitive=False)(self.object_id)
            if found != self.isolation_sent:
                self.isolation_sent = found
                await self.send(text_data=json.dumps({"type": "isolation", "isolation": found}))

    async def live_marker(self, event: dict[str, Any]) -> None:
        """Draw the marker, then the caps the change left behind, in force from the marker on."""
        await super().live_marker(event)
        caps = await database_sync_to_async(current_caps)(self.object_id)
        since = event["marker"]["t"]
        await self.send(text_data=json.dumps({"type": "caps", "caps": caps or {}, "since": since}))
