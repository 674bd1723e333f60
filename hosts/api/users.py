"""Users API (admins only): list and create users, change their roles, deactivate, reset a password, tokens.

Changes are POST actions that call one service of hosts/accounts.py each, as the change requests' decisions
are, never a PATCH of ``is_active`` or of the groups: every step is audited and the last-admin rule holds.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet
from drf_spectacular.utils import extend_schema, inline_serializer
from knox.models import AuthToken
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from hosts import accounts
from hosts.roles import ROLES, can_manage_users
from hosts.validation import messages_by_field

KEY_PATTERN = r"[0-9a-f]{15}"  # a knox token_key: the first 15 hex characters of the secret


class CanManageUsers(BasePermission):
    message = "Only admins may see and manage users."

    def has_permission(self, request: Request, view: Any) -> bool:
        return can_manage_users(request.user)


class TokenSerializer(serializers.ModelSerializer[AuthToken]):
    """An API token as an admin sees it: its key (the secret's first 15 characters), never the secret."""

    key = serializers.CharField(source="token_key")
    expired = serializers.SerializerMethodField()

    class Meta:
        model = AuthToken
        fields = ["key", "created", "expiry", "expired"]

    def get_expired(self, token: AuthToken) -> bool:
        return accounts.token_is_expired(token)


class UserSerializer(serializers.ModelSerializer[User]):
    roles = serializers.SerializerMethodField()
    token_count = serializers.IntegerField(read_only=True)
    local_password = serializers.SerializerMethodField(help_text="False for directory (LDAP) users.")

    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "first_name",
            "last_name",
            "is_active",
            "roles",
            "last_login",
            "date_joined",
            "token_count",
            "local_password",
        ]

    def get_roles(self, user: User) -> list[str]:
        return [group.name for group in user.groups.all() if group.name in ROLES]

    def get_local_password(self, user: User) -> bool:
        return user.has_usable_password()


class UserCreateSerializer(serializers.Serializer[Any]):
    username = serializers.CharField(max_length=150)
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    password = serializers.CharField(max_length=4096, trim_whitespace=False, write_only=True)
    roles = serializers.ListField(child=serializers.CharField(max_length=40), allow_empty=True, default=list)


class RolesSerializer(serializers.Serializer[Any]):
    roles = serializers.ListField(child=serializers.CharField(max_length=40), allow_empty=True)


class PasswordSerializer(serializers.Serializer[Any]):
    password = serializers.CharField(max_length=4096, trim_whitespace=False, write_only=True)


def _refused(exc: ValidationError) -> Response:
    return Response(messages_by_field(exc, unnamed="detail"), status=status.HTTP_400_BAD_REQUEST)


class UserViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[User]):
    """Users with their roles, last login and how many API tokens they hold."""

    serializer_class = UserSerializer
    permission_classes = [CanManageUsers]
    ordering_fields = ["username", "last_login", "date_joined"]
    filterset_fields = ["is_active"]

    def get_queryset(self) -> QuerySet[User]:
        return (
            User.objects.annotate(token_count=Count("auth_token_set", distinct=True))
            .prefetch_related("groups")
            .order_by("username")
        )

    def _answer(self, user: User, code: int = status.HTTP_200_OK) -> Response:
        return Response(UserSerializer(self.get_queryset().get(pk=user.pk)).data, status=code)

    @extend_schema(request=UserCreateSerializer, responses={201: UserSerializer})
    def create(self, request: Request) -> Response:
        given = UserCreateSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        try:
            user = accounts.create_user(**given.validated_data, actor=request.user)
        except ValidationError as exc:
            return _refused(exc)
        return self._answer(user, status.HTTP_201_CREATED)

    @extend_schema(request=RolesSerializer, responses={200: UserSerializer})
    @action(detail=True, methods=["post"])
    def roles(self, request: Request, pk: str) -> Response:
        user = self.get_object()
        given = RolesSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        try:
            accounts.set_roles(user, given.validated_data["roles"], actor=request.user)
        except ValidationError as exc:
            return _refused(exc)
        return self._answer(user)

    @extend_schema(request=None, responses={200: UserSerializer})
    @action(detail=True, methods=["post"])
    def deactivate(self, request: Request, pk: str) -> Response:
        user = self.get_object()
        try:
            accounts.deactivate_user(user, actor=request.user)
        except ValidationError as exc:
            return _refused(exc)
        return self._answer(user)

    @extend_schema(request=None, responses={200: UserSerializer})
    @action(detail=True, methods=["post"])
    def reactivate(self, request: Request, pk: str) -> Response:
        user = self.get_object()
        accounts.reactivate_user(user, actor=request.user)
        return self._answer(user)

    @extend_schema(request=PasswordSerializer, responses={200: UserSerializer})
    @action(detail=True, methods=["post"])
    def password(self, request: Request, pk: str) -> Response:
        user = self.get_object()
        given = PasswordSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        try:
            accounts.reset_password(user, given.validated_data["password"], actor=request.user)
        except ValidationError as exc:
            return _refused(exc)
        return self._answer(user)

    @extend_schema(methods=["GET"], responses={200: TokenSerializer(many=True)})
    @extend_schema(
        methods=["DELETE"],
        operation_id="users_tokens_revoke_all",
        request=None,
        responses={200: inline_serializer("RevokedUserTokens", {"revoked": serializers.IntegerField()})},
    )
    @action(detail=True, methods=["get", "delete"])
    def tokens(self, request: Request, pk: str) -> Response:
        """List the user's API tokens (GET) or revoke them all (DELETE)."""
        user = self.get_object()
        if request.method == "DELETE":
            return Response({"revoked": accounts.revoke_tokens(user, actor=request.user)})
        return Response(TokenSerializer(accounts.tokens_of(user), many=True).data)

    @extend_schema(operation_id="users_token_revoke", request=None, responses={204: None})
    @action(detail=True, methods=["delete"], url_path=rf"tokens/(?P<key>{KEY_PATTERN})")
    def token(self, request: Request, pk: str, key: str) -> Response:
        """Revoke one of the user's API tokens, named by its key."""
        user = self.get_object()
        if not accounts.revoke_tokens(user, actor=request.user, key=key):
            raise NotFound(f"{user.username} has no API token with key {key}.")
        return Response(status=status.HTTP_204_NO_CONTENT)
