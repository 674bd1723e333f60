"""Change request pages: the list, proposing a change with a plan preview, a request's progress and the
approve, reject and roll back buttons.

Proposing shows every guest's plan first (hosts/planning/preview.py); submitting records exactly what was
previewed through hosts/changes/requests.py, which enforces the four-eyes rule the buttons offer.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_http_methods, require_POST
from kombu.exceptions import KombuError

from hosts import roles
from hosts.changes.requests import (
    PlanError,
    approve_change_request,
    create_change_request,
    reject_change_request,
    request_rollback,
)
from hosts.changes.rollback import ALREADY, CONFLICT, RESTORE, apply_after, rollback_result
from hosts.changes.rollback_preview import preview_rollback
from hosts.filters import ChangeRequestFilterSet, valid_id
from hosts.forms.changes import PICK_HOST, PICK_RUNNING, ChangeRequestForm, DecisionForm, bulk_pick
from hosts.forms.common import add_service_errors
from hosts.models import ChangeRequest, ChangeTarget, Domain, Host, PinProfileRevision
from hosts.planning.preview import preview_plan
from hosts.planning.schema import ProfileError
from hosts.tables import ChangeRequestTable
from hosts.units import describe_diff_part, is_sched, sched_value
from hosts.validation import messages_by_field
from hosts.views.common import approve_required, draft_required, filtered, pretty, tabled, viewer_required

log = logging.getLogger(__name__)

# While a request is in one of these states its page polls the API for progress.
ACTIVE_STATUSES = (ChangeRequest.Status.SCHEDULED, ChangeRequest.Status.APPLYING)


@viewer_required
def change_list(request: HttpRequest) -> HttpResponse:
    """List change requests, newest first, with their hosts, guests and reason; filtered, sorted and paged."""
    targets = ChangeTarget.objects.select_related("host").only("change_request_id", "domain_name", "host__name")
    queryset = (
        ChangeRequest.objects.select_related("profile_revision__profile", "requested_by", "decided_by")
        .prefetch_related(Prefetch("targets", queryset=targets))
        .annotate(guest_count=Count("targets"), host_count=Count("targets__host", distinct=True))
        .order_by("-created_at", "-id")
    )
    filterset = ChangeRequestFilterSet(request.GET or None, queryset=queryset)
    rows, status = filtered(request, filterset)
    is_filtered = any(v for k, v in request.GET.items() if k not in ("sort", "page"))
    table = ChangeRequestTable(rows)
    table.empty_text = "No change request matches this filter." if is_filtered else "No change request yet."
    status = tabled(request, table, status)
    return render(
        request,
        "hosts/change_list.html",
        {"filter": filterset, "table": table, "page": table.page, "filtered": is_filtered},
        status=status,
    )


def _change_form_initial(request: HttpRequest) -> dict[str, Any]:
    """Return the change form's initial revision and guests from ``?revision=``/``?profile=`` and ``?domain=``."""
    initial: dict[str, Any] = {}
    # Ids outside a primary key's range are ignored like any other garbage (never handed to the database).
    revision_id, profile_id = valid_id(request.GET.get("revision", "")), valid_id(request.GET.get("profile", ""))
    if revision_id is not None:
        initial["profile_revision"] = revision_id
    elif profile_id is not None:
        latest = PinProfileRevision.objects.filter(profile_id=profile_id).order_by("-number").first()
        if latest is not None:
            initial["profile_revision"] = latest.pk
    domain_ids = [i for i in map(valid_id, request.GET.getlist("domain")) if i is not None]
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
    if request.method == "POST" and request.POST.get("action") in (PICK_HOST, PICK_RUNNING):
        return _change_form_page(request, _bulk_picked(request), None, "", "")
    form = ChangeRequestForm(request.POST or None, initial=_change_form_initial(request))
    plans: list[dict[str, Any]] | None = None
    fingerprint = notice = ""
    if request.method == "POST" and form.is_valid():
        fingerprint = form.fingerprint()
        wants_submit = request.POST.get("action") == "submit"
        if wants_submit and form.cleaned_data.get("previewed") == fingerprint:
            try:
                cr = _submit_change(request, form)
            except PlanError as exc:
                plans = exc.plans
                form.add_error(None, "The plan has errors for some guests (below); nothing was saved.")
            except ValidationError as exc:
                add_service_errors(form, messages_by_field(exc).items())
            else:
                messages.success(request, f"Change request CR-{cr.pk} submitted; someone else must approve it.")
                return redirect(cr)
        else:
            if wants_submit:
                notice = "The revision, guests or scope changed since the last preview: check this plan, then submit."
            plans = _preview_change(form)
    return _change_form_page(request, form, plans, fingerprint, notice)


def _bulk_picked(request: HttpRequest) -> ChangeRequestForm:
    """Add the guests of a bulk pick to those already chosen and show the form again as it was, unvalidated
    (picking guests is not yet asking for a preview, so no "required" errors on fields not filled in yet)."""
    data = request.POST
    chosen = [i for i in map(valid_id, data.getlist("domains")) if i is not None]
    try:
        added, what = bulk_pick(data["action"], host_name=data.get("pick_host", ""), find=data.get("pick_find", ""))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        added = []
    else:
        new = [i for i in added if i not in chosen]
        messages.info(request, f"Picked {what}: {len(new)} added, {len(chosen) + len(new)} chosen in all.")
    initial: dict[str, Any] = {
        name: data.get(name, "")
        for name in ("profile_revision", "scope", "apply_at", "reason", "pick_host", "pick_find")
    }
    initial["domains"] = list(dict.fromkeys([*chosen, *added]))
    return ChangeRequestForm(initial=initial)


def _submit_change(request: HttpRequest, form: ChangeRequestForm) -> ChangeRequest:
    """Record the previewed change through the service; raises PlanError or ValidationError, saving nothing."""
    data = form.cleaned_data
    return create_change_request(
        revision=data["profile_revision"],
        domain_ids=[d.pk for d in data["domains"]],
        scope=data["scope"],
        reason=data["reason"],
        apply_at=data["apply_at"],
        actor=request.user,
    )


def _preview_change(form: ChangeRequestForm) -> list[dict[str, Any]] | None:
    """Return every guest's plan for the form's revision, guests and scope; None with the errors on ``form``."""
    data = form.cleaned_data
    try:
        preview = preview_plan(data["profile_revision"].content, [d.pk for d in data["domains"]], data["scope"])
    except ProfileError as exc:  # a stored revision was valid when saved; the rules may have moved
        form.add_error("profile_revision", f"This revision is no longer valid: {exc}")
        return None
    except ValidationError as exc:  # a guest went away since the form was read
        add_service_errors(form, messages_by_field(exc).items())
        return None
    return preview.rows


def _change_form_page(
    request: HttpRequest, form: ChangeRequestForm, plans: list[dict[str, Any]] | None, fingerprint: str, notice: str
) -> HttpResponse:
    """Render the change form with the plans shown per scope; submitting is offered only for a plan without errors."""
    tunings: dict[int, Any] = {
        row["pk"]: row
        for row in Domain.objects.filter(pk__in=[p["domain"] for p in plans or []]).values(
            "pk", "tuning_live", "tuning_config"
        )
    }
    for plan in plans or []:
        tuning = tunings.get(plan["domain"], {})
        plan["parts"] = [
            {"scope": part, "rows": describe_diff_part(part, rows, (tuning.get(f"tuning_{part}") or {}).get("sched"))}
            for part, rows in plan["diff"].items()
        ]
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
        applied = apply_after(target.after)  # what the apply read back, without the rollback's record
        after = (applied or {}).get(part)
        # A quota is worded with its period: the snapshot's when there is one, else the guest's as known now.
        known = before if before is not None else getattr(target.domain, f"tuning_{part}", None)
        described = describe_diff_part(part, rows, (known or {}).get("sched"))
        out.append(
            {
                "scope": part,
                "rows": [
                    {
                        **row,
                        "before": _field_value(before, row["field"]),
                        "after": _field_value(after, row["field"]),
                        "before_text": _sched_text(before, row["field"], part),
                        "after_text": _sched_text(after, row["field"], part),
                        "has_before": target.before is not None,
                        "has_after": applied is not None,
                    }
                    for row in described
                ],
            }
        )
    return out


def _sched_text(tuning: dict[str, Any] | None, field: str, part: str) -> str | None:
    """Word a scheduler field of a read-back tuning (before or after applying); None for a pin field."""
    if not tuning or not is_sched(field):
        return None
    sched = tuning.get("sched") or {}
    return sched_value(field, sched.get(field), sched, config=part == "config")


def _rollback_of(target: ChangeTarget) -> dict[str, Any] | None:
    """A rolled-back guest's rollback: when it finished, the fields restored and verified, those left alone."""
    result = rollback_result(target.after)
    if result is None:
        return None
    items = result.get("fields") or []
    return {
        "finished_at": parse_datetime(result.get("finished_at") or ""),
        "restored": [i for i in items if i.get("action") == RESTORE],
        "conflicts": [i for i in items if i.get("action") == CONFLICT],
        "already": [i for i in items if i.get("action") == ALREADY],
    }


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
    rollbacks = {t.pk: _rollback_of(t) for t in targets}
    rolled_back_times = [r["finished_at"] for r in rollbacks.values() if r and r["finished_at"]]
    return render(
        request,
        "hosts/change_detail.html",
        {
            "cr": cr,
            "content_json": pretty(cr.profile_revision.content),
            "targets": [{"target": t, "parts": _target_rows(t), "rollback": rollbacks[t.pk]} for t in targets],
            "rollback_finished_at": max(rolled_back_times) if rolled_back_times else None,
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
    """Approve or reject a request through the service, then go back to its page saying how that went."""
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


@require_http_methods(["GET", "POST"])
@approve_required
def change_rollback(request: HttpRequest, pk: int) -> HttpResponse:
    """Show what a rollback would restore and what conflicts (GET, read from the hosts now), then roll back
    every guest the request changed, field by field (POST)."""
    cr = get_object_or_404(ChangeRequest.objects.select_related("profile_revision__profile"), pk=pk)
    if request.method == "GET":
        possible = cr.status in ChangeRequest.ROLLBACKABLE and cr.rolled_back_by_id is None
        guests = preview_rollback(cr) if possible else []
        return render(
            request,
            "hosts/change_rollback.html",
            {
                "cr": cr,
                "possible": possible,
                "guests": guests,
                "restores": sum(len(g.restore) for g in guests),
                "conflicts": sum(len(g.conflicts) for g in guests),
                "unanswered": [g for g in guests if g.error],
            },
        )
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
