"""How long isoweb waits for a host, and waiting for libvirt work without ever waiting longer.

A thread blocked inside libvirt's C code cannot be interrupted, so a deadline is enforced by the thread
that waits: the work runs on another thread, and the waiter gives up at the deadline with a
:class:`~hosts.libvirt.errors.HostTimeout` ("kvm02 did not answer within 10 s"). The stuck thread is left
behind; hosts.libvirt.connection makes sure there is at most one stuck attempt per host per process.

- opening a connection: ``ISOWEB_LIBVIRT_OPEN_TIMEOUT`` (10 s). ``libvirt.open`` has no timeout of its own
  and keepalive starts only once it returns, so a port that accepts TCP and never answers would block the
  opener for ever;
- one call on an open connection: ``ISOWEB_LIBVIRT_CALL_TIMEOUT`` (30 s). Keepalive usually ends a call to
  a hung daemon sooner (interval x count, 15 s by default);
- a whole host's read or apply: the open and one call, plus ``ISOWEB_LIBVIRT_PER_GUEST_TIMEOUT`` (0.5 s)
  per guest.
"""

from __future__ import annotations

from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

from django.conf import settings

from hosts.libvirt.errors import HostTimeout

T = TypeVar("T")


def open_seconds() -> float:
    """How long to wait for a host to accept a connection."""
    return float(settings.ISOWEB_LIBVIRT_OPEN_TIMEOUT)


def call_seconds() -> float:
    """How long to wait for one libvirt call on an open connection."""
    return float(settings.ISOWEB_LIBVIRT_CALL_TIMEOUT)


def host_seconds(guests: int) -> float:
    """How long a whole read or apply of a host with ``guests`` guests may take."""
    return open_seconds() + call_seconds() + float(settings.ISOWEB_LIBVIRT_PER_GUEST_TIMEOUT) * max(guests, 0)


def said(seconds: float) -> str:
    """A deadline as an operator reads it: ``10 s``, ``0.5 s``."""
    return f"{seconds:g} s"


def wait(future: Future[T], seconds: float, who: str) -> T:
    """Return the future's result, or raise HostTimeout once ``seconds`` have passed without one.

    ``who`` names the host in the message. The work itself goes on (it cannot be stopped); its result or
    error is dropped.
    """
    try:
        return future.result(timeout=max(seconds, 0.0))
    except FutureTimeout:
        raise HostTimeout(f"{who} did not answer within {said(seconds)}") from None
