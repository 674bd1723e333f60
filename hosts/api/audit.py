"""API for the audit log: read-only, filtered like the audit page."""

from rest_framework import serializers, viewsets

from hosts.api.pagination import BoundedLimitOffsetPagination
from hosts.filters import AuditEventFilterSet
from hosts.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer[AuditEvent]):
    actor = serializers.CharField(source="actor.username", read_only=True, default=None)

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "actor",
            "action",
            "host",
            "domain",
            "change_request",
            "profile",
            "object_repr",
            "before",
            "after",
            "message",
        ]
        read_only_fields = fields


class AuditEventViewSet(viewsets.ReadOnlyModelViewSet[AuditEvent]):
    """The append-only audit log."""

    serializer_class = AuditEventSerializer
    filterset_class = AuditEventFilterSet
    pagination_class = BoundedLimitOffsetPagination
    queryset = AuditEvent.objects.select_related("actor").order_by("-created_at", "-id")
