"""Filtersets shared by the pages and the REST API."""

import django_filters
from django import forms

from hosts.models import AuditEvent, ChangeRequest, Domain, Host


class HostFilterSet(django_filters.FilterSet):
    """Filter hosts by name (substring), status and transport."""

    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Host
        fields = ["name", "status", "transport"]


class DomainFilterSet(django_filters.FilterSet):
    """Filter guests by host, name (substring) and state."""

    name = django_filters.CharFilter(lookup_expr="icontains")
    host = django_filters.ModelChoiceFilter(queryset=Host.objects.all())
    state = django_filters.ChoiceFilter(choices=Domain.State.choices)

    class Meta:
        model = Domain
        fields = ["host", "name", "state", "is_stale"]


class ChangeRequestFilterSet(django_filters.FilterSet):
    """Filter change requests by status, scope, requester and decider."""

    status = django_filters.ChoiceFilter(choices=ChangeRequest.Status.choices, empty_label="any status")

    class Meta:
        model = ChangeRequest
        fields = ["status", "scope", "requested_by", "decided_by"]


class AuditEventFilterSet(django_filters.FilterSet):
    """Filter the audit log by action, actor (user name), object and time (``since`` included, ``before`` not).

    Times take a date (``2026-11-26``, midnight) or an ISO date-time.
    """

    action = django_filters.ChoiceFilter(choices=AuditEvent.Action.choices, empty_label="any action")
    actor = django_filters.CharFilter(field_name="actor__username", label="Actor (user name)")
    host = django_filters.ModelChoiceFilter(queryset=Host.objects.order_by("name"), empty_label="any host")
    change_request = django_filters.NumberFilter(label="Change request #")
    since = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="gte", label="Since", widget=forms.DateInput(attrs={"type": "date"})
    )
    before = django_filters.IsoDateTimeFilter(
        field_name="created_at", lookup_expr="lt", label="Before", widget=forms.DateInput(attrs={"type": "date"})
    )

    class Meta:
        model = AuditEvent
        fields = ["action", "actor", "host", "domain", "change_request", "profile", "since", "before"]
