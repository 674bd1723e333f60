"""API for pin profiles (immutable revisions) and plan previews of profile content for guests."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from hosts.api.pagination import BoundedLimitOffsetPagination
from hosts.api.permissions import CanDraftOrReadOnly, CanView
from hosts.models import ChangeRequest, Domain, PinProfile, PinProfileRevision
from hosts.planning.preview import preview_plan
from hosts.planning.profiles import create_profile, revise_profile
from hosts.planning.schema import ProfileError
from hosts.validation import messages_by_field


class RevisionSerializer(serializers.ModelSerializer[PinProfileRevision]):
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)

    class Meta:
        model = PinProfileRevision
        fields = ["id", "number", "content", "comment", "created_by", "created_at"]
        read_only_fields = fields


class ProfileSerializer(serializers.ModelSerializer[PinProfile]):
    """A profile with its revisions (newest first); writing ``content`` adds a revision."""

    content = serializers.JSONField(write_only=True, help_text="vcpupin, emulatorpin, iothreadpin, sched")
    comment = serializers.CharField(write_only=True, required=False, allow_blank=True, max_length=200)
    latest = serializers.SerializerMethodField()
    revisions = RevisionSerializer(many=True, read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, default=None)

    class Meta:
        model = PinProfile
        fields = ["id", "name", "description", "content", "comment", "latest", "revisions", "created_by", "created_at"]
        read_only_fields = ["id", "latest", "revisions", "created_by", "created_at"]

    def get_latest(self, obj: PinProfile) -> dict[str, Any] | None:
        revisions = list(obj.revisions.all())
        return RevisionSerializer(revisions[0]).data if revisions else None

    def _call(self, fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(**kwargs)
        except ProfileError as exc:
            raise serializers.ValidationError({"content": exc.errors}) from exc
        except DjangoValidationError as exc:
            raise serializers.ValidationError(messages_by_field(exc, unnamed="detail")) from exc

    def create(self, validated_data: dict[str, Any]) -> PinProfile:
        return self._call(
            create_profile,
            name=validated_data["name"],
            description=validated_data.get("description", ""),
            content=validated_data["content"],
            actor=self.context["request"].user,
        )

    def update(self, instance: PinProfile, validated_data: dict[str, Any]) -> PinProfile:
        if "name" in validated_data and validated_data["name"] != instance.name:
            raise serializers.ValidationError({"name": ["A profile's name cannot change; create a new profile."]})
        if "content" not in validated_data:
            raise serializers.ValidationError({"content": ["Editing a profile means giving its new content."]})
        self._call(
            revise_profile,
            profile_id=instance.pk,
            content=validated_data["content"],
            description=validated_data.get("description"),
            comment=validated_data.get("comment", ""),
            actor=self.context["request"].user,
        )
        return PinProfile.objects.prefetch_related(_revisions()).get(pk=instance.pk)


def _revisions() -> Prefetch:
    return Prefetch("revisions", queryset=PinProfileRevision.objects.select_related("created_by").order_by("-number"))


class PlanRequestSerializer(serializers.Serializer[Any]):
    """Plan some content (saved or not) for guests, without recording anything."""

    content = serializers.JSONField()
    domains = serializers.PrimaryKeyRelatedField(queryset=Domain.objects.select_related("host"), many=True)
    scope = serializers.ChoiceField(choices=ChangeRequest.Scope.choices, default="both")


class ProfileViewSet(viewsets.ModelViewSet[PinProfile]):
    """Pin profiles. Every role reads; operators create them and add revisions (PUT/PATCH with content)."""

    serializer_class = ProfileSerializer
    permission_classes = [CanDraftOrReadOnly]
    http_method_names = ["get", "post", "put", "patch", "head", "options"]
    filterset_fields = ["name"]
    pagination_class = BoundedLimitOffsetPagination

    def get_queryset(self) -> QuerySet[PinProfile]:
        return PinProfile.objects.select_related("created_by").prefetch_related(_revisions()).order_by("name")

    @extend_schema(request=PlanRequestSerializer, responses={200: dict})
    @action(detail=False, methods=["post"], url_path="plan", permission_classes=[CanView])
    def plan(self, request: Request) -> Response:
        """Validate profile content and plan it for guests: per guest the desired values, diff and issues."""
        data = PlanRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        domain_ids = [d.pk for d in data.validated_data["domains"]]
        try:
            preview = preview_plan(data.validated_data["content"], domain_ids, data.validated_data["scope"])
        except ProfileError as exc:
            return Response({"content": exc.errors}, status=status.HTTP_400_BAD_REQUEST)
        except DjangoValidationError as exc:  # a guest went away since the request was read
            return Response(messages_by_field(exc, unnamed="detail"), status=status.HTTP_400_BAD_REQUEST)
        return Response({"content": preview.spec.as_json(), "ok": preview.ok, "plans": preview.rows})
