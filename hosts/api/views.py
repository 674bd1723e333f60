"""REST API views: reads for every role, host creation for admins, sync as a POST action."""

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from hosts import tasks
from hosts.api.permissions import CanManageHosts, CanManageHostsOrReadOnly, CanSync
from hosts.api.profiles import PartitionSerializer, django_errors
from hosts.api.serializers import DomainSerializer, HostDetailSerializer, HostSerializer
from hosts.filters import DomainFilterSet, HostFilterSet
from hosts.inventory import set_host_partition
from hosts.models import Domain, Host, HostCPU, NumaCell
from hosts.queries import hosts_with_counts


class HostViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet[Host]):
    """Libvirt hosts. Any role reads; admins add; operators and up ask for a sync."""

    permission_classes = [CanManageHostsOrReadOnly]
    filterset_class = HostFilterSet
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

    @action(detail=True, methods=["post"], permission_classes=[CanSync])
    def sync(self, request: Request, pk: str | None = None) -> Response:
        """Queue an inventory sync of this host now."""
        host = self.get_object()
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
            return Response(django_errors(exc), status=status.HTTP_400_BAD_REQUEST)
        return Response({"housekeeping_cpus": host.housekeeping_cpus})


class DomainViewSet(viewsets.ReadOnlyModelViewSet[Domain]):
    """Guests with their pinning and caps, live and in the persistent config."""

    serializer_class = DomainSerializer
    filterset_class = DomainFilterSet
    ordering_fields = ["name", "state", "vcpus_current", "host__name"]
    queryset = Domain.objects.select_related("host").order_by("host__name", "name")


class TokenView(ObtainAuthToken):
    """Exchange a username and password for an API token."""
