"""The drift page, the "Propose remediation" button and a host's automatic re-assert switch."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from hosts.changes.requests import PlanError
from hosts.drift.filters import DriftFilterSet
from hosts.drift.remediate import propose_remediation, set_auto_reassert
from hosts.filters import valid_id
from hosts.models import Drift, Host
from hosts.views.common import draft_required, filtered, partition_required, viewer_required

PER_PAGE = 50
RECENT = 20  # resolved drifts shown on a host's or guest's page


def drift_rows() -> QuerySet[Drift]:
    return Drift.objects.select_related("host", "domain", "remediation").order_by("-detected_at", "-id")


def drift_section(*, host_id: int | None = None, domain_id: int | None = None) -> dict[str, object]:
    """The context of ``hosts/_drift.html`` for a host's or a guest's page: its open and recent resolved drifts."""
    rows = drift_rows()
    if host_id is not None:
        rows, where = rows.filter(host_id=host_id), {"host": host_id}
    elif domain_id is not None:
        rows, where = rows.filter(domain_id=domain_id), {"domain": domain_id}
    else:
        raise ValueError("a drift section belongs to a host or a guest")
    return {
        "drift_open": list(rows.filter(resolved_at__isnull=True)),
        "drift_resolved": list(rows.filter(resolved_at__isnull=False).order_by("-resolved_at", "-id")[:RECENT]),
        "drift_filter": where,
    }


@viewer_required
def drift_list(request: HttpRequest) -> HttpResponse:
    """Show drifts, newest first: open ones by default, filtered by host, guest, scope or how found."""
    query = request.GET.copy()
    if "open" not in query:
        query["open"] = "true"
    filterset = DriftFilterSet(query, queryset=drift_rows())
    rows, status = filtered(request, filterset)
    page = Paginator(rows, PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "hosts/drift_list.html",
        {"filter": filterset, "page": page, "drifts": list(page), "filtered": True},
        status=status,
    )


def _back(request: HttpRequest) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return reverse("hosts:drift-list")


@require_POST
@draft_required
def drift_remediate(request: HttpRequest) -> HttpResponse:
    """Propose the change requests that put the approved values back (pending approval by someone else)."""
    ids = [valid_id(v) for v in request.POST.getlist("drift")]
    host_id = valid_id(request.POST["host"]) if request.POST.get("host") else None
    domain_id = valid_id(request.POST["domain"]) if request.POST.get("domain") else None
    if None in ids or (request.POST.get("host") and host_id is None) or (request.POST.get("domain") and not domain_id):
        messages.error(request, "drift: not a drift, host or guest id.")
        return HttpResponseRedirect(_back(request))
    try:
        made = propose_remediation(
            drift_ids=[i for i in ids if i is not None] or None,
            host_id=host_id,
            domain_id=domain_id,
            actor=request.user,
        )
    except PlanError as exc:
        messages.error(request, str(exc.message))
        return HttpResponseRedirect(_back(request))
    except ValidationError as exc:
        for text in exc.messages:
            messages.error(request, text)
        return HttpResponseRedirect(_back(request))
    except PermissionDenied as exc:
        messages.error(request, str(exc))
        return HttpResponseRedirect(_back(request))
    names = ", ".join(f"CR-{cr.pk}" for cr in made)
    messages.success(request, f"Proposed {names}: it puts the approved values back once someone approves it.")
    return HttpResponseRedirect(made[0].get_absolute_url() if len(made) == 1 else reverse("hosts:change-list"))


@require_POST
@partition_required
def host_auto_reassert(request: HttpRequest, pk: int) -> HttpResponse:
    """Switch a host's automatic re-assert (admins)."""
    host = get_object_or_404(Host, pk=pk)
    enabled = request.POST.get("enabled") == "true"
    set_auto_reassert(host.pk, enabled=enabled, actor=request.user)
    messages.success(request, f"Automatic re-assert is {'on' if enabled else 'off'} for {host.name}.")
    return HttpResponseRedirect(host.get_absolute_url())
