"""API for guests: read-only, with their tuning live and in the persistent config."""

from typing import Any

from django.conf import settings
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from hosts.api.pagination import BoundedLimitOffsetPagination
from hosts.filters import DomainFilterSet
from hosts.live.interference import score as isolation_score
from hosts.models import Domain


class DomainSerializer(serializers.ModelSerializer[Domain]):
    """A guest with its tuning live and in the persistent config, and its vCPUs' real affinity."""

    host_name = serializers.CharField(source="host.name", read_only=True)
    tuning = serializers.SerializerMethodField()
    url = serializers.HyperlinkedIdentityField(view_name="api:domain-detail")

    class Meta:
        model = Domain
        fields = [
            "id",
            "url",
            "uuid",
            "name",
            "host",
            "host_name",
            "state",
            "persistent",
            "is_stale",
            "vcpus_current",
            "vcpus_max",
            "placement",
            "iothread_ids",
            "tuning",
            "affinity",
            "vcpu_states",
            "synced_at",
        ]
        read_only_fields = fields

    def get_tuning(self, obj: Domain) -> dict[str, Any]:
        return {"live": obj.tuning_live, "config": obj.tuning_config}


class DomainViewSet(viewsets.ReadOnlyModelViewSet[Domain]):
    """Guests with their pinning and caps, live and in the persistent config."""

    serializer_class = DomainSerializer
    filterset_class = DomainFilterSet
    pagination_class = BoundedLimitOffsetPagination
    ordering_fields = ["name", "state", "vcpus_current", "host__name"]
    queryset = Domain.objects.select_related("host").order_by("host__name", "name")

    @action(detail=True, methods=["get"])
    def isolation(self, request: Request, pk: str | None = None) -> Response:
        """The guest's isolation score: the share of the last hour its dedicated CPUs were free of foreign load.

        ``score`` is null when none of its CPUs was dedicated (held alone) while sampled in that hour.
        """
        domain = self.get_object()
        found = isolation_score(domain.pk)
        return Response(
            {
                "id": domain.pk,
                "score": found.score,
                "sampled_seconds": found.sampled_seconds,
                "clean_seconds": found.clean_seconds,
                "window_seconds": found.window_seconds,
                "threshold_percent": float(settings.ISOWEB_FOREIGN_LOAD_THRESHOLD),
            }
        )
