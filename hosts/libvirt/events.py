"""libvirt's domain events on one host's connection, and the bounded reads that follow them.

:class:`HostEvents` registers, on this process's connection to a host (hosts.libvirt.connection: opened
within its deadline, keepalive, libvirt's default event loop on a thread of its own), for the events that
say a guest's pins or caps may have changed:

- ``VIR_DOMAIN_EVENT_ID_TUNABLE``: a live vcpupin, emulatorpin, iothreadpin or schedinfo change made through
  libvirt by anyone (``virsh vcpupin --live``, ``virsh schedinfo --live``), ~20-80 ms after it;
- ``VIR_DOMAIN_EVENT_ID_LIFECYCLE``: a guest started (its live values come from its config), stopped, or
  defined again (its config was replaced: ``virsh define``, ``virsh edit``).

libvirt 9.0 raises no event for ``virsh setvcpus --live`` (a vCPU hot-added), for config-only changes made
with ``--config``, or for anything done behind libvirt's back (``taskset``, a cgroup file): the first is
caught by :meth:`HostEvents.vcpu_counts`, one bulk call per host that the watcher makes every few seconds;
the others by the periodic verification after each sync.

Callbacks run on libvirt's event loop thread and only queue a :class:`GuestEvent`; every call into libvirt
made here runs on a pool thread and is waited for with a deadline, so a hung host costs its own watcher
thread its deadline and nothing else.
"""

from __future__ import annotations

import logging
import queue
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import libvirt

from hosts.libvirt import deadlines, pools
from hosts.libvirt.connection import RoundTrips, connect, mark_stuck
from hosts.libvirt.errors import HostTimeout
from hosts.libvirt.facts import DomainFacts, Inventory
from hosts.libvirt.inventory import fetch_guest, fetch_inventory

log = logging.getLogger(__name__)

T = TypeVar("T")

TUNABLE, STARTED, STOPPED, DEFINED, VCPUS = "tunable", "started", "stopped", "defined", "vcpus"

_LIFECYCLE = {
    libvirt.VIR_DOMAIN_EVENT_STARTED: STARTED,
    libvirt.VIR_DOMAIN_EVENT_STOPPED: STOPPED,
    libvirt.VIR_DOMAIN_EVENT_DEFINED: DEFINED,
}


@dataclass(frozen=True)
class GuestEvent:
    """Something happened to a guest that may have changed its pins or caps."""

    uuid: str
    name: str
    kind: str
    detail: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)


class HostEvents:
    """One host's domain events, queued; and the bounded reads the watcher makes of that host.

    Not thread-safe: one watcher thread per host uses it. ``events`` is filled from libvirt's event loop.
    """

    def __init__(self, uri: str, name: str) -> None:
        self.uri, self.name = uri, name
        self.events: queue.Queue[GuestEvent] = queue.Queue(maxsize=10000)
        self._conn: libvirt.virConnect | None = None
        self._callbacks: list[int] = []

    # Every call into libvirt goes through here: on a pool thread, waited for with a deadline.
    def _bounded(self, fn: Callable[..., T], *args: Any, seconds: float | None = None, **kwargs: Any) -> T:
        began = time.time()
        future = pools.call_pool().submit(fn, *args, **kwargs)
        limit = deadlines.call_seconds() if seconds is None else seconds
        try:
            return deadlines.wait(future, limit, self.name)
        except HostTimeout:
            mark_stuck(self.uri, future, began)
            raise

    def _queue(self, event: GuestEvent) -> None:
        try:
            self.events.put_nowait(event)
        except queue.Full:  # the watcher is far behind; the next sync's verification covers what is lost
            log.warning("drift events of %s dropped: queue full", self.name)

    def _on_tunable(self, _conn: Any, dom: libvirt.virDomain, params: dict[str, Any], _opaque: Any) -> None:
        self._queue(GuestEvent(dom.UUIDString(), dom.name(), TUNABLE, dict(params)))

    def _on_lifecycle(self, _conn: Any, dom: libvirt.virDomain, event: int, detail: int, _opaque: Any) -> None:
        kind = _LIFECYCLE.get(event)
        if kind is not None:
            self._queue(GuestEvent(dom.UUIDString(), dom.name(), kind, {"detail": detail}))

    def subscribed(self) -> bool:
        """Make sure this process's connection to the host carries our callbacks; True if it had to (re)subscribe.

        Raises VirtError (HostTimeout included) when the host cannot be reached within its deadlines.
        """
        conn = connect(self.uri, name=self.name)
        if conn is self._conn:
            return False
        # A connection closed by someone else in this process may live on while our callbacks hold it: take
        # them off, or every event would arrive once per reconnect.
        self.unsubscribe()
        rt = RoundTrips(self.uri)
        ids = [
            self._bounded(
                rt.call, conn.domainEventRegisterAny, None, libvirt.VIR_DOMAIN_EVENT_ID_TUNABLE, self._on_tunable, None
            ),
            self._bounded(
                rt.call,
                conn.domainEventRegisterAny,
                None,
                libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                self._on_lifecycle,
                None,
            ),
        ]
        self._conn, self._callbacks = conn, ids
        log.info("watching %s for drift events", self.name)
        return True

    def unsubscribe(self) -> None:
        """Take our callbacks off the connection (a host removed from the inventory); errors are ignored."""
        conn, ids, self._conn, self._callbacks = self._conn, self._callbacks, None, []
        if conn is None:
            return
        rt = RoundTrips(self.uri)
        for callback_id in ids:
            try:
                self._bounded(rt.call, conn.domainEventDeregisterAny, callback_id)
            except Exception as exc:  # the connection may be gone already; nothing is left to undo then
                log.debug("could not deregister a drift callback on %s: %s", self.name, exc)

    def vcpu_counts(self) -> dict[str, tuple[str, int]]:
        """Each running guest's online vCPU count, in one bulk call: ``uuid -> (name, count)``.

        libvirt raises no event when a vCPU is hot-added; the watcher compares these counts every few seconds.
        """
        conn = connect(self.uri, name=self.name)
        rt = RoundTrips(self.uri)
        records = self._bounded(
            rt.call,
            conn.getAllDomainStats,
            libvirt.VIR_DOMAIN_STATS_VCPU,
            libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE,
        )
        return {dom.UUIDString(): (dom.name(), int(stats.get("vcpu.current", 0))) for dom, stats in records}

    def read_guest(self, uuid: str) -> DomainFacts | None:
        """Read one guest completely (see fetch_guest), within one guest's share of a host's deadline."""
        return self._bounded(fetch_guest, self.uri, uuid, name=self.name, seconds=deadlines.host_seconds(1))

    def read_host(self, guests: int) -> Inventory:
        """Read every guest of the host (after a reconnect, when events may have been missed), within its deadline."""
        return self._bounded(fetch_inventory, self.uri, name=self.name, seconds=deadlines.host_seconds(guests))
