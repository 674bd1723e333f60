"""Sample every host's CPU counters, keep their history and push them to open charts.

Per host and tick: one bulk ``getAllDomainStats`` for all running guests plus one ``getCPUStats`` per host
CPU (:func:`hosts.libvirt.stats.fetch_cpu_stats`), percentages from :mod:`hosts.live.rates`, one pipelined Redis
write of every frame (:mod:`hosts.live.history`) and one channel-layer message per watched group
(:mod:`hosts.live.push`). A host someone is watching (its page or one of its guests' pages is open) is sampled
every ``interval`` seconds (1 s), the others every ``background_interval`` (10 s) so history stays filled
at little cost. Each host has its own thread, ticking at its own phase of the interval, so a slow or dead
host delays no other and the hosts' calls do not pile up at the same instant; a host that fails is
retried with exponential backoff, its open charts are told it is down, and the line resumes after a gap
when it answers again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import close_old_connections

from hosts.libvirt import connection, deadlines
from hosts.libvirt.errors import HostTimeout, VirtError
from hosts.libvirt.facts import StatsSample
from hosts.libvirt.stats import fetch_cpu_stats
from hosts.live import counters, frames, history, interference, push
from hosts.live.rates import HostLoad, host_load
from hosts.models import Domain, Host, HostCPU

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 30.0
# Each host ticks at its own phase of the interval (the fractional part of host id x the golden ratio, a
# spread that stays even however many hosts there are), so the hosts' bulk calls do not all land at once
# on a collector, its database and a shared channel layer, and each frame waits for no other host's work.
PHASE_STEP = 0.6180339887
INVENTORY_REFRESH_SECONDS = 30.0
TRIM_EVERY_TICKS = 15


@dataclass
class TickResult:
    """What one tick of one host did, for logs and the benchmark."""

    guests: int = 0
    frames: int = 0
    pushed: int = 0
    sample_wall: float = 0.0
    fetch_seconds: float = 0.0  # the libvirt calls' wall time
    cpu_seconds: float = 0.0
    error: str = ""


@dataclass
class HostCollector:
    """Collect one host: keep its previous sample, its guests' ids, its backoff, and push its frames."""

    host_id: int
    uri: str
    publisher: push.Publisher
    name: str = ""
    buckets: history.MinuteBuckets = field(default_factory=history.MinuteBuckets)
    prev: StatsSample | None = None
    prev_interval: float = 1.0
    failures: int = 0
    down_reason: str = ""
    down_since: float = 0.0  # time.time() of the first failure in a row
    ticks: int = 0
    # Foreign load on dedicated CPUs and the isolation score (hosts/live/interference.py); the latest raw
    # counters for /metrics (hosts/live/counters.py). Both on in the product; the benchmark turns them off
    # to measure the collector without them in the same run.
    compute_interference: bool = field(default_factory=lambda: bool(settings.ISOWEB_INTERFERENCE))
    keep_counters: bool = True
    _guest_ids: dict[str, int] = field(default_factory=dict)
    _cpu_ids: tuple[int, ...] = ()
    _dedicated: dict[int, interference.Dedication] = field(default_factory=dict)
    _inventory_at: float = -1e9
    _emitted: set[str] = field(default_factory=set)
    _host_emitted: bool = False
    # The host's libvirt calls run on a thread of their own, so a hung host costs this thread no more than the
    # stats deadline per tick; while a call is stuck no other is started (one attempt in flight per host).
    _caller: ThreadPoolExecutor | None = None
    _pending: Future[StatsSample] | None = None
    _pending_since: float = 0.0  # time.time() the stuck call began

    def _fetch(self) -> StatsSample:
        """Read the host's counters within the stats deadline, or say since when it has not answered."""
        who = self.name or self.uri
        if self._pending is not None and not self._pending.done():
            since = datetime.fromtimestamp(self._pending_since).astimezone().strftime("%H:%M:%S %Z")
            raise HostTimeout(f"{who} has not answered since {since}")
        if self._caller is None:
            self._caller = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"stats-{self.host_id}")
        self._pending = self._caller.submit(fetch_cpu_stats, self.uri, self._cpu_ids, name=self.name)
        self._pending_since = time.time()
        try:
            return deadlines.wait(self._pending, float(settings.ISOWEB_STATS_TIMEOUT), who)
        except HostTimeout:
            connection.mark_stuck(self.uri, self._pending, self._pending_since)
            raise

    def close(self) -> None:
        """Let go of the caller thread (a call stuck in it ends on its own)."""
        if self._caller is not None:
            self._caller.shutdown(wait=False, cancel_futures=True)

    def refresh_inventory(self, *, force: bool = False) -> None:
        """Reload which guest UUIDs are which chart ids, and the host's online CPUs, from the inventory."""
        now = time.monotonic()
        if not force and now - self._inventory_at < INVENTORY_REFRESH_SECONDS:
            return
        self._inventory_at = now
        rows = list(Domain.objects.filter(host_id=self.host_id).values_list("uuid", "pk", "tuning_live"))
        self._guest_ids = {str(uuid): pk for uuid, pk, _tuning in rows}
        online = HostCPU.objects.filter(host_id=self.host_id, online=True).order_by("cpu_id")
        self._cpu_ids = tuple(online.values_list("cpu_id", flat=True))
        every_cpu = HostCPU.objects.filter(host_id=self.host_id).values_list("cpu_id", flat=True)
        self._dedicated = interference.dedicated_cpus(((pk, str(uuid), tuning) for uuid, pk, tuning in rows), every_cpu)

    def backoff_seconds(self) -> float:
        return min(MAX_BACKOFF_SECONDS, 2.0 ** max(self.failures - 1, 0))

    def tick(self, interval: float) -> TickResult:
        """Sample the host once, store and push what changed; on failure, note it and tell the charts."""
        self.refresh_inventory()
        fetched = time.monotonic()
        try:
            sample = self._fetch()
        except VirtError as exc:
            return self._failed(exc)
        started = time.thread_time()
        result = TickResult(sample_wall=sample.wall, fetch_seconds=time.monotonic() - fetched)
        messages: list[tuple[str, str]] = []
        if self.failures:
            log.info("host %s answers again", self.uri)
            messages.append((push.host_group(self.host_id), push.status_text(push.HOST, self.host_id, up=True)))
            self.failures, self.down_reason = 0, ""
        if any(g.uuid not in self._guest_ids for g in sample.guests):
            self.refresh_inventory(force=time.monotonic() - self._inventory_at > 5)
        load = None
        if self.prev is not None:
            load = host_load(self.prev, sample, max_dt=3 * max(self.prev_interval, interval) + 0.5)
        self.prev, self.prev_interval = sample, interval
        if load is not None:
            messages += self._store(load, result, sample)
        else:
            self._host_emitted = False
            self._emitted = set()
        self.ticks += 1
        result.pushed = len(messages)
        self.publisher.send(messages)
        result.cpu_seconds = time.thread_time() - started
        return result

    def _store(self, load: HostLoad, result: TickResult, sample: StatsSample) -> list[tuple[str, str]]:
        """Write the tick's frames to history (one pipeline) and return the messages for watched groups."""
        pipe = history.client().pipeline(transaction=False)
        trim = self.ticks % TRIM_EVERY_TICKS == 0
        series: list[tuple[str, int, str]] = []

        dedicated = self._dedicated if self.compute_interference else {}
        foreign = interference.foreign_load(load, dedicated) if dedicated else {}
        foreign_by_guest = interference.by_guest_vcpu(dedicated, foreign) if dedicated else {}
        if dedicated:
            threshold = float(settings.ISOWEB_FOREIGN_LOAD_THRESHOLD)
            interference.record(pipe, load.wall, load.dt, dedicated, foreign, threshold)
        if self.keep_counters:
            counters.store(pipe, self.host_id, counters.snapshot_json(sample, self._guest_ids, dedicated, foreign))

        host_frame = frames.host_frame(load.wall, load.cpus, foreign=foreign, gap=not self._host_emitted)
        self._host_emitted = True
        series.append((push.HOST, self.host_id, self._add(pipe, push.HOST, self.host_id, host_frame, trim)))

        emitted: set[str] = set()
        for uuid, guest in load.guests.items():
            domain_id = self._guest_ids.get(uuid)
            if domain_id is None:
                continue  # not in the inventory yet: the next sync adds it
            frame = frames.guest_frame(
                load.wall,
                guest.vcpu,
                guest.delay,
                guest.overhead,
                guest.total,
                foreign=foreign_by_guest.get(uuid),
                gap=uuid not in self._emitted,
            )
            emitted.add(uuid)
            series.append((push.GUEST, domain_id, self._add(pipe, push.GUEST, domain_id, frame, trim)))
        if trim:
            self.buckets.forget({(kind, object_id) for kind, object_id, _ in series})
        pipe.execute()
        self._emitted = emitted
        result.guests = len(emitted)
        result.frames = len(series)

        watched_guests = push.watched(push.GUEST, [i for kind, i, _ in series if kind == push.GUEST])
        return [
            (push.group_name(kind, object_id), push.frame_text(kind, object_id, text))
            for kind, object_id, text in series
            if kind == push.HOST or object_id in watched_guests
        ]

    def _add(self, pipe: Any, kind: str, object_id: int, frame: dict[str, Any], trim: bool) -> str:
        text = history.dumps(frame)
        history.add(pipe, history.FULL, kind, object_id, text, frame["t"])
        finished = self.buckets.add(kind, object_id, frame)
        if finished is not None:
            history.add(pipe, history.MINUTE, kind, object_id, history.dumps(finished), finished["t"])
            history.trim(pipe, history.MINUTE, kind, object_id, frame["t"])
        if trim:
            history.trim(pipe, history.FULL, kind, object_id, frame["t"])
        return text

    def _failed(self, exc: VirtError) -> TickResult:
        first = self.failures == 0
        self.failures += 1
        self.prev = None
        self._emitted, self._host_emitted = set(), False
        self.down_reason = exc.message
        if first:
            # Told once (a chart opened later learns the host's state from the inventory as it connects).
            log.warning("host %s does not answer: %s", self.uri, exc.message)
            self.down_since = time.time()
            text = push.status_text(push.HOST, self.host_id, up=False, reason=exc.message, since=self.down_since)
            messages = [(push.host_group(self.host_id), text)]
            messages += [(push.guest_group(i), text) for i in self._guest_ids.values()]
            try:
                self.publisher.send(messages)
            except Exception as send_exc:  # a channel-layer outage must not stop the collector
                log.warning("could not push host status: %s", send_exc)
        return TickResult(error=exc.message)


class Collector:
    """Run one :class:`HostCollector` thread per registered host until stopped."""

    def __init__(
        self,
        *,
        interval: float = 1.0,
        background_interval: float = 10.0,
        on_tick: Callable[[int, TickResult], None] | None = None,
        interference: bool | None = None,
        keep_counters: bool = True,
    ) -> None:
        self.interval = interval
        self.interference = bool(settings.ISOWEB_INTERFERENCE) if interference is None else interference
        self.keep_counters = keep_counters
        self.background_interval = background_interval
        self.on_tick = on_tick  # called from the host's thread after each tick (for the benchmark)
        self.publisher = push.Publisher()
        self.stop_event = threading.Event()
        self.watched_hosts: set[int] = set()
        self._threads: dict[int, tuple[threading.Thread, threading.Event]] = {}

    def _host_loop(self, host_id: int, uri: str, name: str, stop: threading.Event) -> None:
        collector = HostCollector(
            host_id=host_id,
            uri=uri,
            name=name,
            publisher=self.publisher,
            compute_interference=self.interference,
            keep_counters=self.keep_counters,
        )
        try:
            self._collect(collector, stop)
        finally:
            collector.close()

    def _collect(self, collector: HostCollector, stop: threading.Event) -> None:
        host_id, uri = collector.host_id, collector.uri
        phase = (host_id * PHASE_STEP) % 1.0
        last_tick = time.monotonic() - (1.0 - phase) * self.interval  # the first tick comes at its phase
        retry_at = 0.0
        while not stop.is_set() and not self.stop_event.is_set():
            # The interval is re-read every pass: a chart opened on a background host speeds it up at once.
            interval = self.interval if host_id in self.watched_hosts else self.background_interval
            due = retry_at if collector.failures else last_tick + interval
            now = time.monotonic()
            if now < due:
                stop.wait(min(due - now, 0.2))
                continue
            last_tick = due if now - due < interval else now  # keep the cadence without drifting
            try:
                result = collector.tick(interval)
            except Exception:
                log.exception("collecting %s failed", uri)
                result = TickResult(error="internal error")
                collector.failures += 1
            finally:
                close_old_connections()
            if result.error:
                retry_at = time.monotonic() + collector.backoff_seconds()
            if self.on_tick is not None:
                self.on_tick(host_id, result)

    def sync_hosts(self) -> None:
        """Start a thread for each new host and stop those of hosts removed from the inventory."""
        hosts = {pk: (uri, name) for pk, uri, name in Host.objects.in_service().values_list("pk", "uri", "name")}
        for host_id, (thread, stop) in list(self._threads.items()):
            if host_id not in hosts or not thread.is_alive():
                stop.set()
                del self._threads[host_id]
        for host_id, (uri, name) in hosts.items():
            if host_id not in self._threads:
                stop = threading.Event()
                thread = threading.Thread(
                    target=self._host_loop, args=(host_id, uri, name, stop), name=f"collect-{host_id}", daemon=True
                )
                self._threads[host_id] = (thread, stop)
                thread.start()
                log.info("collecting %s every %ss (watched) or %ss", uri, self.interval, self.background_interval)

    def run(self) -> None:
        """Collect until :meth:`stop`: refresh the host list and the watched set, the threads do the rest."""
        refreshed = -1e9
        try:
            while not self.stop_event.is_set():
                now = time.monotonic()
                try:
                    if now - refreshed > INVENTORY_REFRESH_SECONDS:
                        self.sync_hosts()
                        refreshed = now
                    self.watched_hosts = push.watched(push.HOST, list(self._threads))
                except Exception as exc:  # Redis or the database briefly away: keep the threads going
                    log.warning("collector housekeeping failed: %s", exc)
                finally:
                    close_old_connections()
                self.stop_event.wait(0.5)
        finally:
            for _thread, stop in self._threads.values():
                stop.set()
            for thread, _stop in self._threads.values():
                thread.join(timeout=10)
            self.publisher.close()

    def stop(self) -> None:
        self.stop_event.set()
