"""The drift watcher: one thread per host turning libvirt events into drift checks of the guests concerned.

``python manage.py watch_drift`` runs :class:`DriftWatcher`. Each host's thread keeps its subscription
(hosts.libvirt.events.HostEvents) on the process's one connection to that host, re-reads only the guest an
event names (a few round trips, with a deadline) and records what it finds (hosts.drift.verify), so a
change made by hand through libvirt shows as drift within about a second. Every few seconds it also
compares the running guests' vCPU counts (one bulk call), which catches a hot-added vCPU, an event libvirt
does not raise. A host that cannot be reached is retried with exponential backoff (1 s up to 30 s); after
a reconnect, when events may have been missed, the whole host is read once. A host's thread never waits for
another host. A guest a change request is working on is checked again once the work is done.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

from django.db import close_old_connections

from hosts.drift.verify import check_guests
from hosts.libvirt.errors import VirtError
from hosts.libvirt.events import STARTED, GuestEvent, HostEvents
from hosts.libvirt.facts import DomainFacts
from hosts.models import Domain, Drift, Host

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 30.0
VCPU_POLL_SECONDS = 3.0
HOSTS_REFRESH_SECONDS = 10.0
BUSY_RETRY_SECONDS = 2.0
GUEST_RETRY_SECONDS, GUEST_RETRIES = 0.5, 10
# Events about one guest that arrive this close together are one re-read (a profile writes several fields).
COALESCE_SECONDS = 0.05


@dataclass
class _Pending:
    """A guest to check: how its drift would be said to be detected, and not before when."""

    name: str
    detected_by: str
    due: float = field(default_factory=time.monotonic)
    tries: int = 0


class HostWatcher(threading.Thread):
    """Watch one host until told to stop."""

    def __init__(self, host_id: int, uri: str, name: str) -> None:
        super().__init__(name=f"drift {name}", daemon=True)
        self.host_id, self.uri, self.host_name = host_id, uri, name
        self.events = HostEvents(uri, name)
        self.stopping = threading.Event()
        self.pending: dict[str, _Pending] = {}
        self.vcpus: dict[str, int] | None = None
        self.failures = 0
        self.behind = False  # events may have been missed: read the whole host
        self.checked = 0  # guests checked, for the log and the tests' diagnostics

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    self._round()
                    self.failures = 0
                except VirtError as exc:
                    self.failures += 1
                    delay = min(2.0 ** (self.failures - 1), MAX_BACKOFF_SECONDS)
                    log.warning("drift watch of %s: %s; retrying in %.0f s", self.host_name, exc.message, delay)
                    self.stopping.wait(delay)
                except Exception:
                    self.failures += 1
                    log.exception("drift watch of %s failed", self.host_name)
                    self.stopping.wait(min(2.0 ** (self.failures - 1), MAX_BACKOFF_SECONDS))
                finally:
                    close_old_connections()
        finally:
            self.events.unsubscribe()

    def _round(self) -> None:
        """Subscribe if needed, then handle events for a few seconds, checking the vCPU counts between."""
        if self.events.subscribed():
            self.behind = True
        if self.behind:
            self._catch_up()
            self.behind = False
        deadline = time.monotonic() + VCPU_POLL_SECONDS
        while not self.stopping.is_set() and time.monotonic() < deadline:
            self._take_events(timeout=min(0.5, max(deadline - time.monotonic(), 0.01)))
            self._check_due()
        self._compare_vcpus()

    def _catch_up(self) -> None:
        """Read the whole host once: events may have been missed while it was not watched."""
        guests = Domain.objects.filter(host_id=self.host_id).count()
        inventory = self.events.read_host(guests)
        self._record(list(inventory.domains), Drift.DetectedBy.POLL)
        self.vcpus = None

    def _take_events(self, timeout: float) -> None:
        try:
            event = self.events.events.get(timeout=timeout)
        except queue.Empty:
            return
        self._note(event)
        time.sleep(COALESCE_SECONDS)
        while True:
            try:
                self._note(self.events.events.get_nowait())
            except queue.Empty:
                break

    def _note(self, event: GuestEvent) -> None:
        how = Drift.DetectedBy.START if event.kind == STARTED else Drift.DetectedBy.EVENT
        known = self.pending.get(event.uuid)
        if known is None or how == Drift.DetectedBy.START:
            self.pending[event.uuid] = _Pending(event.name, how)
        log.info("drift event on %s: %s %s %s", self.host_name, event.name, event.kind, event.detail)

    def _check_due(self) -> None:
        now = time.monotonic()
        due = {uuid: p for uuid, p in self.pending.items() if p.due <= now}
        for uuid, pending in due.items():
            del self.pending[uuid]
            try:
                facts = self.events.read_guest(uuid)
            except VirtError as exc:
                if exc.unresponsive or pending.tries >= GUEST_RETRIES:
                    raise
                # A guest caught mid-start or mid-stop can fail to read while its host is fine: try it again.
                log.info("could not read %s on %s (%s); trying again", pending.name, self.host_name, exc.message)
                pending.tries += 1
                pending.due = time.monotonic() + GUEST_RETRY_SECONDS
                self.pending.setdefault(uuid, pending)
                continue
            if facts is None:
                continue  # undefined since: the next sync removes it
            busy = self._record([facts], pending.detected_by)
            if busy:
                pending.due = time.monotonic() + BUSY_RETRY_SECONDS
                self.pending.setdefault(uuid, pending)

    def _record(self, guests: list[DomainFacts], detected_by: str) -> bool:
        """Check and record these guests; True if some were skipped because a change is working on them."""
        recorded, busy = check_guests(self.host_id, guests, detected_by)
        self.checked += len(guests)
        if recorded.found or recorded.resolved:
            log.info("drift on %s: %d found, %d resolved", self.host_name, len(recorded.found), len(recorded.resolved))
        return bool(busy)

    def _compare_vcpus(self) -> None:
        counts = self.events.vcpu_counts()
        now = {uuid: count for uuid, (_name, count) in counts.items()}
        if self.vcpus is not None:
            for uuid, count in now.items():
                if uuid in self.vcpus and self.vcpus[uuid] != count:
                    self.pending.setdefault(uuid, _Pending(counts[uuid][0], Drift.DetectedBy.EVENT))
        self.vcpus = now


class DriftWatcher:
    """Keep one HostWatcher per host in service, starting and stopping them as hosts come, go or pause."""

    def __init__(self) -> None:
        self.watchers: dict[int, HostWatcher] = {}

    def refresh(self) -> None:
        # Hosts in maintenance are not watched: they are not synced, charted or changed either.
        in_service = Host.objects.in_service().values_list("pk", "uri", "name")
        hosts = {pk: (uri, name) for pk, uri, name in in_service}
        for pk in list(self.watchers):
            watcher = self.watchers[pk]
            if pk not in hosts or hosts[pk][0] != watcher.uri or not watcher.is_alive():
                watcher.stop()
                del self.watchers[pk]
        for pk, (uri, name) in hosts.items():
            if pk not in self.watchers:
                self.watchers[pk] = HostWatcher(pk, uri, name)
                self.watchers[pk].start()

    def run(self, stop: threading.Event) -> None:
        """Watch every host until ``stop`` is set, looking for added and removed hosts every few seconds."""
        try:
            while not stop.is_set():
                try:
                    self.refresh()
                except Exception:
                    log.exception("could not list the hosts to watch")
                finally:
                    close_old_connections()
                stop.wait(HOSTS_REFRESH_SECONDS)
        finally:
            for watcher in self.watchers.values():
                watcher.stop()
            for watcher in self.watchers.values():
                watcher.join(timeout=5)
