"""Filtersets shared by the pages and the REST API.

Every filter that takes a row id accepts only 1..2**63-1 (the range of a primary key): anything else is a form
error naming the field (400 from the API, an error on the page) before any query runs, never an overflow in the
database driver (a 500).
"""

from typing import Any

import django_filters
from django import forms
from django.contrib.auth.models import User
from django.db import models
from django_filters.conf import settings as filter_settings

from hosts.models import AuditEvent, ChangeRequest, Domain, Host, PinProfile

MIN_ID = 1
MAX_ID = 2**63 - 1


def valid_id(value: Any) -> int | None:
    """Return ``value`` as a row id if it is a whole number in 1..2**63-1, else ``None``."""
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    number = int(text)
    return number if MIN_ID <= number <= MAX_ID else None


class IdChoiceField(django_filters.fields.ModelChoiceField):
    """A choice of one row by its id, refusing an id outside 1..2**63-1 without asking the database."""

    def to_python(self, value: Any) -> Any:
        if value in self.empty_values or (self.null_label is not None and value == self.null_value):
            return super().to_python(value)
        if self.to_field_name in (None, "pk", "id") and valid_id(value) is None:
            raise forms.ValidationError(self.error_messages["invalid_choice"], code="invalid_choice")
        return super().to_python(value)


class IdChoiceFilter(django_filters.ModelChoiceFilter):
    """A ``ModelChoiceFilter`` whose ids are bounded to 1..2**63-1."""

    field_class = IdChoiceField


class IdFilter(django_filters.NumberFilter):
    """A row id typed in (not chosen from a list): a whole number in 1..2**63-1."""

    field_class = forms.IntegerField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", MIN_ID)
        kwargs.setdefault("max_value", MAX_ID)
        super().__init__(*args, **kwargs)


ANY = "any"
DASHES = filter_settings.EMPTY_CHOICE_LABEL  # django-filter's "---------"


class StrictBooleanField(forms.Field):
    """Yes or no, or nothing for "any": anything else is an error naming the value, not silently "any".

    Accepts ``true``/``false`` (the API's and the select's words) and ``1``/``0``, ``yes``/``no`` in any case.
    """

    TRUE = frozenset({"true", "1", "yes"})
    FALSE = frozenset({"false", "0", "no"})

    def to_python(self, value: Any) -> bool | None:
        if value in self.empty_values:
            return None
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in self.TRUE:
            return True
        if text in self.FALSE:
            return False
        raise forms.ValidationError(
            "%(value)s is neither true nor false (leave it empty for any).",
            code="invalid",
            params={"value": repr(value)},
        )


class StrictBooleanFilter(django_filters.BooleanFilter):
    """A yes/no filter drawn as a select with plain words; see ``StrictBooleanField``."""

    field_class = StrictBooleanField

    def __init__(self, *args: Any, yes: str = "yes", no: str = "no", any_label: str = ANY, **kwargs: Any) -> None:
        kwargs.setdefault("widget", forms.Select(choices=[("", any_label), ("true", yes), ("false", no)]))
        super().__init__(*args, **kwargs)


class BoundedFilterSet(django_filters.FilterSet):
    """A filterset whose generated foreign-key filters bound their ids like ``IdChoiceFilter``, and whose choice
    filters offer "any ..." instead of a row of dashes for "no filter".
    """

    FILTER_DEFAULTS = {
        **django_filters.filterset.FILTER_FOR_DBFIELD_DEFAULTS,
        models.ForeignKey: {
            **django_filters.filterset.FILTER_FOR_DBFIELD_DEFAULTS[models.ForeignKey],
            "filter_class": IdChoiceFilter,
        },
        models.OneToOneField: {
            **django_filters.filterset.FILTER_FOR_DBFIELD_DEFAULTS[models.OneToOneField],
            "filter_class": IdChoiceFilter,
        },
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, filter_ in self.filters.items():
            # ModelChoiceFilter is a ChoiceFilter too; django-filter puts its dashes into ``extra`` itself.
            if isinstance(filter_, django_filters.ChoiceFilter) and filter_.extra.get("empty_label", DASHES) == DASHES:
                label = str(filter_.label or name.replace("_", " ")).lower()
                filter_.extra["empty_label"] = f"{ANY} {label}"


class HostFilterSet(BoundedFilterSet):
    """Filter hosts by name (substring), status and transport."""

    name = django_filters.CharFilter(lookup_expr="icontains", label="Name contains")
    status = django_filters.ChoiceFilter(choices=Host.Status.choices, empty_label="any status")
    transport = django_filters.ChoiceFilter(choices=Host.Transport.choices, empty_label="any transport")

    class Meta:
        model = Host
        fields = ["name", "status", "transport"]


class DomainFilterSet(BoundedFilterSet):
    """Filter guests by host, name (substring) and state."""

    name = django_filters.CharFilter(lookup_expr="icontains", label="Name contains")
    host = IdChoiceFilter(queryset=Host.objects.order_by("name"), empty_label="any host")
    state = django_filters.ChoiceFilter(choices=Domain.State.choices, empty_label="any state")
    is_stale = StrictBooleanFilter(label="Freshness", yes="stale", no="current")

    class Meta:
        model = Domain
        fields = ["host", "name", "state", "is_stale"]


class ChangeRequestFilterSet(BoundedFilterSet):
    """Filter change requests by status, scope, requester and decider."""

    status = django_filters.ChoiceFilter(choices=ChangeRequest.Status.choices, empty_label="any status")
    scope = django_filters.ChoiceFilter(choices=ChangeRequest.Scope.choices, empty_label="any scope")
    requested_by = IdChoiceFilter(queryset=User.objects.order_by("username"), empty_label="anyone")
    decided_by = IdChoiceFilter(queryset=User.objects.order_by("username"), empty_label="anyone")

    class Meta:
        model = ChangeRequest
        fields = ["status", "scope", "requested_by", "decided_by"]


class AuditEventFilterSet(BoundedFilterSet):
    """Filter the audit log by action, actor (user name), object and time (``since`` included, ``before`` not).

    Times take a date (``2026-11-26``, midnight) or an ISO date-time.
    """

    action = django_filters.ChoiceFilter(choices=AuditEvent.Action.choices, empty_label="any action")
    actor = django_filters.CharFilter(field_name="actor__username", label="Actor (user name)")
    host = IdChoiceFilter(queryset=Host.all_objects.order_by("name"), empty_label="any host")  # removed ones too
    domain = IdChoiceFilter(
        queryset=Domain.objects.select_related("host").order_by("name"), label="Guest", empty_label="any guest"
    )
    change_request = IdFilter(label="Change request #")
    since = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", label="Since", widget=forms.DateInput(attrs={"type": "date"})
    )
    before = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt", label="Before", widget=forms.DateInput(attrs={"type": "date"})
    )

    class Meta:
        model = AuditEvent
        fields = ["action", "actor", "host", "domain", "change_request", "profile", "since", "before"]


class ProfileFilterSet(BoundedFilterSet):
    """Filter pin profiles by name (substring)."""

    name = django_filters.CharFilter(lookup_expr="icontains", label="Name contains")

    class Meta:
        model = PinProfile
        fields = ["name"]
