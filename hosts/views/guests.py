"""Guest pages: the guest list across hosts and a guest's pinning, caps, live against config."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from hosts.filters import DomainFilterSet
from hosts.host_map import cap_rows, vcpu_rows
from hosts.models import Domain, Host
from hosts.tables import DomainTable
from hosts.units import cap, is_sched, sched_value, shares
from hosts.views.common import filtered, tabled, viewer_required

DOMAINS_PER_PAGE = 100


@viewer_required
def domain_list(request: HttpRequest) -> HttpResponse:
    """List guests across hosts, filtered by the API's filterset, sorted by a column and paginated."""
    filterset = DomainFilterSet(request.GET or None, queryset=Domain.objects.select_related("host"))
    rows, status = filtered(request, filterset)
    is_filtered = any(v for k, v in request.GET.items() if k not in ("sort", "page"))
    table = DomainTable(rows)
    table.empty_text = "No guest matches this filter." if is_filtered else "No guest known yet."
    status = tabled(request, table, status, per_page=DOMAINS_PER_PAGE)
    return render(
        request,
        "hosts/domain_list.html",
        {"filter": filterset, "table": table, "page": table.page, "filtered": is_filtered},
        status=status,
    )


def _caps(live: dict[str, Any], config: dict[str, Any]) -> list[dict[str, Any]]:
    """Return each thread group's scheduler caps, live and in the config, for the groups that have any."""
    live_caps = {row.group: row for row in cap_rows(live.get("sched"))}
    config_caps = {row.group: row for row in cap_rows(config.get("sched"))}

    def text(row: Any, config_side: bool) -> str | None:
        return None if row is None else cap(row.quota, row.period, config=config_side)

    return [
        {
            "group": group,
            "live": live_caps.get(group),
            "config": config_caps.get(group),
            "live_text": text(live_caps.get(group), False),
            "config_text": text(config_caps.get(group), True),
        }
        for group in ("vcpu", "emulator", "iothread", "global")
        if group in live_caps or group in config_caps
    ]


def _worded_tuning_rows(domain: Domain) -> list[dict[str, Any]]:
    """The live-vs-config rows, each scheduler value also in words (a quota with its period)."""
    live_sched = (domain.tuning_live or {}).get("sched") or {}
    config_sched = (domain.tuning_config or {}).get("sched") or {}
    rows = domain.tuning_rows()
    for row in rows:
        if is_sched(row["field"]):
            row["live_text"] = sched_value(row["field"], row["live"], live_sched)
            row["config_text"] = sched_value(row["field"], row["config"], config_sched, config=True)
    return rows


@viewer_required
def domain_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Show a guest's pinning per vCPU against its real affinity, its caps, and live against config."""
    domain = get_object_or_404(Domain.objects.select_related("host"), pk=pk)
    live = domain.tuning_live or {}
    config = domain.tuning_config or {}
    live_io, config_io = live.get("iothreadpin") or {}, config.get("iothreadpin") or {}
    iothreads = sorted({*map(str, domain.iothread_ids or []), *live_io, *config_io}, key=int)
    return render(
        request,
        "hosts/domain_detail.html",
        {
            "domain": domain,
            "host": domain.host,
            "stale": domain.is_stale or domain.host.status != Host.Status.UP,
            "has_live": domain.tuning_live is not None,
            "has_config": domain.tuning_config is not None,
            "vcpus": vcpu_rows(domain),
            "emulatorpin": {"live": live.get("emulatorpin"), "config": config.get("emulatorpin")},
            "iothreads": [{"id": n, "live": live_io.get(n), "config": config_io.get(n)} for n in iothreads],
            "caps": _caps(live, config),
            "shares": {
                "live": live.get("sched", {}).get("cpu_shares"),
                "config": config.get("sched", {}).get("cpu_shares"),
                "live_text": shares(live.get("sched", {}).get("cpu_shares")),
                "config_text": shares(config.get("sched", {}).get("cpu_shares"), config=True),
            },
            "tuning_rows": _worded_tuning_rows(domain),
        },
    )
