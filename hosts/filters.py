"""Filtersets shared by the pages and the REST API."""

import django_filters

from hosts.models import Domain, Host


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
