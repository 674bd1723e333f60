"""Profile pages: the profile list, a profile's revisions, and the editor that creates or revises one.

Saving goes through hosts/planning/profiles.py, which validates the content; its errors are shown next to
the editor field that holds the offending part. The editor previews plans live through the API.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count, OuterRef, Prefetch, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from hosts.filters import ProfileFilterSet
from hosts.forms.common import add_service_errors
from hosts.forms.profiles import ProfileForm
from hosts.models import ChangeRequest, Domain, Host, PinProfile, PinProfileRevision
from hosts.planning.profiles import create_profile, revise_profile
from hosts.planning.schema import ProfileError, validate_profile
from hosts.tables import ProfileTable
from hosts.units import describe_sched
from hosts.validation import messages_by_field
from hosts.views.common import draft_required, filtered, pretty, tabled, viewer_required


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
    filterset = ProfileFilterSet(request.GET or None, queryset=profiles_qs)
    rows, status = filtered(request, filterset)
    is_filtered = any(v for k, v in request.GET.items() if k not in ("sort", "page"))
    table = ProfileTable(rows)
    table.empty_text = "No profile matches this filter." if is_filtered else "No profile yet."
    status = tabled(request, table, status)
    return render(
        request,
        "hosts/profile_list.html",
        {"filter": filterset, "table": table, "page": table.page, "filtered": is_filtered},
        status=status,
    )


@viewer_required
def profile_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Show a profile's revisions, newest first, and the change requests that use it."""
    revisions = PinProfileRevision.objects.select_related("created_by").order_by("-number")
    profile = get_object_or_404(
        PinProfile.objects.select_related("created_by").prefetch_related(Prefetch("revisions", queryset=revisions)),
        pk=pk,
    )
    revision_rows = [
        {"revision": r, "json": pretty(r.content), "sched_words": describe_sched((r.content or {}).get("sched"))}
        for r in profile.revisions.all()
    ]
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


def _profile_editor(request: HttpRequest, profile: PinProfile | None) -> HttpResponse:
    """Show the editor for a new profile or a profile's next revision; on POST save it, or show why not."""
    latest = profile.latest_revision if profile else None
    initial: dict[str, Any] = {}
    if profile is not None:
        initial = ProfileForm.initial_from_content(latest.content if latest else {})
        initial["description"] = profile.description
    form = ProfileForm(request.POST or None, initial=initial, editing=profile is not None)
    if request.method == "POST":
        saved = _save_profile(request, form, profile)
        if saved is not None:
            return saved
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


def _save_profile(request: HttpRequest, form: ProfileForm, profile: PinProfile | None) -> HttpResponse | None:
    """Save the posted profile and return the redirect to it, or None with the errors added to ``form``."""
    valid = form.is_valid()
    content = form.content()
    if not valid:
        if content is not None:
            # Also run the validator on what could be read, so every problem shows in one go.
            try:
                validate_profile(content)
            except ProfileError as exc:
                add_service_errors(form, exc.errors.items(), form.field_for)
        return None
    if form.errors:  # reading the content found a problem
        return None
    try:
        return _store_profile(request, form, profile, content)
    except ProfileError as exc:
        add_service_errors(form, exc.errors.items(), form.field_for)
    except ValidationError as exc:
        add_service_errors(form, messages_by_field(exc).items())
    return None


def _store_profile(request: HttpRequest, form: ProfileForm, profile: PinProfile | None, content: Any) -> HttpResponse:
    """Create the profile, or add a revision to it, through the service; return the redirect to it."""
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


def _planner_context() -> dict[str, Any]:
    """Return the hosts and guests the profile editor can plan against, for its live validation script."""
    hosts = list(Host.objects.order_by("name").values("id", "name", "status", "housekeeping_cpus"))
    guests = list(Domain.objects.order_by("host__name", "name").values("id", "name", "host_id", "state", "vcpus_max"))
    return {
        "hosts": hosts,
        "guests": guests,
        "scopes": ChangeRequest.Scope.choices,
        "plan_url": reverse("api:profile-plan"),
        "host_url": reverse("api:host-detail", args=[0]),
    }


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
