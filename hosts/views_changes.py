"""Pages for pin profiles, change requests, the audit log and a host's CPU partition.

Like hosts/views.py: every page needs a role, every POST is role-checked (403 otherwise) and CSRF-protected,
and a view only checks input and calls one service function, putting the service's errors back next to the
fields they concern. Nothing is saved when there is an error.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, OuterRef, Prefetch, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST
from kombu.exceptions import KombuError

from hosts import roles
from hosts.changes.requests import (
    PlanError,
    approve_change_request,
    create_change_request,
    plan_rows,
    reject_change_request,
    request_rollback,
)
from hosts.filters import AuditEventFilterSet, ChangeRequestFilterSet
from hosts.forms_changes import (
    ChangeRequestForm,
    DecisionForm,
    PartitionForm,
    ProfileForm,
    add_service_errors,
)
from hosts.inventory import set_host_partition
from hosts.models import AuditEvent, ChangeRequest, ChangeTarget, Domain, Host, PinProfile, PinProfileRevision
from hosts.planning.plans import plan_for_domains
from hosts.planning.profiles import create_profile, revise_profile
from hosts.planning.schema import ProfileError, validate_profile
from hosts.views import host_page_context, role_required, viewer_required

log = logging.getLogger(__name__)

PER_PAGE = 50
# While a request is in one of these states its page polls the API for progress.
ACTIVE_STATUSES = (ChangeRequest.Status.SCHEDULED, ChangeRequest.Status.APPLYING)

draft_required = role_required(roles.can_draft, "Only operators may draft profiles and change requests.")
approve_required = role_required(roles.can_approve, "Only approvers may approve, reject or roll back change requests.")
admin_required = role_required(roles.can_manage_hosts, "Only admins may change a host's CPU partition.")


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False)


def _validation_messages(exc: ValidationError) -> list[tuple[str, list[str]]]:
    if hasattr(exc, "error_dict"):
        return list(exc.message_dict.items())
    return [("__all__", exc.messages)]


# Profiles ------------------------------------------------------------------------------------------------


@viewer_required
def profile_list(request: HttpRequest) -> HttpResponse:
    """List the profiles with their latest revision, who made it and when (one query)."""
    latest = PinProfileRevision.objects.filter(profile=OuterRef("pk")).order_by("-number")
    profiles_qs = PinProfile.objects.annotate(
        latest_number=Subquery(latest.values("number")[:1]),
        latest_at=Subquery(latest.values("created_at")[:1]),
        latest_by=Subquery(latest.values("created_by__username")[:1]),
        latest_comment=Subquery(latest.values("comment")[:1]),
    ).order_by("name")
    return render(request, "hosts/profile_list.html", {"profiles": profiles_qs})


@viewer_required
def profile_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Show a profile's revisions, newest first, and the change requests that use it."""
    revisions = PinProfileRevision.objects.select_related("created_by").order_by("-number")
    profile = get_object_or_404(
        PinProfile.objects.select_related("created_by").prefetch_related(Prefetch("revisions", queryset=revisions)),
        pk=pk,
    )
    revision_rows = [{"revision": r, "json": _pretty(r.content)} for r in profile.revisions.all()]
    requests = (
        ChangeRequest.objects.filter(profile_revision__profile=profile)
        .select_related("profile_revision", "requested_by")
        .annotate(guest_count=Count("targets"))
        .order_by("-created_at", "-id")[:20]
    )
    return render(
        request,
        "hosts/profile_detail.html",
        {"profile": profile, "revisions": revision_rows, "change_requests": requests},
    )


def _planner_context() -> dict[str, Any]:
    """The hosts and guests the profile editor can plan against, for its live validation script."""
    hosts = list(Host.objects.order_by("name").values("id", "name", "status", "housekeeping_cpus"))
    guests = list(Domain.objects.order_by("host__name", "name").values("id", "name", "host_id", "state", "vcpus_max"))
    return {
        "hosts": hosts,
        "guests": guests,
        "scopes": ChangeRequest.Scope.choices,
        "plan_url": reverse("api:profile-plan"),
        "host_url": reverse("api:host-detail", args=[0]),
    }


def _profile_editor(request: HttpRequest, profile: PinProfile | None) -> HttpResponse:
    editing = profile is not None
    latest = profile.latest_revision if profile else None
    initial: dict[str, Any] = {}
    if profile is not None:
        initial = ProfileForm.initial_from_content(latest.content if latest else {})
        initial["description"] = profile.description
    form = ProfileForm(request.POST or None, initial=initial, editing=editing)
    if request.method == "POST":
        valid = form.is_valid()
        content = form.content()
        if not valid and content is not None:
            # Also run the validator on what could be read, so every problem shows in one go.
            try:
                validate_profile(content)
            except ProfileError as exc:
                add_service_errors(form, exc.errors.items(), form.field_for)
        elif valid and not form.errors:
            try:
                if profile is None:
                    created = create_profile(
                        name=form.cleaned_data["name"],
                        description=form.cleaned_data["description"],
                        content=content,
                        actor=request.user,
                    )
                    messages.success(request, f"Profile {created.name} created (revision 1).")
                    return redirect(created)
                revision = revise_profile(
                    profile.pk,
                    content=content,
                    description=form.cleaned_data["description"],
                    comment=form.cleaned_data["comment"],
                    actor=request.user,
                )
                messages.success(request, f"Saved {profile.name} revision {revision.number}.")
                return redirect(profile)
            except ProfileError as exc:
                add_service_errors(form, exc.errors.items(), form.field_for)
            except ValidationError as exc:
                add_service_errors(form, _validation_messages(exc))
    return render(
        request,
        "hosts/profile_form.html",
        {
            "form": form,
            "profile": profile,
            "latest": latest,
            "planner": _planner_context(),
            "sched_rows": _sched_rows(form),
        },
        status=400 if request.method == "POST" else 200,
    )


def _sched_rows(form: ProfileForm) -> list[dict[str, Any]]:
    """Group the scheduler fields by thread group so each period sits next to its quota."""
    rows = [{"label": "cpu_shares", "shares": form["sched_cpu_shares"]}]
    for group in ("vcpu", "emulator", "iothread", "global"):
        rows.append(
            {
                "label": group,
                "period": form[f"sched_{group}_period"],
                "quota": form[f"sched_{group}_quota"],
                "percent": form[f"percent_{group}_quota"],
            }
        )
    return rows


@require_http_methods(["GET", "POST"])
@draft_required
def profile_create(request: HttpRequest) -> HttpResponse:
    """Write a new profile; it is validated and stored as its revision 1."""
    return _profile_editor(request, None)


@require_http_methods(["GET", "POST"])
@draft_required
def profile_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Edit a profile: the earlier revisions stay as they are, saving adds a new one."""
    return _profile_editor(request, get_object_or_404(PinProfile, pk=pk))


# Change requests -------------------------------------------------------------------------------------------


@viewer_required
def change_list(request: HttpRequest) -> HttpResponse:
    """List change requests, newest first, filtered by status."""
    queryset = (
        ChangeRequest.objects.select_related("profile_revision__profile", "requested_by", "decided_by")
        .annotate(guest_count=Count("targets"), host_count=Count("targets__host", distinct=True))
        .order_by("-created_at", "-id")
    )
    filterset = ChangeRequestFilterSet(request.GET or None, queryset=queryset)
    page = Paginator(filterset.qs, PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "hosts/change_list.html",
        {"filter": filterset, "page": page, "filtered": bool(request.GET.get("status"))},
    )


def _change_form_initial(request: HttpRequest) -> dict[str, Any]:
    initial: dict[str, Any] = {}
    revision_id, profile_id = request.GET.get("revision", ""), request.GET.get("profile", "")
    if revision_id.isdigit():
        initial["profile_revision"] = int(revision_id)
    elif profile_id.isdigit():
        latest = PinProfileRevision.objects.filter(profile_id=int(profile_id)).order_by("-number").first()
        if latest is not None:
            initial["profile_revision"] = latest.pk
    domain_ids = [int(i) for i in request.GET.getlist("domain") if i.isdigit()]
    if domain_ids:
        initial["domains"] = domain_ids
    return initial


@require_http_methods(["GET", "POST"])
@draft_required
def change_create(request: HttpRequest) -> HttpResponse:
    """Propose a change: preview the per-guest plan first, then submit it for someone else to approve.

    "Submit" only records the request for the exact revision, guests and scope that were previewed;
    if any of them changed since, the page shows the new plan instead and asks again.
    """
    form = ChangeRequestForm(request.POST or None, initial=_change_form_initial(request))
    plans: list[dict[str, Any]] | None = None
    fingerprint = ""
    notice = ""
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        revision, domains, scope = data["profile_revision"], list(data["domains"]), data["scope"]
        fingerprint = form.fingerprint()
        wants_submit = request.POST.get("action") == "submit"
        if wants_submit and data.get("previewed") == fingerprint:
            try:
                cr = create_change_request(
                    revision=revision,
                    domain_ids=[d.pk for d in domains],
                    scope=scope,
                    reason=data["reason"],
                    apply_at=data["apply_at"],
                    actor=request.user,
                )
            except PlanError as exc:
                plans = exc.plans
                form.add_error(None, "The plan has errors for some guests (below); nothing was saved.")
            except ValidationError as exc:
                add_service_errors(form, _validation_messages(exc))
            else:
                messages.success(request, f"Change request CR-{cr.pk} submitted; someone else must approve it.")
                return redirect(cr)
        else:
            if wants_submit:
                notice = "The revision, guests or scope changed since the last preview: check this plan, then submit."
            try:
                planned = plan_for_domains(validate_profile(revision.content), domains, scope)
            except ProfileError as exc:  # a stored revision was valid when saved; the rules may have moved
                form.add_error("profile_revision", f"This revision is no longer valid: {exc}")
            else:
                plans = plan_rows(planned)
    for plan in plans or []:
        plan["parts"] = [{"scope": part, "rows": rows} for part, rows in plan["diff"].items()]
    plan_ok = plans is not None and all(not p["errors"] for p in plans)
    return render(
        request,
        "hosts/change_form.html",
        {
            "form": form,
            "plans": plans,
            "plan_ok": plan_ok,
            "fingerprint": fingerprint if plan_ok else "",
            "notice": notice,
            "hosts": Host.objects.order_by("name").values_list("name", flat=True),
            "tz": timezone.get_current_timezone_name(),
        },
        status=400 if request.method == "POST" and form.errors else 200,
    )


def _field_value(tuning: dict[str, Any] | None, label: str) -> Any:
    """Return the value of a diff row's field (e.g. ``vcpupin 2``, ``emulatorpin``, ``vcpu_quota``)."""
    if not tuning:
        return None
    name, _, number = label.partition(" ")
    if name in ("vcpupin", "iothreadpin"):
        return (tuning.get(name) or {}).get(number)
    if name == "emulatorpin":
        return tuning.get("emulatorpin")
    return (tuning.get("sched") or {}).get(name)


def _target_rows(target: ChangeTarget) -> list[dict[str, Any]]:
    """Per scope, the diff rows with the value before applying and after, once the worker has them."""
    diff = target.diff if isinstance(target.diff, dict) else {"live": target.diff or []}
    out = []
    for part, rows in diff.items():
        before = (target.before or {}).get(part)
        after = (target.after or {}).get(part)
        out.append(
            {
                "scope": part,
                "rows": [
                    {
                        **row,
                        "before": _field_value(before, row["field"]),
                        "after": _field_value(after, row["field"]),
                        "has_before": target.before is not None,
                        "has_after": target.after is not None,
                    }
                    for row in rows
                ],
            }
        )
    return out


@viewer_required
def change_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Show a change request: what it applies, to whom, its plan per guest, decisions and results."""
    cr = get_object_or_404(
        ChangeRequest.objects.select_related(
            "profile_revision__profile", "profile_revision__created_by", "requested_by", "decided_by", "rolled_back_by"
        ),
        pk=pk,
    )
    targets = list(cr.targets.select_related("host", "domain").order_by("host__name", "domain_name"))
    counts = Counter(t.status for t in targets)
    # While rolling back, a guest still "applied" is waiting to be put back.
    pending = {"planned", "applying", "applied"} if cr.rolled_back_by_id else {"planned", "applying"}
    finished = sum(counts[s] for s in ChangeTarget.Status.values if s not in pending)
    is_requester = cr.requested_by_id == request.user.pk
    may_approve = roles.can_approve(request.user)
    return render(
        request,
        "hosts/change_detail.html",
        {
            "cr": cr,
            "content_json": _pretty(cr.profile_revision.content),
            "targets": [{"target": t, "parts": _target_rows(t)} for t in targets],
            "counts": counts,
            "finished": finished,
            "is_requester": is_requester,
            "can_decide": may_approve and not is_requester and cr.status == ChangeRequest.Status.PENDING,
            "can_rollback": may_approve and cr.status in ChangeRequest.ROLLBACKABLE and cr.rolled_back_by_id is None,
            "may_approve": may_approve,
            "active": cr.status in ACTIVE_STATUSES or cr.rolling_back,
            "decision_form": DecisionForm(),
            "show_results": cr.status not in (ChangeRequest.Status.PENDING, ChangeRequest.Status.REJECTED),
            "api_url": reverse("api:change-request-detail", args=[cr.pk]),
            "status_labels": {
                "request": dict(ChangeRequest.Status.choices),
                "target": dict(ChangeTarget.Status.choices),
                "active": [str(s) for s in ACTIVE_STATUSES],
            },
        },
    )


def _decide(request: HttpRequest, pk: int, *, approve: bool) -> HttpResponse:
    cr = get_object_or_404(ChangeRequest, pk=pk)
    form = DecisionForm(request.POST)
    comment = form.cleaned_data["comment"] if form.is_valid() else ""
    service = approve_change_request if approve else reject_change_request
    try:
        service(cr.pk, comment=comment, actor=request.user)  # PermissionDenied (own request) becomes a 403
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    except (KombuError, OSError) as exc:
        log.warning("approved CR-%s but could not queue its apply: %s", cr.pk, exc)
        messages.warning(
            request,
            f"CR-{cr.pk} approved, but the task queue (Redis) is not reachable; the periodic check will start it.",
        )
    else:
        messages.success(request, f"CR-{cr.pk} {'approved' if approve else 'rejected'}.")
    return redirect(cr)


@require_POST
@approve_required
def change_approve(request: HttpRequest, pk: int) -> HttpResponse:
    """Approve someone else's pending change request."""
    return _decide(request, pk, approve=True)


@require_POST
@approve_required
def change_reject(request: HttpRequest, pk: int) -> HttpResponse:
    """Reject someone else's pending change request."""
    return _decide(request, pk, approve=False)


@require_POST
@approve_required
def change_rollback(request: HttpRequest, pk: int) -> HttpResponse:
    """Put every guest the request changed back as its snapshot found it."""
    cr = get_object_or_404(ChangeRequest, pk=pk)
    try:
        request_rollback(cr.pk, actor=request.user)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    except (KombuError, OSError) as exc:
        log.warning("could not queue the rollback of CR-%s: %s", cr.pk, exc)
        messages.warning(request, f"Rollback of CR-{cr.pk} recorded, but the task queue (Redis) is not reachable.")
    else:
        messages.success(request, f"Rollback of CR-{cr.pk} requested.")
    return redirect(cr)


# Audit -----------------------------------------------------------------------------------------------------


@viewer_required
def audit_list(request: HttpRequest) -> HttpResponse:
    """Show the audit log, newest first, filtered and paginated."""
    queryset = AuditEvent.objects.select_related("actor", "host", "domain", "change_request", "profile").order_by(
        "-created_at", "-id"
    )
    filterset = AuditEventFilterSet(request.GET or None, queryset=queryset)
    page = Paginator(filterset.qs, PER_PAGE).get_page(request.GET.get("page"))
    events = [
        {
            "event": e,
            "before": None if e.before is None else _pretty(e.before),
            "after": None if e.after is None else _pretty(e.after),
        }
        for e in page
    ]
    return render(
        request,
        "hosts/audit_list.html",
        {
            "filter": filterset,
            "page": page,
            "events": events,
            "filtered": any(v for k, v in request.GET.items() if k != "page"),
        },
    )


# Host partition --------------------------------------------------------------------------------------------


@require_POST
@admin_required
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
            add_service_errors(form, _validation_messages(exc))
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
