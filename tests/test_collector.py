"""The stats collector against the real fleet, real Redis and the real channel layer."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from channels.layers import get_channel_layer

from hosts.harness.fleet import Fleet
from hosts.live import history, push
from hosts.live.collector import Collector, HostCollector
from hosts.models import Domain, Host
from tests.conftest import virsh, wait_for

pytestmark = [pytest.mark.fleet, pytest.mark.django_db(transaction=True)]


def run_watching(collector: Collector, hosts: list[Host], done: Callable[[], bool], timeout: float, what: str) -> None:
    """Run ``collector`` with ``hosts`` marked watched (as an open chart keeps them) until ``done()``."""
    stop_marking = threading.Event()

    def keep_watching() -> None:
        while not stop_marking.is_set():
            push.mark_watched([(push.HOST, h.pk) for h in hosts])
            stop_marking.wait(1)

    threads = [threading.Thread(target=keep_watching), threading.Thread(target=collector.run)]
    for thread in threads:
        thread.start()
    try:
        wait_for(done, timeout, what=what)
    finally:
        collector.stop()
        stop_marking.set()
        for thread in threads:
            thread.join(timeout=15)


@pytest.fixture
def publisher(redis_server: str) -> Iterator[push.Publisher]:
    the_publisher = push.Publisher()
    yield the_publisher
    the_publisher.close()


@pytest.fixture
def burner(fleet: Fleet, fleet_hosts: list[Host]) -> Iterator[Domain]:
    """The fleet's CPU burner, running for this test only (the machine has two cores)."""
    member = fleet.host(0)
    name = f"{fleet.prefix}1-burn"
    virsh(member.uri, "start", name)
    try:
        yield Domain.objects.get(host=fleet_hosts[0], name=name)
    finally:
        virsh(member.uri, "destroy", name)


def frames(kind: str, object_id: int) -> list[dict[str, Any]]:
    return [json.loads(text) for text in history.recent(kind, object_id)]


def tick_until(collector: HostCollector, predicate: Any, ticks: int, interval: float = 1.0) -> Any:
    for _ in range(ticks):
        collector.tick(interval)
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"not seen within {ticks} ticks")


def test_a_burning_guest_shows_vcpu_0_near_100_percent_within_a_few_ticks(
    burner: Domain, fleet_hosts: list[Host], publisher: push.Publisher
) -> None:
    host = fleet_hosts[0]
    collector = HostCollector(host_id=host.pk, uri=host.uri, publisher=publisher)
    layer = get_channel_layer()
    push.mark_watched([(push.GUEST, burner.pk), (push.HOST, host.pk)])

    async def listen() -> list[dict[str, Any]]:
        channel = await layer.new_channel()
        await layer.group_add(push.guest_group(burner.pk), channel)
        loop = asyncio.get_running_loop()
        burning = lambda: [f for f in frames(push.GUEST, burner.pk) if f["v"] and f["v"][0] >= 90]  # noqa: E731
        await loop.run_in_executor(None, tick_until, collector, burning, 12)
        pushed = []
        while True:
            try:
                message = await asyncio.wait_for(layer.receive(channel), 1)
            except TimeoutError:
                break
            pushed.append(json.loads(message["text"]))
        await layer.group_discard(push.guest_group(burner.pk), channel)
        return pushed

    pushed = asyncio.run(listen())
    newest = frames(push.GUEST, burner.pk)[-1]
    assert newest["n"] == [0]
    assert 90 <= newest["v"][0] <= 100
    assert newest["o"] is not None and newest["o"] < 50  # the emulator thread idles next to a spinning vCPU
    assert pushed and pushed[-1]["type"] == "frame" and pushed[-1]["frame"]["v"][0] >= 90
    host_frame = frames(push.HOST, host.pk)[-1]
    assert max(host_frame["b"]) >= 45  # one of the machine's CPUs carries the burner
    idle = Domain.objects.get(host=host, name__endswith="-web")
    assert all(v < 20 for v in frames(push.GUEST, idle.pk)[-1]["v"])


def test_a_host_that_goes_down_is_told_backs_off_and_resumes_after_a_gap_by_itself(
    fleet: Fleet, fleet_hosts: list[Host], publisher: push.Publisher
) -> None:
    host, member = fleet_hosts[2], fleet.host(2)
    collector = HostCollector(host_id=host.pk, uri=host.uri, publisher=publisher)
    layer = get_channel_layer()
    tick_until(collector, lambda: frames(push.HOST, host.pk), 4)

    async def scenario() -> tuple[list[str], list[float], list[dict[str, Any]]]:
        channel = await layer.new_channel()
        await layer.group_add(push.host_group(host.pk), channel)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, member.stop_daemon)
        errors, backoffs = [], []
        try:
            for _ in range(3):
                result = await loop.run_in_executor(None, collector.tick, 1.0)
                errors.append(result.error)
                backoffs.append(collector.backoff_seconds())
        finally:
            await loop.run_in_executor(None, member.start)
        await loop.run_in_executor(None, tick_until, collector, lambda: collector.failures == 0 and collector.prev, 5)
        await loop.run_in_executor(None, tick_until, collector, lambda: collector._host_emitted, 3)
        received = []
        while True:
            try:
                received.append(json.loads((await asyncio.wait_for(layer.receive(channel), 1))["text"]))
            except TimeoutError:
                break
        await layer.group_discard(push.host_group(host.pk), channel)
        return errors, backoffs, received

    errors, backoffs, received = asyncio.run(scenario())
    assert all(errors), errors
    assert backoffs == [1.0, 2.0, 4.0]
    statuses = [m for m in received if m["type"] == "status"]
    assert [s["up"] for s in statuses] == [False, True]  # told once when it went down, once when it came back
    resumed = [m["frame"] for m in received if m["type"] == "frame"]
    assert resumed and resumed[0].get("gap") == 1  # the chart breaks its line instead of bridging the outage


def test_history_survives_a_collector_restart_and_marks_the_restart_as_a_gap(
    fleet_hosts: list[Host], publisher: push.Publisher
) -> None:
    host = fleet_hosts[1]
    first = HostCollector(host_id=host.pk, uri=host.uri, publisher=publisher)
    tick_until(first, lambda: len(frames(push.HOST, host.pk)) >= 2, 5)
    before = frames(push.HOST, host.pk)
    second = HostCollector(host_id=host.pk, uri=host.uri, publisher=publisher)
    tick_until(second, lambda: len(frames(push.HOST, host.pk)) > len(before), 4)
    after = frames(push.HOST, host.pk)
    assert after[: len(before)] == before
    assert after[len(before)].get("gap") == 1


def test_a_watched_host_is_sampled_every_interval_and_an_unwatched_one_only_in_the_background(
    fleet_hosts: list[Host],
) -> None:
    watched, unwatched = fleet_hosts[0], fleet_hosts[1]
    history.client().delete(*(history.key(history.FULL, push.HOST, h.pk) for h in fleet_hosts))
    collector = Collector(interval=0.5, background_interval=4.0)
    run_watching(
        collector, [watched], lambda: len(frames(push.HOST, watched.pk)) >= 10, 15, "frames of the watched host"
    )
    assert len(frames(push.HOST, unwatched.pk)) <= 2


def test_hosts_tick_at_their_own_phase_of_the_interval(fleet_hosts: list[Host]) -> None:
    """Three watched hosts are not sampled at the same instant: each keeps its own phase of the interval,
    so their bulk calls do not pile up on the daemons, the collector and the channel layer at once."""
    interval = 0.5
    starts: dict[int, list[float]] = {h.pk: [] for h in fleet_hosts}
    collector = Collector(interval=interval, on_tick=lambda host_id, result: starts[host_id].append(result.sample_wall))
    run_watching(
        collector, fleet_hosts, lambda: all(len(s) >= 8 for s in starts.values()), 20, "eight ticks of every host"
    )

    def phase(host_id: int) -> float:
        """The host's median position in the interval, from its last ticks (the first ones include start-up)."""
        ticks = sorted(t % interval for t in starts[host_id][3:8])
        return ticks[len(ticks) // 2]

    phases = sorted(phase(h.pk) for h in fleet_hosts)
    gaps = [b - a for a, b in itertools.pairwise(phases)] + [interval - phases[-1] + phases[0]]
    # Host ids n, n+1, n+2 sit 0.236 and 0.382 of the interval apart; ticking together they would be ~0.
    assert min(gaps) > 0.15 * interval, (phases, gaps)
