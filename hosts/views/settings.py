"""The user's own settings page: the time zone every page shows times in."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from hosts.models.users import UserSettings, known_time_zones
from hosts.timezones import browser_zone, set_time_zone, user_zone
from hosts.validation import messages_by_field


class TimeZoneForm(forms.Form):
    """Pick a time zone by its IANA name."""

    time_zone = forms.ChoiceField(label="Time zone", choices=())

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["time_zone"].choices = [(name, name) for name in sorted(known_time_zones())]  # type: ignore[attr-defined]


@require_http_methods(["GET", "POST"])
@login_required
def user_settings(request: HttpRequest) -> HttpResponse:
    """Show and change the user's time zone (any logged-in user: it is their own setting)."""
    zone, source = user_zone(request)
    form = TimeZoneForm(request.POST or None, initial={"time_zone": zone})
    if request.method == "POST":
        if request.POST.get("use_browser"):
            chosen = browser_zone(request)
            if chosen is None:
                form.add_error(None, "Your browser's time zone is not known yet; pick one from the list.")
        elif form.is_valid():
            chosen = form.cleaned_data["time_zone"]
        else:
            chosen = None
        if chosen is not None:
            try:
                source_now = (
                    UserSettings.Source.BROWSER if request.POST.get("use_browser") else UserSettings.Source.CHOSEN
                )
                set_time_zone(int(request.user.pk or 0), chosen, source=source_now)
            except ValidationError as exc:
                for field, errors in messages_by_field(exc).items():
                    for error in errors:
                        form.add_error("time_zone" if field == "time_zone" else None, error)
            else:
                messages.success(request, f"Times are now shown in {chosen}.")
                return redirect("hosts:user-settings")
    return render(
        request,
        "hosts/user_settings.html",
        {
            "form": form,
            "zone": zone,
            "source": source,
            "browser_zone": browser_zone(request),
            "now": timezone.now(),
        },
        status=400 if form.errors else 200,
    )
