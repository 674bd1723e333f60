"""Pages: the host and guest inventory, the host CPU map, adding a host and asking for a sync.

Every page needs a logged-in user holding a role; a view checks the input and calls one service or task,
it never saves inventory rows itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST
from kombu.exceptions import KombuError

from hosts import roles, tasks
from hosts.filters import DomainFilterSet, HostFilterSet
from hosts.forms import HostAddForm
from hosts.host_map import cap_rows, load_host_cpu_map, partition_summary, vcpu_rows
from hosts.inventory import create_host
from hosts.models import AuditEvent, Domain, Host
from hosts.queries import hosts_with_counts

log = logging.getLogger(__name__)

View = Callable[..., HttpResponse]

# ?sort= values the guest list accepts, each with its columns; a leading "-" reverses the first column.
DOMAIN_SORTS: dict[str, tuple[str, ...]] = {
    "name": ("name", "host__name"),
    "host": ("host__name", "name"),
    "state": ("state", "host__name", "name"),
    "vcpus": ("vcpus_current", "vcpus_max", "host__name", "name"),
}
DOMAINS_PER_PAGE = 100


def role_required(check: Callable[[Any], bool], refusal: str) -> Callable[[View], View]:
    """Require a logged-in user for whom ``check`` holds; anyone else logged in gets 403 with ``refusal``."""

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not check(request.user):
                raise PermissionDenied(refusal)
            return view(request, *args, **kwargs)

        return login_required(wrapped)

    return decorator


viewer_required = role_required(roles.can_view, "Your account has no isoweb role yet; ask an admin for one.")


def _queue_sync(request: HttpRequest, host: Host) -> bool:
    """Queue a sync of ``host`` and tell the user whether that worked."""
    try:
        tasks.sync_host.delay(host.pk)
    except (KombuError, OSError) as exc:
        log.warning("could not queue a sync of %s: %s", host.name, exc)
        messages.error(
            request,
            f"Could not queue a sync of {host.name}: the task queue (Redis) is not "
            "reachable. The periodic sync will retry.",
        )
        return False
    messages.success(request, f"Sync of {host.name} queued.")
    return True


@viewer_required
def host_list(request: HttpRequest) -> HttpResponse:
    """List the hosts with their status and size, filtered with the same filterset as the API."""
    filterset = HostFilterSet(request.GET or None, queryset=hosts_with_counts())
    return render(
        request,
        "hosts/host_list.html",
        {
            "filter": filterset,
            "hosts": filterset.qs,
            "filtered": bool(request.GET),
        },
    )


@viewer_required
def host_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Show a host's facts, its CPU map and its guests."""
    host = get_object_or_404(Host, pk=pk)
    return render(request, "hosts/host_detail.html", host_page_context(host))


def host_page_context(host: Host, **extra: Any) -> dict[str, Any]:
    """Return what the host page draws; the partition form's error page renders it too."""
    cpu_map = load_host_cpu_map(host)
    return {
        "host": host,
        "cpu_map": cpu_map,
        "partition": partition_summary(host, cpu_map),
        "events": AuditEvent.objects.filter(host=host).select_related("actor")[:10],
        **extra,
    }


@require_POST
@role_required(roles.can_sync, "Only operators, approvers and admins may ask for a sync.")
def host_sync(request: HttpRequest, pk: int) -> HttpResponse:
    """Queue an inventory sync of a host and go back where the user was."""
    host = get_object_or_404(Host, pk=pk)
    _queue_sync(request, host)
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        target = host.get_absolute_url()
    return redirect(target)


@require_http_methods(["GET", "POST"])
@role_required(roles.can_manage_hosts, "Only admins may add hosts.")
def host_add(request: HttpRequest) -> HttpResponse:
    """Register a host through the service (which validates its URI), then queue its first sync."""
    form = HostAddForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            host = create_host(name=form.cleaned_data["name"], uri=form.cleaned_data["uri"], actor=request.user)
        except ValidationError as exc:
            if hasattr(exc, "error_dict"):
                for name, errors in exc.message_dict.items():
                    form.add_error(name if name in form.fields else None, errors)
            else:
                form.add_error("uri", exc)
        else:
            messages.success(request, f"Host {host.name} added.")
            _queue_sync(request, host)
            return redirect(host)
    return render(request, "hosts/host_add.html", {"form": form})


def _sort_columns(value: str) -> tuple[str, tuple[str, ...]]:
    key = value.removeprefix("-")
    if key not in DOMAIN_SORTS:
        return "host", DOMAIN_SORTS["host"]
    first, *rest = DOMAIN_SORTS[key]
    return value, (f"-{first}" if value.startswith("-") else first, *rest)


@viewer_required
def domain_list(request: HttpRequest) -> HttpResponse:
    """List guests across hosts, filtered by the API's filterset and sorted by a whitelisted column."""
    sort, ordering = _sort_columns(request.GET.get("sort", "host"))
    queryset = Domain.objects.select_related("host").order_by(*ordering)
    filterset = DomainFilterSet(request.GET or None, queryset=queryset)
    page = Paginator(filterset.qs, DOMAINS_PER_PAGE).get_page(request.GET.get("page"))
    columns = [("host", "Host"), ("name", "Name"), ("state", "State"), ("vcpus", "vCPUs")]
    headers = [
        {
            "label": label,
            "key": key,
            "active": sort.removeprefix("-") == key,
            "descending": sort == f"-{key}",
            "next": f"-{key}" if sort == key else key,
        }
        for key, label in columns
    ]
    return render(
        request,
        "hosts/domain_list.html",
        {
            "filter": filterset,
            "page": page,
            "headers": headers,
            "sort": sort,
            "filtered": any(k != "sort" and v for k, v in request.GET.items()),
        },
    )


@viewer_required
def domain_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Show a guest's pinning per vCPU against its real affinity, its caps, and live against config."""
    domain = get_object_or_404(Domain.objects.select_related("host"), pk=pk)
    live = domain.tuning_live or {}
    config = domain.tuning_config or {}
    live_io, config_io = live.get("iothreadpin") or {}, config.get("iothreadpin") or {}
    iothreads = sorted({*map(str, domain.iothread_ids or []), *live_io, *config_io}, key=int)
    live_caps = {row.group: row for row in cap_rows(live.get("sched"))}
    config_caps = {row.group: row for row in cap_rows(config.get("sched"))}
    caps = [
        {"group": group, "live": live_caps.get(group), "config": config_caps.get(group)}
        for group in ("vcpu", "emulator", "iothread", "global")
        if group in live_caps or group in config_caps
    ]
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
            "caps": caps,
            "shares": {
                "live": live.get("sched", {}).get("cpu_shares"),
                "config": config.get("sched", {}).get("cpu_shares"),
            },
            "tuning_rows": domain.tuning_rows(),
        },
    )
