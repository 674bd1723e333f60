"""One libvirt connection per host per process: opening it within a deadline, keepalive, the event loop.

No lock is ever held across a call into libvirt. A connection is opened on a thread of its own while the
caller waits at most the open deadline (hosts.libvirt.deadlines); callers that want the same host meanwhile
wait for that same attempt, so a host costs at most one stuck opener per process however often it is
asked for. A caller that finds the attempt already older than its deadline is refused at once ("has not
answered since ..."), and a host whose attempt timed out is not tried again before a short backoff.
Keepalive (``ISOWEB_LIBVIRT_KEEPALIVE_INTERVAL`` x ``_COUNT``) ends calls to a daemon that stopped answering
on an open connection, and the close callback forgets the dead connection.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import libvirt
from django.conf import settings

from hosts.libvirt import deadlines
from hosts.libvirt.errors import HostTimeout, VirtError, translate_error

log = logging.getLogger(__name__)

T = TypeVar("T")


_lock = threading.Lock()  # guards the dicts below; never held across a libvirt call


@dataclass
class _Link:
    """This process's state of one host URI: its connection, or the attempt to open one."""

    conn: libvirt.virConnect | None = None
    opening: Future[libvirt.virConnect] | None = None
    opening_since: float = 0.0  # time.monotonic() the attempt started
    opening_wall: float = 0.0  # time.time() of the same instant, for messages
    timed_out: bool = False  # someone gave up waiting for the attempt
    failures: int = 0  # attempts in a row that timed out
    retry_at: float = 0.0  # no new attempt before this (monotonic), after a timed-out one
    error: VirtError | None = None


_links: dict[str, _Link] = {}
# Work on a host that outlived its deadline and is still inside libvirt: uri -> (time.time() it began, work).
# Until it returns, the host gets no new work from this process.
_stuck: dict[str, tuple[float, Future[Any]]] = {}


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
MAX_RETRY_BACKOFF_SECONDS = 60.0
_event_loop_pid: int | None = None
_event_loop_lock = threading.Lock()


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
    with _event_loop_lock:  # its own lock: the shared one is never held across a libvirt call
        if _event_loop_pid == pid:
            return
        with _lock:
            _links.clear()  # inherited across fork: unusable in this process
            _stuck.clear()
            _seen.clear()
        _silence_default_error_printer()
        libvirt.virEventRegisterDefaultImpl()
        threading.Thread(target=_run_event_loop, name="libvirt-events", daemon=True).start()
        _event_loop_pid = pid


def _on_close(conn: libvirt.virConnect, reason: int, uri: str) -> None:
    with _lock:
        link = _links.get(uri)
        if link is not None and link.conn is conn:
            link.conn = None
    log.info("libvirt connection to %s closed (reason %s)", uri, reason)


def _open(uri: str, link: _Link, attempt: Future[libvirt.virConnect]) -> None:
    """Open a connection on this (dedicated) thread and hand it to whoever waits for ``attempt``."""
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as exc:
        error = translate_error(exc, uri)
        with _lock:
            link.opening, link.error = None, error
            if link.timed_out:
                link.failures += 1
                link.retry_at = time.monotonic() + min(2.0**link.failures, MAX_RETRY_BACKOFF_SECONDS)
        attempt.set_exception(error)
        return
    try:
        conn.setKeepAlive(settings.ISOWEB_LIBVIRT_KEEPALIVE_INTERVAL, settings.ISOWEB_LIBVIRT_KEEPALIVE_COUNT)
        conn.registerCloseCallback(_on_close, uri)
    except libvirt.libvirtError as exc:
        # Local (qemu:///system) connections have no keepalive; that is fine.
        log.debug("no keepalive on %s: %s", uri, exc)
    with _lock:
        link.conn, link.opening, link.error, link.failures, link.retry_at = conn, None, None, 0, 0.0
    attempt.set_result(conn)


def _since(wall: float) -> str:
    return datetime.fromtimestamp(wall).astimezone().strftime("%H:%M:%S %Z")


def connect(uri: str, *, name: str = "", timeout: float | None = None) -> libvirt.virConnect:
    """Return this process's open connection to ``uri``, opening it within the open deadline if needed.

    ``name`` (the host's name) is what error messages call the host. Raises HostTimeout when the host does
    not answer in time, or at once when this process's last attempt is still stuck or timed out moments ago.
    """
    who = name or uri
    limit = deadlines.open_seconds() if timeout is None else timeout
    _ensure_event_loop()
    with _lock:
        stuck = _stuck.get(uri)
        if stuck is not None and not stuck[1].done():
            raise HostTimeout(f"{who} has not answered since {_since(stuck[0])}")
        _stuck.pop(uri, None)
        link = _links.setdefault(uri, _Link())
        conn = link.conn
    # Asked outside the lock like every libvirt call (isAlive only looks at the client side: no round trip).
    if conn is not None and conn.isAlive():
        return conn
    with _lock:
        if link.conn is conn:
            link.conn = None
        now = time.monotonic()
        if link.opening is None:
            if now < link.retry_at:
                raise HostTimeout(
                    f"{who} did not answer the last time it was asked; next try in {link.retry_at - now:.0f} s"
                )
            attempt: Future[libvirt.virConnect] = Future()
            link.opening, link.opening_since, link.opening_wall, link.timed_out = attempt, now, time.time(), False
            threading.Thread(target=_open, args=(uri, link, attempt), name=f"libvirt-open {who}", daemon=True).start()
        elif now - link.opening_since >= limit:
            link.timed_out = True
            raise HostTimeout(f"{who} has not answered since {_since(link.opening_wall)}")
        attempt, started = link.opening, link.opening_since
    try:
        return deadlines.wait(attempt, started + limit - time.monotonic(), who)
    except HostTimeout:
        with _lock:
            link.timed_out = True
        raise HostTimeout(f"{who} did not answer within {deadlines.said(limit)}") from None


def mark_stuck(uri: str, work: Future[Any], began: float) -> None:
    """Note that ``work`` on this host (begun at ``began``, epoch seconds) outlived its deadline and is still
    inside libvirt: the host gets no new work from this process until it returns."""
    with _lock:
        _stuck[uri] = (began, work)


def disconnect(uri: str) -> None:
    """Close this process's connection to ``uri``, if any."""
    with _lock:
        link = _links.get(uri)
        conn = link.conn if link is not None else None
        if link is not None:
            link.conn = None
    if conn is not None:
        with contextlib.suppress(libvirt.libvirtError):
            conn.unregisterCloseCallback()
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


def disconnect_all() -> None:
    """Close every connection of this process and forget every host's backoff (attempts still stuck in
    libvirt are left to finish on their own)."""
    with _lock:
        uris = list(_links)
    for uri in uris:
        disconnect(uri)
    with _lock:
        for link in _links.values():
            link.failures, link.retry_at, link.error = 0, 0.0, None


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
