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
from hosts.forms.hosts import HostAddForm, HostEditForm, HostRemoveForm, MaintenanceForm, PartitionForm
from hosts.host_lifecycle import end_maintenance, remove_host, start_maintenance, update_host
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
    role_required,
    sync_required,
    tabled,
    viewer_required,
)

log = logging.getLogger(__name__)

manage_host_required = role_required(roles.can_manage_hosts, "Only admins may edit, pause or remove hosts.")


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
    """Show a host's facts, its CPU map and its guests; a removed host's page says when and by whom."""
    host = get_object_or_404(Host.all_objects, pk=pk)
    if host.is_removed:
        return _removed_page(request, host)
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
    if host.in_maintenance:
        messages.error(request, f"{host.name} is in maintenance ({host.maintenance_reason}): it is not synced.")
    else:
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


def _removed_page(request: HttpRequest, host: Host) -> HttpResponse:
    """A removed host: when and by whom, and its audit events; its change requests keep linking here."""
    removal = AuditEvent.objects.filter(host=host, action=AuditEvent.Action.HOST_REMOVE).select_related("actor").last()
    events = AuditEvent.objects.filter(host=host).select_related("actor")[:10]
    return render(request, "hosts/host_removed.html", {"host": host, "removal": removal, "events": events}, status=410)


def _edit_page(request: HttpRequest, host: Host, status: int = 200, **forms: Any) -> HttpResponse:
    """The host's admin page: its name and URI, maintenance, removal; a refused form is shown with its errors."""
    context = {
        "host": host,
        "form": forms.get("form") or HostEditForm(initial={"name": host.name, "uri": host.uri}),
        "maintenance_form": forms.get("maintenance_form") or MaintenanceForm(),
        "remove_form": forms.get("remove_form") or HostRemoveForm(host_name=host.name),
    }
    return render(request, "hosts/host_edit.html", context, status=status)


def _service_errors(form: Any, exc: ValidationError, unnamed: str | None = None) -> None:
    for name, errors in messages_by_field(exc).items():
        form.add_error(name if name in form.fields else unnamed, errors)


@require_http_methods(["GET", "POST"])
@manage_host_required
def host_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Change a host's name and URI through the service (which validates the URI as when adding a host)."""
    host = get_object_or_404(Host, pk=pk)
    if request.method != "POST":
        return _edit_page(request, host)
    form = HostEditForm(request.POST)
    if form.is_valid():
        uri_was = host.uri
        try:
            host, changed = update_host(host.pk, actor=request.user, **form.cleaned_data)
        except ValidationError as exc:
            _service_errors(form, exc, unnamed="uri")  # an error naming no field is about the URI
        else:
            if not changed:
                messages.info(request, "Nothing changed.")
            else:
                messages.success(request, f"Host {host.name} saved.")
                if host.uri != uri_was and not host.in_maintenance:
                    _queue_sync(request, host)
            return redirect(host)
    return _edit_page(request, host, 400, form=form)


@require_POST
@manage_host_required
def host_maintenance(request: HttpRequest, pk: int) -> HttpResponse:
    """Put a host in maintenance, with the reason: it is no longer synced, charted or changed."""
    host = get_object_or_404(Host, pk=pk)
    form = MaintenanceForm(request.POST)
    if form.is_valid():
        try:
            host = start_maintenance(host.pk, reason=form.cleaned_data["reason"], actor=request.user)
        except ValidationError as exc:
            _service_errors(form, exc)
        else:
            messages.success(request, f"{host.name} is in maintenance: it is not synced, charted or changed.")
            return redirect(host)
    return _edit_page(request, host, 400, maintenance_form=form)


@require_POST
@manage_host_required
def host_resume(request: HttpRequest, pk: int) -> HttpResponse:
    """Put a host back in service and sync it at once."""
    host = get_object_or_404(Host, pk=pk)
    try:
        host = end_maintenance(host.pk, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect(host)
    messages.success(request, f"{host.name} is back in service.")
    _queue_sync(request, host)
    return redirect(host)


@require_POST
@manage_host_required
def host_remove(request: HttpRequest, pk: int) -> HttpResponse:
    """Remove a host once the admin has typed its name: its guests leave the inventory, its history stays."""
    host = get_object_or_404(Host, pk=pk)
    form = HostRemoveForm(request.POST, host_name=host.name)
    if form.is_valid():
        try:
            host = remove_host(host.pk, actor=request.user)
        except ValidationError as exc:
            _service_errors(form, exc)
        else:
            messages.success(request, f"Host {host.name} removed; its change requests and audit events stay.")
            return redirect("hosts:host-list")
    return _edit_page(request, host, 400, remove_form=form)
