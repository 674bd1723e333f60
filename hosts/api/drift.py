"""API for drift: the list (``GET /api/drift/``), remediation, and a host's automatic re-assert switch."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.exceptions import ValidationError as ApiValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hosts.api.pagination import BoundedLimitOffsetPagination
from hosts.api.permissions import CanManageHosts, CanView
from hosts.changes.requests import PlanError
from hosts.drift.filters import DriftFilterSet
from hosts.drift.remediate import propose_remediation, set_auto_reassert
from hosts.filters import valid_id
from hosts.models import Drift, Host
from hosts.roles import can_draft


class DriftSerializer(serializers.ModelSerializer[Drift]):
    """One drifted field of one guest: expected and observed values, how and when found, how resolved."""

    host_name = serializers.CharField(source="host.name", read_only=True)
    domain_name = serializers.CharField(source="domain.name", read_only=True)
    open = serializers.BooleanField(source="is_open", read_only=True)

    class Meta:
        model = Drift
        fields = [
            "id",
            "host",
            "host_name",
            "domain",
            "domain_name",
            "scope",
            "field",
            "expected",
            "observed",
            "detected_by",
            "detected_at",
            "open",
            "resolved_at",
            "resolution",
            "remediation",
        ]
        read_only_fields = fields


class RemediateSerializer(serializers.Serializer[Any]):
    """Which drifts to put right: ids, or every open drift of a host or a guest."""

    drifts = serializers.ListField(child=serializers.IntegerField(min_value=1, max_value=2**63 - 1), required=False)
    host = serializers.IntegerField(min_value=1, max_value=2**63 - 1, required=False)
    domain = serializers.IntegerField(min_value=1, max_value=2**63 - 1, required=False)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=2000)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("drifts") and "host" not in attrs and "domain" not in attrs:
            raise ApiValidationError({"drifts": ["Name the drifts, a host or a guest to remediate."]})
        return attrs


def _errors(exc: ValidationError) -> Any:
    return exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}


class DriftViewSet(viewsets.ReadOnlyModelViewSet[Drift]):
    """Drifts, newest first: ``?open=true|false``, ``?host=``, ``?domain=``, ``?scope=``, ``?detected_by=``."""

    serializer_class = DriftSerializer
    filterset_class = DriftFilterSet
    pagination_class = BoundedLimitOffsetPagination
    permission_classes = [CanView]
    queryset = Drift.objects.select_related("host", "domain").order_by("-detected_at", "-id")

    @action(detail=False, methods=["post"], serializer_class=RemediateSerializer)
    def remediate(self, request: Request) -> Response:
        """Propose change requests that put the approved values back (operators; approved by someone else)."""
        if not can_draft(request.user):
            raise PermissionDenied("Only operators may propose change requests.")
        body = RemediateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        try:
            made = propose_remediation(
                drift_ids=data.get("drifts") or None,
                host_id=data.get("host"),
                domain_id=data.get("domain"),
                reason=data.get("reason", ""),
                actor=request.user,
            )
        except PlanError as exc:
            return Response({"detail": exc.messages, "plans": exc.plans}, status=status.HTTP_400_BAD_REQUEST)
        except ValidationError as exc:
            return Response(_errors(exc), status=status.HTTP_400_BAD_REQUEST)
        except DjangoPermissionDenied as exc:
            raise PermissionDenied(str(exc)) from exc
        return Response(
            {"change_requests": [{"id": cr.pk, "scope": cr.scope, "status": cr.status} for cr in made]},
            status=status.HTTP_201_CREATED,
        )


class AutoReassertSerializer(serializers.Serializer[Any]):
    enabled = serializers.BooleanField()


class HostAutoReassertView(APIView):
    """``POST /api/hosts/{id}/auto-reassert/`` with ``enabled``: admins switch a host's automatic re-assert."""

    permission_classes = [CanManageHosts]
    serializer_class = AutoReassertSerializer

    def post(self, request: Request, pk: int) -> Response:
        if valid_id(pk) is None:
            return Response({"detail": "No such host."}, status=status.HTTP_404_NOT_FOUND)
        host = get_object_or_404(Host, pk=pk)
        body = AutoReassertSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            host = set_auto_reassert(host.pk, enabled=body.validated_data["enabled"], actor=request.user)
        except DjangoPermissionDenied as exc:
            raise PermissionDenied(str(exc)) from exc
        return Response({"id": host.pk, "auto_reassert": host.auto_reassert})
