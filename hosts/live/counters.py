"""Keep each host's latest raw counters in Redis for ``/metrics``: one small key per host, overwritten each tick.

Prometheus wants cumulative counters (seconds of CPU and of run-queue delay per vCPU) rather than the
charts' percentages, and a scrape must not reach into libvirt from the web server (a hung host would hang
the scrape). So the collector, which reads the counters anyway, leaves the newest ones here with their
sample time, and the foreign load on each dedicated CPU with its owner. The key expires after
``SNAPSHOT_TTL_SECONDS``: a host nobody has sampled for that long (down, removed, collector stopped)
drops out of the metrics instead of repeating old numbers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from hosts.libvirt.facts import StatsSample
from hosts.live import history
from hosts.live.interference import Dedication

SNAPSHOT_TTL_SECONDS = 60
NS_PER_S = 1e9


def key(host_id: int) -> str:
    return f"isoweb:counters:host:{int(host_id)}"


def snapshot_json(
    sample: StatsSample,
    guest_ids: Mapping[str, int],
    dedicated: Mapping[int, Dedication],
    foreign: Mapping[int, float | None],
) -> str:
    """Encode one tick's counters: per guest id, its vCPUs' CPU and delay seconds; per dedicated CPU, its load.

    ``{"t": wall, "g": {"<domain id>": {"n": [0, 1], "c": [s, s], "d": [s, s]}},
    "x": {"<cpu>": {"g": <owner id>, "f": <foreign %> | null}}}``
    """
    guests: dict[str, Any] = {}
    for counters in sample.guests:
        domain_id = guest_ids.get(counters.uuid)
        if domain_id is None:
            continue
        numbers = sorted(counters.vcpu_time)
        guests[str(domain_id)] = {
            "n": numbers,
            "c": [counters.vcpu_time[n] / NS_PER_S for n in numbers],
            "d": [counters.vcpu_delay.get(n, 0) / NS_PER_S for n in numbers],
        }
    cpus = {str(cpu): {"g": holder.domain_id, "f": foreign.get(cpu)} for cpu, holder in dedicated.items()}
    return json.dumps({"t": round(sample.wall, 3), "g": guests, "x": cpus}, separators=(",", ":"))


def store(pipe: Any, host_id: int, text: str) -> None:
    """Queue the host's snapshot on the tick's pipeline."""
    pipe.set(key(host_id), text, ex=SNAPSHOT_TTL_SECONDS)


def latest(host_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Return the newest snapshot of each host that has one (one round trip)."""
    ids = list(host_ids)
    if not ids:
        return {}
    out: dict[int, dict[str, Any]] = {}
    for host_id, raw in zip(ids, history.client().mget([key(i) for i in ids]), strict=True):
        if raw is None:
            continue
        try:
            out[host_id] = json.loads(raw)
        except ValueError:
            continue
    return out
