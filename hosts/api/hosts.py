"""API for hosts: reads for every role; adding, editing (PUT/PATCH), removing (DELETE) a host for admins; a sync,
maintenance and resume, and the CPU partition as POST actions."""

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from hosts import tasks
from hosts.api.pagination import BoundedLimitOffsetPagination
from hosts.api.permissions import CanManageHosts, CanManageHostsOrReadOnly, CanSync
from hosts.filters import HostFilterSet
from hosts.host_lifecycle import end_maintenance, remove_host, start_maintenance, update_host
from hosts.inventory import create_host, set_host_partition
from hosts.models import Host, HostCPU, NumaCell
from hosts.queries import hosts_with_counts
from hosts.uri import validate_host_uri
from hosts.validation import messages_by_field


class HostCPUSerializer(serializers.ModelSerializer[HostCPU]):
    class Meta:
        model = HostCPU
        fields = ["cpu_id", "socket_id", "die_id", "core_id", "siblings", "online"]


class NumaCellSerializer(serializers.ModelSerializer[NumaCell]):
    cpus = HostCPUSerializer(many=True, read_only=True)

    class Meta:
        model = NumaCell
        fields = ["cell_id", "memory_kib", "cpus"]


class HostSerializer(serializers.ModelSerializer[Host]):
    """A host as listed; creating one validates its URI and goes through the service."""

    cpu_count = serializers.IntegerField(read_only=True)
    cell_count = serializers.IntegerField(read_only=True)
    domain_count = serializers.IntegerField(read_only=True)
    url = serializers.HyperlinkedIdentityField(view_name="api:host-detail")

    class Meta:
        model = Host
        fields = [
            "id",
            "url",
            "name",
            "uri",
            "transport",
            "status",
            "last_seen_at",
            "last_sync_at",
            "last_error",
            "hostname",
            "libvirt_version",
            "hypervisor_version",
            "cpu_model",
            "sync_round_trips",
            "sync_seconds",
            "housekeeping_cpus",
            "cpu_count",
            "cell_count",
            "domain_count",
            "maintenance_since",
            "maintenance_reason",
            "allow_unverified",
            "unverified_reason",
        ]
        read_only_fields = [f for f in fields if f not in ("name", "uri", "allow_unverified", "unverified_reason")]

    def _allow_unverified(self) -> bool:
        """The admin's override for this request: as sent, else the host's own (on an update), else off."""
        sent = self.initial_data.get("allow_unverified") if hasattr(self, "initial_data") else None
        if sent is not None:
            try:
                return bool(serializers.BooleanField().to_internal_value(sent))
            except serializers.ValidationError:
                return False  # the field's own validation reports the bad value
        return bool(getattr(self.instance, "allow_unverified", False))

    def validate_uri(self, value: str) -> str:
        try:
            return validate_host_uri(value, allow_unverified=self._allow_unverified()).uri
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc

    def create(self, validated_data: dict[str, Any]) -> Host:
        request = self.context["request"]
        try:
            return create_host(
                name=validated_data["name"],
                uri=validated_data["uri"],
                actor=request.user,
                allow_unverified=validated_data.get("allow_unverified", False),
                unverified_reason=validated_data.get("unverified_reason", ""),
            )
        except DjangoValidationError as exc:
            raise serializers.ValidationError(messages_by_field(exc, unnamed="uri")) from exc

    def update(self, instance: Host, validated_data: dict[str, Any]) -> Host:
        request = self.context["request"]
        # A PUT of what GET answered carries the other writable fields unchanged; a change to them is refused
        # rather than silently dropped.
        others = sorted(k for k, v in validated_data.items() if k not in ("name", "uri") and v != getattr(instance, k))
        if others:
            raise serializers.ValidationError({name: ["Only name and uri can be changed here."] for name in others})
        try:
            host, _changed = update_host(
                instance.pk,
                name=validated_data.get("name", instance.name),
                uri=validated_data.get("uri", instance.uri),
                actor=request.user,
            )
        except DjangoValidationError as exc:
            raise serializers.ValidationError(messages_by_field(exc, unnamed="uri")) from exc
        return host


class MaintenanceSerializer(serializers.Serializer[Any]):
    reason = serializers.CharField(max_length=300)


class HostDetailSerializer(HostSerializer):
    """A host with its CPU topology."""

    cells = NumaCellSerializer(many=True, read_only=True)

    class Meta(HostSerializer.Meta):
        fields = [*HostSerializer.Meta.fields, "cells"]


class PartitionSerializer(serializers.Serializer[Any]):
    housekeeping_cpus = serializers.CharField(allow_blank=True, max_length=200)


class HostViewSet(
    mixins.CreateModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet[Host]
):
    """Libvirt hosts. Any role reads; admins add, edit (name and URI), put in maintenance and back, and remove;
    operators and up ask for a sync."""

    permission_classes = [CanManageHostsOrReadOnly]
    filterset_class = HostFilterSet
    pagination_class = BoundedLimitOffsetPagination
    ordering_fields = ["name", "status", "last_sync_at"]

    def get_queryset(self) -> QuerySet[Host]:
        queryset = hosts_with_counts()
        if self.action == "retrieve":
            cells = NumaCell.objects.prefetch_related(Prefetch("cpus", queryset=HostCPU.objects.order_by("cpu_id")))
            queryset = queryset.prefetch_related(Prefetch("cells", queryset=cells))
        return queryset

    def get_serializer_class(self) -> Any:
        return HostDetailSerializer if self.action == "retrieve" else HostSerializer

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        host = serializer.save()
        tasks.sync_host.delay_on_commit(host.pk)
        out = HostSerializer(hosts_with_counts().get(pk=host.pk), context={"request": request})
        return Response(out.data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Change the host's name and URI (PUT: both; PATCH: either); a new URI is synced at once."""
        host = self.get_object()
        serializer = self.get_serializer(host, data=request.data, partial=kwargs.get("partial", False))
        serializer.is_valid(raise_exception=True)
        uri_was = host.uri
        host = serializer.save()
        if host.uri != uri_was and not host.in_maintenance:
            tasks.sync_host.delay_on_commit(host.pk)
        return Response(HostSerializer(hosts_with_counts().get(pk=host.pk), context={"request": request}).data)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Remove the host: its guests leave the inventory, its change requests and audit events stay."""
        host = self.get_object()
        try:
            remove_host(host.pk, actor=request.user)
        except DjangoValidationError as exc:
            return Response(messages_by_field(exc, unnamed="detail"), status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=MaintenanceSerializer, responses={200: HostSerializer})
    @action(detail=True, methods=["post"], permission_classes=[CanManageHosts])
    def maintenance(self, request: Request, pk: str | None = None) -> Response:
        """Put the host in maintenance (``reason`` required): not synced, charted or changed until resumed."""
        host = self.get_object()
        data = MaintenanceSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            start_maintenance(host.pk, reason=data.validated_data["reason"], actor=request.user)
        except DjangoValidationError as exc:
            return Response(messages_by_field(exc, unnamed="detail"), status=status.HTTP_409_CONFLICT)
        return Response(HostSerializer(hosts_with_counts().get(pk=host.pk), context={"request": request}).data)

    @extend_schema(request=None, responses={200: HostSerializer})
    @action(detail=True, methods=["post"], permission_classes=[CanManageHosts])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        """Put the host back in service; a sync is queued at once."""
        host = self.get_object()
        try:
            end_maintenance(host.pk, actor=request.user)
        except DjangoValidationError as exc:
            return Response(messages_by_field(exc, unnamed="detail"), status=status.HTTP_409_CONFLICT)
        tasks.sync_host.delay_on_commit(host.pk)
        return Response(HostSerializer(hosts_with_counts().get(pk=host.pk), context={"request": request}).data)

    @action(detail=True, methods=["post"], permission_classes=[CanSync])
    def sync(self, request: Request, pk: str | None = None) -> Response:
        """Queue an inventory sync of this host now (not of a host in maintenance: 409)."""
        host = self.get_object()
        if host.in_maintenance:
            return Response(
                {"detail": f"{host.name} is in maintenance ({host.maintenance_reason}): it is not synced."},
                status=status.HTTP_409_CONFLICT,
            )
        result = tasks.sync_host.delay(host.pk)
        return Response({"host": host.pk, "task_id": result.id, "queued": True}, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=PartitionSerializer, responses={200: PartitionSerializer})
    @action(detail=True, methods=["post"], permission_classes=[CanManageHosts])
    def partition(self, request: Request, pk: str | None = None) -> Response:
        """Set the host's housekeeping CPUs; the rest of its online CPUs form the guest pool."""
        host = self.get_object()
        data = PartitionSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            host = set_host_partition(
                host.pk, housekeeping_cpus=data.validated_data["housekeeping_cpus"], actor=request.user
            )
        except DjangoValidationError as exc:
            return Response(messages_by_field(exc, unnamed="detail"), status=status.HTTP_400_BAD_REQUEST)
        return Response({"housekeeping_cpus": host.housekeeping_cpus})
