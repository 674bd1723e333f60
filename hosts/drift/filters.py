"""The drift filterset shared by the drift page and ``GET /api/drift/``: open or resolved, host, guest, scope."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet

from hosts.filters import BoundedFilterSet, IdChoiceFilter
from hosts.models import Domain, Drift, Host


class DriftFilterSet(BoundedFilterSet):
    """Filter drifts by whether they are open, by host, guest, scope and how they were detected."""

    open = django_filters.ChoiceFilter(
        method="filter_open", label="Open", choices=[("true", "open"), ("false", "resolved")], empty_label="any"
    )
    host = IdChoiceFilter(queryset=Host.objects.all())
    domain = IdChoiceFilter(queryset=Domain.objects.all(), label="Guest")

    class Meta:
        model = Drift
        fields = ["open", "host", "domain", "scope", "detected_by"]

    def filter_open(self, queryset: QuerySet[Drift], _name: str, value: Any) -> QuerySet[Drift]:
        if value in (None, ""):
            return queryset
        return queryset.filter(resolved_at__isnull=value == "true")
