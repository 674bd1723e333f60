"""One libvirt connection per host per process: opening, keepalive, the event loop, counting round trips."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import libvirt

from hosts.libvirt.errors import translate_error

log = logging.getLogger(__name__)

T = TypeVar("T")


_lock = threading.Lock()


_connections: dict[str, libvirt.virConnect] = {}


@dataclass(frozen=True)
class _Seen:
    """What the last inventory read of a connection saw: an apply that follows in the same process uses it
    instead of asking again (the CPU map, and a handle per guest instead of a lookup round trip each)."""

    conn: libvirt.virConnect
    ncpus: int
    online: frozenset[int]
    domains: dict[str, libvirt.virDomain]
    at: float  # time.monotonic() of the read


_seen: dict[str, _Seen] = {}  # tied to the connection object: a new connection starts with nothing seen


SEEN_FRESH_SECONDS = 10.0  # older than this, a session asks again


# Calls kept in flight at once on one connection; libvirtd's max_client_requests defaults to 5.
IN_FLIGHT_PER_CONNECTION = 4


_event_loop_pid: int | None = None


def _silence_default_error_printer() -> None:
    # libvirt prints every error to stderr by default; we raise them as exceptions instead.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def _run_event_loop() -> None:
    while True:
        libvirt.virEventRunDefaultImpl()


def _ensure_event_loop() -> None:
    """Start libvirt's event loop once per process: keepalive and close callbacks need it.

    Celery's prefork workers fork before any task runs, so each child starts its own loop here.
    """
    global _event_loop_pid
    pid = os.getpid()
    if _event_loop_pid == pid:
        return
    _connections.clear()  # inherited across fork: unusable in this process
    _seen.clear()
    _silence_default_error_printer()
    libvirt.virEventRegisterDefaultImpl()
    threading.Thread(target=_run_event_loop, name="libvirt-events", daemon=True).start()
    _event_loop_pid = pid


def _on_close(conn: libvirt.virConnect, reason: int, uri: str) -> None:
    with _lock:
        if _connections.get(uri) is conn:
            del _connections[uri]
    log.info("libvirt connection to %s closed (reason %s)", uri, reason)


def connect(uri: str) -> libvirt.virConnect:
    """Return this process's open connection to ``uri``, opening it if needed."""
    with _lock:
        _ensure_event_loop()
        conn = _connections.get(uri)
        if conn is not None:
            try:
                if conn.isAlive():
                    return conn
            except libvirt.libvirtError:
                pass
            _connections.pop(uri, None)
        try:
            conn = libvirt.open(uri)
        except libvirt.libvirtError as exc:
            raise translate_error(exc, uri) from exc
        try:
            from django.conf import settings

            conn.setKeepAlive(settings.ISOWEB_LIBVIRT_KEEPALIVE_INTERVAL, settings.ISOWEB_LIBVIRT_KEEPALIVE_COUNT)
            conn.registerCloseCallback(_on_close, uri)
        except libvirt.libvirtError as exc:
            # Local (qemu:///system) connections have no keepalive; that is fine.
            log.debug("no keepalive on %s: %s", uri, exc)
        _connections[uri] = conn
        return conn


def disconnect(uri: str) -> None:
    """Close this process's connection to ``uri``, if any."""
    with _lock:
        conn = _connections.pop(uri, None)
    if conn is not None:
        with contextlib.suppress(libvirt.libvirtError):
            conn.unregisterCloseCallback()
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


class RoundTrips:
    """Count the libvirt RPCs made for one piece of work."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.count = 0
        self._lock = threading.Lock()

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            self.count += 1
        try:
            return fn(*args)
        except libvirt.libvirtError as exc:
            raise translate_error(exc, self.uri) from exc
