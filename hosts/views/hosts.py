"""Host pages: the host list (the home page), a host's CPU map, adding a host, a sync and the CPU partition."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST
from kombu.exceptions import KombuError

from hosts import roles, tasks
from hosts.filters import HostFilterSet
from hosts.forms.common import add_service_errors
from hosts.forms.hosts import HostAddForm, PartitionForm
from hosts.host_map import load_host_cpu_map, partition_summary
from hosts.inventory import create_host, set_host_partition
from hosts.models import AuditEvent, Host
from hosts.queries import hosts_with_counts
from hosts.tables import HostTable
from hosts.validation import messages_by_field
from hosts.views.common import (
    add_host_required,
    filtered,
    partition_required,
    sync_required,
    tabled,
    viewer_required,
)

log = logging.getLogger(__name__)


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
    rows, status = filtered(request, filterset)
    is_filtered = any(v for k, v in request.GET.items() if k not in ("sort", "page"))
    table = HostTable(rows, exclude=() if roles.can_sync(request.user) else ("actions",))
    table.empty_text = "No host matches this filter." if is_filtered else "No host is registered yet."
    status = tabled(request, table, status)
    return render(
        request,
        "hosts/host_list.html",
        {"filter": filterset, "table": table, "page": table.page, "filtered": is_filtered},
        status=status,
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
@sync_required
def host_sync(request: HttpRequest, pk: int) -> HttpResponse:
    """Queue an inventory sync of a host and go back where the user was."""
    host = get_object_or_404(Host, pk=pk)
    _queue_sync(request, host)
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        target = host.get_absolute_url()
    return redirect(target)


@require_http_methods(["GET", "POST"])
@add_host_required
def host_add(request: HttpRequest) -> HttpResponse:
    """Register a host through the service (which validates its URI), then queue its first sync."""
    form = HostAddForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            host = create_host(**form.cleaned_data, actor=request.user)
        except ValidationError as exc:  # an error naming no field is about the URI
            for name, errors in messages_by_field(exc, unnamed="uri").items():
                form.add_error(name if name in form.fields else None, errors)
        else:
            messages.success(request, f"Host {host.name} added.")
            _queue_sync(request, host)
            return redirect(host)
    return render(request, "hosts/host_add.html", {"form": form})


@require_POST
@partition_required
def host_partition(request: HttpRequest, pk: int) -> HttpResponse:
    """Set which CPUs a host keeps for housekeeping; the others form its guest pool."""
    host = get_object_or_404(Host, pk=pk)
    form = PartitionForm(request.POST)
    if form.is_valid():
        try:
            host = set_host_partition(
                host.pk, housekeeping_cpus=form.cleaned_data["housekeeping_cpus"], actor=request.user
            )
        except ValidationError as exc:
            add_service_errors(form, messages_by_field(exc).items())
        else:
            cpus = host.housekeeping_cpus
            messages.success(
                request,
                f"Housekeeping CPUs of {host.name} set to {cpus}."
                if cpus
                else f"{host.name} has no housekeeping CPUs.",
            )
            return redirect(reverse("hosts:host-detail", args=[host.pk]) + "#partition")
    # Show the host page again with the error next to the field.
    return render(request, "hosts/host_detail.html", host_page_context(host, partition_form=form), status=400)
