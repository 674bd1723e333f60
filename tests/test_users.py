"""Users and roles in the product: admins create users, change roles, deactivate, reset passwords, revoke tokens.

Every step is audited; an admin cannot deactivate themselves and the last active admin keeps the role. Logins
go through the real login form (django-axes needs the request, as in production), not Client.login.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.test import Client
from knox.models import AuthToken

from hosts.accounts import issue_token, set_roles
from hosts.models import AuditEvent
from hosts.roles import ADMIN, APPROVER, OPERATOR, VIEWER

pytestmark = pytest.mark.django_db
Action = AuditEvent.Action
STRONG = "correct-horse-battery-42"


def _form_login(username: str, password: str) -> Client:
    """Log in through the login form; the client is logged in only if the form accepted the password."""
    client = Client()
    client.post("/accounts/login/", {"username": username, "password": password})
    return client


def _events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_only_admins_see_the_users_pages_api_and_menu_entry(
    login: Callable[[User], Client], viewer: User, operator: User, approver: User, admin_user: User
) -> None:
    for user in (viewer, operator, approver):
        client = login(user)
        assert client.get("/users/").status_code == 403
        assert client.get(f"/users/{admin_user.pk}/").status_code == 403
        assert client.get("/api/users/").status_code == 403
        assert client.post("/api/users/", {"username": "x", "password": STRONG}).status_code == 403
        assert 'href="/users/"' not in client.get("/audit/").content.decode()
    admin = login(admin_user)
    page = admin.get("/users/").content.decode()
    assert 'href="/users/"' in page
    for name, role in (("vera", VIEWER), ("otto", OPERATOR), ("anna", APPROVER), ("adam", ADMIN)):
        assert name in page and role in page
    listed = {row["username"]: row for row in admin.get("/api/users/").json()["results"]}
    assert listed["otto"]["roles"] == [OPERATOR] and listed["adam"]["roles"] == [ADMIN]
    assert {"last_login", "is_active", "token_count"} <= set(listed["vera"])
    assert Client().get("/users/").status_code == 302  # anonymous: to the login page


def test_admin_creates_a_user_who_logs_in_with_the_roles_given(
    login: Callable[[User], Client], admin_user: User
) -> None:
    admin = login(admin_user)
    answer = admin.post(
        "/users/new/",
        {
            "username": "nina",
            "email": "nina@example.com",
            "roles": [OPERATOR, APPROVER],
            "password": STRONG,
            "password_again": STRONG,
        },
    )
    nina = User.objects.get(username="nina")
    assert answer.status_code == 302 and answer["Location"] == f"/users/{nina.pk}/"
    assert sorted(nina.groups.values_list("name", flat=True)) == [APPROVER, OPERATOR]
    created = _events(Action.USER_CREATE)
    assert len(created) == 1 and created[0].actor == admin_user and created[0].after["roles"] == [OPERATOR, APPROVER]
    assert STRONG not in str(created[0].after)

    client = _form_login("nina", STRONG)
    assert client.get("/changes/new/").status_code == 200  # operator page
    nina.refresh_from_db()
    assert nina.last_login is not None
    listed = {row["username"]: row for row in admin.get("/api/users/").json()["results"]}
    assert listed["nina"]["last_login"] is not None

    made = admin.post(
        "/api/users/", {"username": "noah", "password": STRONG, "roles": [VIEWER]}, content_type="application/json"
    )
    assert made.status_code == 201 and made.json()["roles"] == [VIEWER]


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"username": "pia", "password": "123", "password_again": "123"}, "password", "too short"),
        ({"username": "adam", "password": STRONG, "password_again": STRONG}, "username", "already exists"),
        ({"username": "ADAM", "password": STRONG, "password_again": STRONG}, "username", "already exists"),
        ({"username": "pia", "password": STRONG, "password_again": STRONG + "x"}, "password_again", "differ"),
        ({"username": "bad name!", "password": STRONG, "password_again": STRONG}, "username", "valid username"),
    ],
)
def test_a_refused_new_user_names_the_field_and_creates_nothing(
    login: Callable[[User], Client], admin_user: User, fields: dict[str, str], field: str, words: str
) -> None:
    before = User.objects.count()
    answer = login(admin_user).post("/users/new/", {**fields, "roles": [VIEWER]})
    assert answer.status_code == 400
    assert words in " ".join(answer.context["form"].errors[field])
    assert User.objects.count() == before and not _events(Action.USER_CREATE)


def test_an_unknown_role_is_refused_by_the_api_naming_the_field(
    login: Callable[[User], Client], admin_user: User, viewer: User
) -> None:
    answer = login(admin_user).post(
        f"/api/users/{viewer.pk}/roles/", {"roles": ["root"]}, content_type="application/json"
    )
    assert answer.status_code == 400 and "root" in answer.json()["roles"][0]
    assert list(viewer.groups.values_list("name", flat=True)) == [VIEWER] and not _events(Action.USER_UPDATE)


def test_changing_roles_takes_effect_at_once_and_is_audited(
    login: Callable[[User], Client], admin_user: User, viewer: User
) -> None:
    vera = login(viewer)
    assert vera.get("/changes/new/").status_code == 403
    answer = login(admin_user).post(f"/users/{viewer.pk}/roles/", {"roles": [VIEWER, OPERATOR]})
    assert answer.status_code == 302
    assert vera.get("/changes/new/").status_code == 200
    update = _events(Action.USER_UPDATE)
    assert (
        len(update) == 1
        and update[0].before == {"roles": [VIEWER]}
        and update[0].after == {"roles": [VIEWER, OPERATOR]}
    )
    assert update[0].actor == admin_user and update[0].object_repr == "user vera"


def test_the_last_admin_keeps_the_role_and_cannot_deactivate_themselves(
    login: Callable[[User], Client], admin_user: User
) -> None:
    admin = login(admin_user)
    demoted = admin.post(f"/users/{admin_user.pk}/roles/", {"roles": [VIEWER]})
    assert demoted.status_code == 400 and "last active admin" in demoted.content.decode()
    assert list(admin_user.groups.values_list("name", flat=True)) == [ADMIN]
    own = admin.post(f"/users/{admin_user.pk}/active/", {"active": "0"})
    assert own.status_code == 400 and "cannot deactivate your own account" in own.content.decode()
    api = admin.post(f"/api/users/{admin_user.pk}/deactivate/")
    assert api.status_code == 400 and "own account" in api.json()["is_active"][0]
    admin_user.refresh_from_db()
    assert admin_user.is_active and not _events(Action.USER_UPDATE) and not _events(Action.USER_DEACTIVATE)

    # With a second admin, the first may step down; the second, now the last, may not be demoted by the first.
    second = User.objects.create_user("ada", password=STRONG)
    admin.post(f"/users/{second.pk}/roles/", {"roles": [ADMIN]})
    assert admin.post(f"/users/{admin_user.pk}/roles/", {"roles": [VIEWER, ADMIN]}).status_code == 302
    ada = _form_login("ada", STRONG)
    assert ada.post(f"/users/{admin_user.pk}/roles/", {"roles": [VIEWER]}).status_code == 302
    refused = ada.post(f"/api/users/{second.pk}/roles/", {"roles": []}, content_type="application/json")
    assert refused.status_code == 400 and "ada is the last active admin" in refused.json()["roles"][0]


def test_a_deactivated_user_is_logged_out_refused_at_login_and_loses_tokens_until_reactivated(
    login: Callable[[User], Client], admin_user: User, operator: User
) -> None:
    otto = _form_login("otto", "otto-pass-123")
    assert otto.get("/changes/new/").status_code == 200
    token = issue_token(operator, actor=operator).secret
    assert Client(HTTP_AUTHORIZATION=f"Token {token}").get("/api/audit-events/").status_code == 200

    admin = login(admin_user)
    assert admin.post(f"/users/{operator.pk}/active/", {"active": "0"}).status_code == 302
    assert otto.get("/changes/new/").status_code == 302  # session ended: back to the login page
    assert "_auth_user_id" not in _form_login("otto", "otto-pass-123").session
    assert Client(HTTP_AUTHORIZATION=f"Token {token}").get("/api/audit-events/").status_code in (401, 403)
    assert not AuthToken.objects.filter(user=operator).exists()
    deactivated = _events(Action.USER_DEACTIVATE)
    assert len(deactivated) == 1 and deactivated[0].after["is_active"] is False
    assert len(deactivated[0].after["tokens_revoked"]) == 1

    assert admin.post(f"/api/users/{operator.pk}/reactivate/").json()["is_active"] is True
    assert _form_login("otto", "otto-pass-123").get("/changes/new/").status_code == 200
    assert _events(Action.USER_UPDATE)[-1].after == {"is_active": True}


def test_a_password_reset_lets_only_the_new_password_in_and_ends_sessions_and_tokens(
    login: Callable[[User], Client], admin_user: User, viewer: User
) -> None:
    vera = _form_login("vera", "vera-pass-123")
    token = issue_token(viewer, actor=viewer).secret
    admin = login(admin_user)
    weak = admin.post(f"/users/{viewer.pk}/password/", {"password": "vera", "password_again": "vera"})
    assert weak.status_code == 400 and weak.context["password_form"].errors["password"]
    assert (
        admin.post(f"/users/{viewer.pk}/password/", {"password": STRONG, "password_again": STRONG}).status_code == 302
    )
    assert vera.get("/guests/").status_code == 302  # the old session ended with the old password
    assert "_auth_user_id" not in _form_login("vera", "vera-pass-123").session
    assert _form_login("vera", STRONG).get("/guests/").status_code == 200
    assert Client(HTTP_AUTHORIZATION=f"Token {token}").get("/api/audit-events/").status_code in (401, 403)
    reset = _events(Action.USER_PASSWORD)
    assert len(reset) == 1 and reset[0].actor == admin_user and STRONG not in str(reset[0].after)


def test_an_admin_lists_and_revokes_a_users_tokens(
    login: Callable[[User], Client], admin_user: User, viewer: User
) -> None:
    tokens = [issue_token(viewer, actor=viewer) for _ in range(3)]
    admin = login(admin_user)
    page = admin.get(f"/users/{viewer.pk}/").content.decode()
    assert all(issued.token.token_key in page for issued in tokens)
    assert not any(issued.secret in page for issued in tokens)
    listed = admin.get(f"/api/users/{viewer.pk}/tokens/").json()
    assert sorted(row["key"] for row in listed) == sorted(issued.token.token_key for issued in tokens)

    first, second, third = tokens
    assert admin.post(f"/users/{viewer.pk}/tokens/{first.token.token_key}/revoke/").status_code == 302
    assert admin.delete(f"/api/users/{viewer.pk}/tokens/{second.token.token_key}/").status_code == 204
    assert admin.delete(f"/api/users/{viewer.pk}/tokens/{second.token.token_key}/").status_code == 404

    def works(secret: str) -> bool:
        return Client(HTTP_AUTHORIZATION=f"Token {secret}").get("/api/audit-events/").status_code == 200

    assert [works(issued.secret) for issued in tokens] == [False, False, True]
    revoked = _events(Action.TOKEN_REVOKE)
    assert [event.actor for event in revoked] == [admin_user, admin_user]
    assert first.token.token_key[:8] in revoked[0].object_repr and "vera" in revoked[0].object_repr
    assert admin.delete(f"/api/users/{viewer.pk}/tokens/").json() == {"revoked": 1} and not works(third.secret)


@pytest.mark.parametrize("path", ["/users/99999999999999999999/", "/api/users/99999999999999999999/", "/api/users/x/"])
def test_an_unknown_user_id_answers_404(login: Callable[[User], Client], admin_user: User, path: str) -> None:
    assert login(admin_user).get(path).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_two_admins_demoting_each_other_at_once_leave_one_admin(admin_user: User) -> None:
    """The first demotion holds its transaction open; the second waits for it, then sees it and is refused."""
    second = User.objects.create_user("ada", password=STRONG)
    second.groups.add(*User.objects.get(pk=admin_user.pk).groups.all())
    first_done, release = threading.Event(), threading.Event()
    outcomes: dict[str, str] = {}

    def demote(name: str, target: User, actor: User, hold: bool) -> None:
        try:
            with transaction.atomic():
                set_roles(User.objects.get(pk=target.pk), [VIEWER], actor=actor)
                if hold:
                    first_done.set()
                    assert release.wait(30)
            outcomes[name] = "done"
        except ValidationError as exc:
            outcomes[name] = " ".join(exc.messages)
        finally:
            connection.close()

    holder = threading.Thread(target=demote, args=("first", second, admin_user, True))
    holder.start()
    assert first_done.wait(30)
    other = threading.Thread(target=demote, args=("second", admin_user, second, False))
    other.start()
    other.join(1.5)
    assert other.is_alive(), "the second demotion did not wait for the first"
    release.set()
    holder.join(30)
    other.join(30)
    assert outcomes["first"] == "done" and "adam is the last active admin" in outcomes["second"]
    admins = User.objects.filter(groups__name=ADMIN, is_active=True).values_list("username", flat=True)
    assert list(admins) == ["adam"]
