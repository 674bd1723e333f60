"""Forms of the change request pages: proposing a change, and the comment of an approval or a rejection."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db import models
from django.utils import timezone

from hosts.models import ChangeRequest, Domain, Host, PinProfileRevision


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


# The guest picker's bulk buttons (action=...): every guest of the host chosen in its Host filter, or every
# running guest its filters (host, and the Find text in a guest's or host's name) match.
PICK_HOST, PICK_RUNNING = "pick-host", "pick-running"


def bulk_pick(action: str, *, host_name: str, find: str) -> tuple[list[int], str]:
    """Return the ids a bulk pick adds to the chosen guests and a sentence saying what they are.

    Raises ``forms.ValidationError`` naming the picker's Host field when the action needs a host and none (or an
    unknown one) is chosen.
    """
    guests = Domain.objects.all()
    if host_name:
        if not Host.objects.filter(name=host_name).exists():
            raise forms.ValidationError(f"Host: there is no host named {host_name!r}.", code="invalid")
        guests = guests.filter(host__name=host_name)
    elif action == PICK_HOST:
        raise forms.ValidationError("Host: choose a host in the picker first, then add all of its guests.")
    what = f"of {host_name}" if host_name else "on every host"
    if action == PICK_RUNNING:
        guests = guests.filter(state=Domain.State.RUNNING)
        what = f"running {what}"
        if find:
            guests = guests.filter(models.Q(name__icontains=find) | models.Q(host__name__icontains=find))
            what += f" matching {find!r}"
    ids = list(guests.order_by("host__name", "name").values_list("pk", flat=True))
    return ids, f"{len(ids)} guest{'s' if len(ids) != 1 else ''} {what}"


class DecisionForm(forms.Form):
    """Ask an approver for an optional comment on approving or rejecting a request."""

    comment = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))
