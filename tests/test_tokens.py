"""API tokens (django-rest-knox): shown once, stored as a digest, expiring, revocable one by one or all at once."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone
from knox.models import AuthToken

from hosts.models import AuditEvent

pytestmark = pytest.mark.django_db


def _issue(username: str, password: str) -> dict[str, Any]:
    answer = Client().post("/api/auth/token/", {"username": username, "password": password})
    assert answer.status_code == 201, answer.content
    return dict(answer.json())


def _as(token: str) -> Client:
    return Client(HTTP_AUTHORIZATION=f"Token {token}")


def _refused(token: str) -> bool:
    """Whether the API turns the token away (403: session authentication comes first, so no 401 challenge)."""
    answer = _as(token).get("/api/audit-events/")
    return answer.status_code in (401, 403) and answer.json()["detail"] in (
        "Invalid token.",
        "User inactive or deleted.",
    )


def test_a_token_is_shown_once_stored_only_as_a_digest_and_opens_the_api(viewer: User) -> None:
    issued = _issue("vera", "vera-pass-123")
    secret = issued["token"]
    assert issued["username"] == "vera" and issued["roles"] == ["viewer"]
    row = AuthToken.objects.get(user=viewer)
    stored = [str(value) for value in AuthToken.objects.filter(user=viewer).values_list(flat=True)]
    assert secret not in " ".join(stored) and row.digest != secret and len(row.digest) == 128
    assert secret.startswith(row.token_key)
    assert _as(secret).get("/api/audit-events/").status_code == 200
    assert Client().get("/api/audit-events/").status_code in (401, 403)
    assert _refused(secret[:-1] + ("0" if secret[-1] != "0" else "1"))
    created = AuditEvent.objects.get(action=AuditEvent.Action.TOKEN_CREATE)
    assert created.actor == viewer and row.token_key[:8] in created.object_repr and secret not in str(created.after)
    viewer.refresh_from_db()
    assert viewer.last_login is not None


def test_a_token_expires_after_its_time_to_live(viewer: User, settings: Any) -> None:
    issued = _issue("vera", "vera-pass-123")
    expiry = AuthToken.objects.get(user=viewer).expiry
    assert expiry is not None and abs(expiry - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)

    settings.REST_KNOX = {**settings.REST_KNOX, "TOKEN_TTL": timedelta(seconds=1)}
    short = _issue("vera", "vera-pass-123")["token"]
    assert _as(short).get("/api/audit-events/").status_code == 200
    time.sleep(1.5)
    assert _refused(short)
    assert not AuthToken.objects.filter(token_key=short[:15]).exists()  # knox deletes it when it is used
    assert _as(issued["token"]).get("/api/audit-events/").status_code == 200


def test_delete_revokes_only_the_token_in_use(viewer: User) -> None:
    first, second = _issue("vera", "vera-pass-123")["token"], _issue("vera", "vera-pass-123")["token"]
    assert _as(first).delete("/api/auth/token/").status_code == 204
    assert _refused(first)
    assert _as(second).get("/api/audit-events/").status_code == 200
    revoked = AuditEvent.objects.get(action=AuditEvent.Action.TOKEN_REVOKE)
    assert revoked.actor == viewer and first[:8] in revoked.object_repr
    assert Client().delete("/api/auth/token/").status_code in (401, 403)


def test_logout_all_revokes_every_token_of_the_user_only(viewer: User, operator: User) -> None:
    mine = [_issue("vera", "vera-pass-123")["token"] for _ in range(3)]
    theirs = _issue("otto", "otto-pass-123")["token"]
    answer = _as(mine[0]).post("/api/auth/logout-all/")
    assert answer.status_code == 200 and answer.json() == {"revoked": 3}
    assert all(_refused(token) for token in mine)
    assert _as(theirs).get("/api/audit-events/").status_code == 200


def test_a_wrong_password_or_missing_field_gets_no_token(viewer: User) -> None:
    wrong = Client().post("/api/auth/token/", {"username": "vera", "password": "nope"})
    assert wrong.status_code == 400 and "non_field_errors" in wrong.json()
    missing = Client().post("/api/auth/token/", {"username": "vera"})
    assert missing.status_code == 400 and "password" in missing.json()
    assert not AuthToken.objects.exists()


def test_a_deactivated_users_token_stops_working(viewer: User) -> None:
    token = _issue("vera", "vera-pass-123")["token"]
    viewer.is_active = False
    viewer.save()
    assert _refused(token)
    assert Client().post("/api/auth/token/", {"username": "vera", "password": "vera-pass-123"}).status_code == 400
