"""API tokens: a script trades a user name and password for a token, and gives it back when done.

``POST /api/auth/token/`` answers the token once (knox stores only its digest) with its expiry; failed
attempts count towards the same django-axes lockout as the login page, and a locked-out pair is answered
429 with ``Retry-After`` (hosts/views/lockout.py). ``DELETE /api/auth/token/`` revokes the token the request
carries; ``POST /api/auth/logout-all/`` revokes every token of the user.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate, user_logged_in
from drf_spectacular.utils import extend_schema, inline_serializer
from knox.auth import TokenAuthentication
from knox.models import AuthToken
from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from hosts.accounts import issue_token, revoke_token, revoke_tokens, roles_held


class CredentialsSerializer(serializers.Serializer[Any]):
    """A user name and password (read, never echoed)."""

    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, write_only=True)


TOKEN_ANSWER = inline_serializer(
    "IssuedToken",
    {
        "token": serializers.CharField(help_text="Send as `Authorization: Token <token>`; shown only this once."),
        "expiry": serializers.DateTimeField(allow_null=True),
        "username": serializers.CharField(),
        "roles": serializers.ListField(child=serializers.CharField()),
    },
)


class TokenView(APIView):
    """Exchange a user name and password for an API token (POST), or revoke the token in use (DELETE)."""

    authentication_classes = [TokenAuthentication]
    serializer_class = CredentialsSerializer

    def get_permissions(self) -> list[BasePermission]:
        return [AllowAny()] if self.request.method == "POST" else [IsAuthenticated()]

    @extend_schema(request=CredentialsSerializer, responses={201: TOKEN_ANSWER})
    def post(self, request: Request) -> Response:
        credentials = CredentialsSerializer(data=request.data)
        credentials.is_valid(raise_exception=True)
        # The plain HttpRequest: django-axes reads the client address from it and flags a lockout on it.
        user = authenticate(request._request, **credentials.validated_data)
        if user is None or not user.is_active:
            return Response(
                {"non_field_errors": ["Unable to log in with the user name and password given."]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        issued = issue_token(user, actor=user)
        user_logged_in.send(sender=type(user), request=request._request, user=user)  # last_login, axes reset
        return Response(
            {
                "token": issued.secret,
                "expiry": issued.token.expiry,
                "username": user.get_username(),
                "roles": roles_held(user),
            },
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request) -> Response:
        token = request.auth
        assert isinstance(token, AuthToken)  # the only authentication this view accepts
        revoke_token(token, actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogoutAllView(APIView):
    """Revoke every API token of the requesting user (a token or a logged-in browser session)."""

    authentication_classes = [SessionAuthentication, TokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=None, responses={200: inline_serializer("RevokedTokens", {"revoked": serializers.IntegerField()})}
    )
    def post(self, request: Request) -> Response:
        return Response({"revoked": revoke_tokens(request.user, actor=request.user)})  # type: ignore[arg-type]
