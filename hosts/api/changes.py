"""API for change requests: operators create them; approve, reject and roll back are POST actions."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from kombu.exceptions import KombuError
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from hosts.api.pagination import BoundedLimitOffsetPagination
from hosts.api.permissions import CanApprove, CanDraftOrReadOnly
from hosts.changes.requests import (
    PlanError,
    approve_change_request,
    create_change_request,
    reject_change_request,
    request_rollback,
)
from hosts.changes.rollback import apply_after, rollback_result
from hosts.changes.rollback_preview import preview_rollback
from hosts.filters import ChangeRequestFilterSet
from hosts.models import ChangeRequest, ChangeTarget, Domain, PinProfile, PinProfileRevision
from hosts.validation import messages_by_field
from hosts.vocabulary import public_snapshot

log = logging.getLogger(__name__)


class TargetSerializer(serializers.ModelSerializer[ChangeTarget]):
    """One guest's plan and result."""

    host_name = serializers.CharField(source="host.name", read_only=True)
    before = serializers.SerializerMethodField()
    after = serializers.SerializerMethodField(help_text="What the apply read back after writing.")
    rollback = serializers.SerializerMethodField(
        help_text="Once rolled back: when it finished, and per field (scope, field, wrote, now, restore_to, "
        "action: restore | conflict | already, why) what was restored and verified or left alone."
    )

    class Meta:
        model = ChangeTarget
        fields = [
            "id",
            "domain",
            "domain_name",
            "domain_uuid",
            "host",
            "host_name",
            "status",
            "desired",
            "diff",
            "warnings",
            "before",
            "after",
            "rollback",
            "error",
            "restore_error",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_before(self, obj: ChangeTarget) -> dict[str, Any] | None:
        return public_snapshot(obj.before)

    def get_after(self, obj: ChangeTarget) -> dict[str, Any] | None:
        return apply_after(obj.after)

    def get_rollback(self, obj: ChangeTarget) -> dict[str, Any] | None:
        return rollback_result(obj.after)


class ChangeRequestSerializer(serializers.ModelSerializer[ChangeRequest]):
    """A change request. Create with ``profile`` (latest revision) or ``profile_revision``, ``domains``,
    ``scope``, ``reason`` and optionally ``apply_at``."""

    profile = serializers.PrimaryKeyRelatedField(
        queryset=PinProfile.objects.all(),
        write_only=True,
        required=False,
        help_text="Use the profile's latest revision.",
    )
    profile_revision = serializers.PrimaryKeyRelatedField(
        queryset=PinProfileRevision.objects.select_related("profile"), required=False
    )
    profile_name = serializers.CharField(source="profile_revision.profile.name", read_only=True)
    revision_number = serializers.IntegerField(source="profile_revision.number", read_only=True)
    domains = serializers.PrimaryKeyRelatedField(queryset=Domain.objects.all(), many=True, write_only=True)
    requested_by = serializers.CharField(source="requested_by.username", read_only=True)
    decided_by = serializers.CharField(source="decided_by.username", read_only=True, default=None)
    rolled_back_by = serializers.CharField(source="rolled_back_by.username", read_only=True, default=None)
    results = TargetSerializer(source="targets", many=True, read_only=True)
    rolling_back = serializers.BooleanField(read_only=True, help_text="A rollback is in progress.")

    class Meta:
        model = ChangeRequest
        fields = [
            "id",
            "profile",
            "profile_revision",
            "profile_name",
            "revision_number",
            "domains",
            "scope",
            "reason",
            "apply_at",
            "status",
            "status_message",
            "requested_by",
            "created_at",
            "decided_by",
            "decided_at",
            "decision_comment",
            "started_at",
            "finished_at",
            "rolled_back_by",
            "rolled_back_at",
            "rolling_back",
            "results",
        ]
        read_only_fields = [
            "status",
            "status_message",
            "created_at",
            "decided_at",
            "decision_comment",
            "started_at",
            "finished_at",
            "rolled_back_at",
        ]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("profile_revision"):
            profile = attrs.get("profile")
            if profile is None:
                raise serializers.ValidationError({"profile": ["Name the profile (or profile_revision) to apply."]})
            attrs["profile_revision"] = profile.revisions.order_by("-number").first()
        return attrs

    def create(self, validated_data: dict[str, Any]) -> ChangeRequest:
        try:
            return create_change_request(
                revision=validated_data["profile_revision"],
                domain_ids=[d.pk for d in validated_data["domains"]],
                scope=validated_data.get("scope", ChangeRequest.Scope.BOTH),
                reason=validated_data.get("reason", ""),
                apply_at=validated_data.get("apply_at"),
                actor=self.context["request"].user,
            )
        except PlanError:
            raise  # answered by the view with the plan as it is (a ValidationError would stringify it)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(messages_by_field(exc, unnamed="detail")) from exc


class RollbackPreviewSerializer(serializers.Serializer[Any]):
    """A rollback preview (documentation only): per guest, what would be restored and what conflicts."""

    change_request = serializers.IntegerField()
    can_roll_back = serializers.BooleanField()
    guests = serializers.ListField(child=serializers.DictField())


class DecisionSerializer(serializers.Serializer[Any]):
    comment = serializers.CharField(required=False, allow_blank=True, default="")


class ChangeRequestViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet[ChangeRequest]):
    """Change requests: operators create them, approvers (never the requester) approve, reject, roll back."""

    serializer_class = ChangeRequestSerializer
    permission_classes = [CanDraftOrReadOnly]
    filterset_class = ChangeRequestFilterSet
    pagination_class = BoundedLimitOffsetPagination
    ordering_fields = ["created_at", "status"]

    def get_queryset(self) -> QuerySet[ChangeRequest]:
        return (
            ChangeRequest.objects.select_related(
                "profile_revision__profile", "requested_by", "decided_by", "rolled_back_by"
            )
            .prefetch_related("targets__host", "jobs")
            .order_by("-created_at", "-id")
        )

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return super().create(request, *args, **kwargs)
        except PlanError as exc:
            return Response({"detail": exc.messages, "plan": exc.plans}, status=status.HTTP_400_BAD_REQUEST)

    def _act(self, request: Request, fn: Any, **kwargs: Any) -> Response:
        cr = self.get_object()
        try:
            fn(cr.pk, actor=request.user, **kwargs)
        except DjangoPermissionDenied as exc:
            raise PermissionDenied(str(exc)) from exc
        except DjangoValidationError as exc:
            return Response(messages_by_field(exc, unnamed="detail"), status=status.HTTP_409_CONFLICT)
        except (KombuError, OSError) as exc:
            # The decision is recorded (its transaction committed); only queueing the work failed. Beat finds
            # approved requests and unclaimed rollback jobs in the database once the broker is back.
            log.warning("CR-%s: recorded, but the task queue is unreachable: %s", cr.pk, exc)
            body = self.get_serializer(self.get_queryset().get(pk=cr.pk)).data
            warning = "The task queue (Redis) is unreachable; the work starts once it is back."
            return Response({**body, "warning": warning}, headers={"Warning": f'199 isoweb "{warning}"'})
        return Response(self.get_serializer(self.get_queryset().get(pk=cr.pk)).data)

    @extend_schema(request=DecisionSerializer, responses={200: ChangeRequestSerializer})
    @action(detail=True, methods=["post"], permission_classes=[CanApprove])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        """Approve a pending request made by someone else; it is applied at once or at its apply time."""
        data = DecisionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return self._act(request, approve_change_request, comment=data.validated_data["comment"])

    @extend_schema(request=DecisionSerializer, responses={200: ChangeRequestSerializer})
    @action(detail=True, methods=["post"], permission_classes=[CanApprove])
    def reject(self, request: Request, pk: str | None = None) -> Response:
        """Reject a pending request made by someone else."""
        data = DecisionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return self._act(request, reject_change_request, comment=data.validated_data["comment"])

    @extend_schema(request=None, responses={200: RollbackPreviewSerializer})
    @action(detail=True, methods=["get"], url_path="rollback-preview", permission_classes=[CanApprove])
    def rollback_preview(self, request: Request, pk: str | None = None) -> Response:
        """What a rollback would do now, per guest, read from the hosts: fields restored (value now -> value
        restored) and conflicts (changed since: left alone, with why). Read-only; a host that does not answer
        within its deadline is reported as such (``answered: false``)."""
        cr = self.get_object()
        guests = preview_rollback(cr)
        return Response(
            {
                "change_request": cr.pk,
                "can_roll_back": cr.status in ChangeRequest.ROLLBACKABLE and not cr.rolled_back_by_id,
                "guests": [guest.as_json() for guest in guests],
            }
        )

    @extend_schema(request=None, responses={202: ChangeRequestSerializer})
    @action(detail=True, methods=["post"], permission_classes=[CanApprove])
    def rollback(self, request: Request, pk: str | None = None) -> Response:
        """Roll back every guest the request changed, field by field: a field that still holds what the request
        wrote is put back and verified; one changed since is a conflict, left alone and listed in the result
        (see rollback-preview)."""
        response = self._act(request, request_rollback)
        if response.status_code == status.HTTP_200_OK:
            response.status_code = status.HTTP_202_ACCEPTED
        return response
