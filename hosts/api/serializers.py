"""REST API representations of hosts, their topology and guests."""

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from hosts.inventory import create_host
from hosts.models import Domain, Host, HostCPU, NumaCell
from hosts.uri import validate_host_uri


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
        ]
        read_only_fields = [f for f in fields if f not in ("name", "uri")]

    def validate_uri(self, value: str) -> str:
        try:
            return validate_host_uri(value).uri
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc

    def create(self, validated_data: dict[str, Any]) -> Host:
        request = self.context["request"]
        try:
            return create_host(name=validated_data["name"], uri=validated_data["uri"], actor=request.user)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages) from exc


class HostDetailSerializer(HostSerializer):
    """A host with its CPU topology."""

    cells = NumaCellSerializer(many=True, read_only=True)

    class Meta(HostSerializer.Meta):
        fields = [*HostSerializer.Meta.fields, "cells"]


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
