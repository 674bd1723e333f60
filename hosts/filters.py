"""Filtersets shared by the pages and the REST API.

Every filter that takes a row id accepts only 1..2**63-1 (the range of a primary key): anything else is a form
error naming the field (400 from the API, an error on the page) before any query runs, never an overflow in the
database driver (a 500).
"""

from typing import Any

import django_filters
from django import forms
from django.db import models

from hosts.models import AuditEvent, ChangeRequest, Domain, Host

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


class BoundedFilterSet(django_filters.FilterSet):
    """A filterset whose generated foreign-key filters bound their ids like ``IdChoiceFilter``."""

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


class HostFilterSet(BoundedFilterSet):
    """Filter hosts by name (substring), status and transport."""

    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Host
        fields = ["name", "status", "transport"]


class DomainFilterSet(BoundedFilterSet):
    """Filter guests by host, name (substring) and state."""

    name = django_filters.CharFilter(lookup_expr="icontains")
    host = IdChoiceFilter(queryset=Host.objects.all())
    state = django_filters.ChoiceFilter(choices=Domain.State.choices)

    class Meta:
        model = Domain
        fields = ["host", "name", "state", "is_stale"]


class ChangeRequestFilterSet(BoundedFilterSet):
    """Filter change requests by status, scope, requester and decider."""

    status = django_filters.ChoiceFilter(choices=ChangeRequest.Status.choices, empty_label="any status")

    class Meta:
        model = ChangeRequest
        fields = ["status", "scope", "requested_by", "decided_by"]


class AuditEventFilterSet(BoundedFilterSet):
    """Filter the audit log by action, actor (user name), object and time (``since`` included, ``before`` not).

    Times take a date (``2026-11-26``, midnight) or an ISO date-time.
    """

    action = django_filters.ChoiceFilter(choices=AuditEvent.Action.choices, empty_label="any action")
    actor = django_filters.CharFilter(field_name="actor__username", label="Actor (user name)")
    host = IdChoiceFilter(queryset=Host.objects.order_by("name"), empty_label="any host")
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
