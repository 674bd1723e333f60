"""Serve ``/metrics`` for Prometheus in the OpenMetrics text format, to a token or to allowed networks only.

A custom collector reads, at scrape time, what the product already keeps: each host's newest counters and
the foreign load on its dedicated CPUs (left in Redis by the stats collector each tick,
:mod:`hosts.live.counters`), the guests' isolation scores (:mod:`hosts.live.interference`), and from the
database the hosts' status, the open drifts and the change requests' outcomes and apply durations. A scrape
never calls libvirt, so a hung host cannot hang it; a host nobody has sampled for a minute is left out of
the per-vCPU series rather than repeated with old numbers. Counter samples carry the time the collector read
them, so Prometheus places each value where it was measured.

Access: a request carrying ``Authorization: Bearer <ISOWEB_METRICS_TOKEN>`` (compared in constant time;
an empty setting accepts no token), or one whose connection comes from ``ISOWEB_METRICS_NETWORKS``
(default loopback only). The address is the connection's own (``REMOTE_ADDR``): a forwarding proxy in
front must either sit in an allowed network or pass the token. Everyone else gets 403.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST, generate_latest

from hosts.live import counters, interference
from hosts.models import ChangeRequest, ChangeTarget, Domain, Drift, Host

# Apply durations (one guest's apply, started to finished) fall into these buckets, in seconds.
DURATION_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# The apply-duration histogram is built from at most this many of the newest finished guests' rows.
DURATION_ROWS = 10_000
SUCCEEDED = (ChangeTarget.Status.APPLIED, ChangeTarget.Status.ROLLED_BACK)
FINISHED_TARGETS = (
    ChangeTarget.Status.APPLIED,
    ChangeTarget.Status.FAILED,
    ChangeTarget.Status.RESTORE_FAILED,
    ChangeTarget.Status.ROLLED_BACK,
)


def _networks(values: Iterable[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(value, strict=False) for value in values)


def may_scrape(remote_addr: str | None, authorization: str | None) -> bool:
    """Decide whether a request may read the metrics: the right bearer token, or an allowed source address."""
    token = str(settings.ISOWEB_METRICS_TOKEN or "")
    if token and authorization:
        scheme, _, presented = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode()):
            return True
    try:
        address = ipaddress.ip_address((remote_addr or "").strip())
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in _networks(settings.ISOWEB_METRICS_NETWORKS))


class IsowebCollector:
    """Read the current values for one scrape (prometheus_client calls :meth:`collect` per scrape)."""

    def collect(self) -> Iterator[Metric]:
        hosts = list(Host.objects.order_by("pk").values("pk", "name", "status"))
        host_names = {h["pk"]: h["name"] for h in hosts}
        yield from self._hosts(hosts)
        yield from self._live(host_names)
        yield self._drifts(host_names)
        yield from self._changes()

    def _hosts(self, hosts: Sequence[Any]) -> Iterator[Metric]:
        status = StateSetMetricFamily(
            "isoweb_host_status", "Each host's status as the last sync found it.", labels=["host"]
        )
        up = GaugeMetricFamily("isoweb_host_up", "1 if the host answered its last sync.", labels=["host"])
        for host in hosts:
            status.add_metric([host["name"]], {s: host["status"] == s for s in Host.Status.values})
            up.add_metric([host["name"]], 1.0 if host["status"] == Host.Status.UP else 0.0)
        yield status
        yield up

    def _live(self, host_names: dict[int, str]) -> Iterator[Metric]:
        labels = ["host", "guest", "vcpu"]
        cpu = CounterMetricFamily("isoweb_vcpu_cpu_seconds", "CPU time each vCPU thread has run.", labels=labels)
        delay = CounterMetricFamily(
            "isoweb_vcpu_delay_seconds", "Time each vCPU thread waited on a run queue (steal).", labels=labels
        )
        foreign = GaugeMetricFamily(
            "isoweb_dedicated_cpu_foreign_load_ratio",
            "Share of a dedicated host CPU (held alone by one guest) used by anything but its owner's threads "
            "pinned to it, over the collector's last interval.",
            labels=["host", "cpu", "guest"],
        )
        score = GaugeMetricFamily(
            "isoweb_guest_isolation_score_ratio",
            "Share of the last hour the guest's dedicated CPUs carried at most "
            f"{settings.ISOWEB_FOREIGN_LOAD_THRESHOLD:g} % of one CPU of foreign load.",
            labels=["host", "guest"],
        )
        snapshots = counters.latest(host_names)
        domain_ids: set[int] = set()
        for snapshot in snapshots.values():
            domain_ids.update(int(i) for i in snapshot.get("g", {}))
            domain_ids.update(int(c["g"]) for c in snapshot.get("x", {}).values())
        names = dict(Domain.objects.filter(pk__in=domain_ids).values_list("pk", "name"))
        owners: set[tuple[int, int]] = set()
        for host_id, snapshot in snapshots.items():
            host, at = host_names[host_id], float(snapshot.get("t", 0)) or None
            for domain_id, guest in snapshot.get("g", {}).items():
                name = names.get(int(domain_id))
                if name is None:
                    continue
                for number, seconds, waited in zip(guest["n"], guest["c"], guest["d"], strict=True):
                    cpu.add_metric([host, name, str(number)], seconds, timestamp=at)
                    delay.add_metric([host, name, str(number)], waited, timestamp=at)
            for cpu_id, held in sorted(snapshot.get("x", {}).items(), key=lambda item: int(item[0])):
                name = names.get(int(held["g"]))
                if name is None:
                    continue
                owners.add((host_id, int(held["g"])))
                if held.get("f") is not None:
                    foreign.add_metric([host, cpu_id, name], round(float(held["f"]) / 100.0, 4), timestamp=at)
        for host_id, domain_id in sorted(owners):
            found = interference.score(domain_id)
            if found.score is not None:
                score.add_metric([host_names[host_id], names[domain_id]], found.score)
        yield cpu
        yield delay
        yield foreign
        yield score

    def _drifts(self, host_names: dict[int, str]) -> Metric:
        drifts = GaugeMetricFamily(
            "isoweb_open_drifts", "Drifts found and not yet resolved, per host.", labels=["host"]
        )
        open_counts = dict(
            Drift.objects.filter(resolved_at__isnull=True)
            .values("host_id")
            .annotate(n=Count("id"))
            .values_list("host_id", "n")
        )
        for host_id, name in host_names.items():
            drifts.add_metric([name], float(open_counts.get(host_id, 0)))
        return drifts

    def _changes(self) -> Iterator[Metric]:
        requests = GaugeMetricFamily("isoweb_change_requests", "Change requests by status.", labels=["status"])
        by_status = dict(ChangeRequest.objects.values("status").annotate(n=Count("id")).values_list("status", "n"))
        for status in ChangeRequest.Status.values:
            requests.add_metric([status], float(by_status.get(status, 0)))
        yield requests

        outcomes = GaugeMetricFamily(
            "isoweb_change_targets", "Guests of change requests by outcome (applied, failed, ...).", labels=["status"]
        )
        by_outcome = dict(ChangeTarget.objects.values("status").annotate(n=Count("id")).values_list("status", "n"))
        for status in ChangeTarget.Status.values:
            outcomes.add_metric([status], float(by_outcome.get(status, 0)))
        yield outcomes

        durations = HistogramMetricFamily(
            "isoweb_guest_apply_duration_seconds",
            f"How long applying a change took per guest (the newest {DURATION_ROWS} finished guests).",
            labels=["outcome"],
        )
        rows = (
            ChangeTarget.objects.filter(
                status__in=FINISHED_TARGETS, started_at__isnull=False, finished_at__isnull=False
            )
            .order_by("-finished_at")
            .values_list("status", "started_at", "finished_at")[:DURATION_ROWS]
        )
        per_outcome: dict[str, list[float]] = {}
        for status, started, finished in rows:
            if started is None or finished is None:
                continue
            outcome = (
                "succeeded" if status in (ChangeTarget.Status.APPLIED, ChangeTarget.Status.ROLLED_BACK) else "failed"
            )
            per_outcome.setdefault(outcome, []).append(_seconds(started, finished))
        for outcome in ("succeeded", "failed"):
            values = per_outcome.get(outcome, [])
            buckets = [(f"{le:g}", float(sum(1 for v in values if v <= le))) for le in DURATION_BUCKETS]
            buckets.append(("+Inf", float(len(values))))
            durations.add_metric([outcome], buckets, sum(values))
        yield durations


def _seconds(started: datetime, finished: datetime) -> float:
    return max((finished - started).total_seconds(), 0.0)


_registry: CollectorRegistry | None = None


def registry() -> CollectorRegistry:
    """The registry /metrics serves: only isoweb's collector (no process metrics of whichever worker answers)."""
    global _registry
    if _registry is None:
        fresh = CollectorRegistry(auto_describe=False)
        fresh.register(IsowebCollector())  # type: ignore[arg-type]
        _registry = fresh
    return _registry


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: the OpenMetrics exposition, or 403."""
    if not may_scrape(request.META.get("REMOTE_ADDR"), request.headers.get("Authorization")):
        return HttpResponse(
            "Forbidden: /metrics answers a bearer token (ISOWEB_METRICS_TOKEN) or ISOWEB_METRICS_NETWORKS only.\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
