"""Forms of the change request pages: proposing a change, and the comment of an approval or a rejection."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils import timezone

from hosts.models import ChangeRequest, Domain, PinProfileRevision


def _revision_label(revision: PinProfileRevision) -> str:
    return f"{revision.profile.name} · revision {revision.number}" + (
        f" ({revision.comment})" if revision.comment else ""
    )


class RevisionChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]
    def label_from_instance(self, obj: Any) -> str:
        return _revision_label(obj)


class GuestChoiceField(forms.ModelMultipleChoiceField):  # type: ignore[type-arg]
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.name} on {obj.host.name}"


class ChangeRequestForm(forms.Form):
    """Propose applying one profile revision to guests on any hosts."""

    profile_revision = RevisionChoiceField(
        label="Profile revision",
        queryset=PinProfileRevision.objects.select_related("profile").order_by("profile__name", "-number"),
        empty_label="Pick a profile revision",
    )
    domains = GuestChoiceField(
        label="Guests",
        queryset=Domain.objects.select_related("host").order_by("host__name", "name"),
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Pick at least one guest."},
    )
    scope = forms.ChoiceField(choices=ChangeRequest.Scope.choices, initial=ChangeRequest.Scope.BOTH)
    apply_at = forms.DateTimeField(
        label="Apply at",
        required=False,
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why this change is needed; the approver reads it.",
        error_messages={"required": "Say why this change is needed."},
    )
    previewed = forms.CharField(required=False, widget=forms.HiddenInput)
    # The guest picker's filters: not part of the request, posted only so a failed preview or submit shows the
    # picker as it was left (the host chosen, the search typed) instead of every guest of every host.
    pick_host = forms.CharField(required=False, max_length=200)
    pick_find = forms.CharField(required=False, max_length=200)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Entered and shown in the user's own time zone (hosts/timezones.py activates it for the request).
        zone = timezone.get_current_timezone_name()
        self.fields["apply_at"].label = f"Apply at ({zone})"
        self.fields["apply_at"].help_text = f"In {zone}, your time zone. Empty: apply as soon as it is approved."

    def clean_apply_at(self) -> Any:
        value = self.cleaned_data.get("apply_at")
        if value is not None and value < timezone.now():
            raise forms.ValidationError("This time has passed; leave it empty to apply as soon as it is approved.")
        return value

    def fingerprint(self) -> str:
        """Identify what a preview showed: the revision, the guests and the scope."""
        data = self.cleaned_data
        ids = ",".join(str(pk) for pk in sorted(d.pk for d in data["domains"]))
        return f"{data['profile_revision'].pk}:{ids}:{data['scope']}"


class DecisionForm(forms.Form):
    """Ask an approver for an optional comment on approving or rejecting a request."""

    comment = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
