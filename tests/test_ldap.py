"""LDAP login against a real slapd the test starts (hosts/harness/slapd.py), through a real Daphne.

The server gets ISOWEB_LDAP_* from its environment, as in production: directory users log in with their
directory password, their roles follow their groups at every login, a wrong password is refused, local users
still log in, and a directory user deactivated in isoweb stays out.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from hosts.accounts import deactivate_user
from hosts.harness.processes import port_open
from hosts.harness.slapd import Directory, Person, start_directory
from hosts.models import AuditEvent
from hosts.roles import ADMIN, APPROVER, OPERATOR, VIEWER
from tests.auth_server import HttpClient, auth_server

pytestmark = pytest.mark.django_db(transaction=True)

# slapd (and the hung-directory listener) take the first free port of these ten.
LDAP_PORT = int(os.environ.get("ISOWEB_TEST_LDAP_PORT", "16850"))
PORTS = range(LDAP_PORT, LDAP_PORT + 10)
SERVICE = Person("isoweb", "service-secret-1", "isoweb", "service")
PEOPLE = [
    Person("lena", "lena-ldap-pw-1", "Lena", "Lind", groups=("ops", "approvers")),
    Person("lars", "lars-ldap-pw-1", "Lars", "Lund", groups=("admins", "viewers")),
    Person("lotta", "lotta-ldap-pw-1", "Lotta", "Lang"),
]
GROUPS = ["ops", "approvers", "admins", "viewers", "unmapped"]


@pytest.fixture
def directory(tmp_path: Path) -> Iterator[Directory]:
    port = next(port for port in PORTS if not port_open(port))
    running = start_directory(tmp_path / "slapd", port, people=PEOPLE, groups=GROUPS, service=SERVICE)
    try:
        yield running
    finally:
        running.stop()


def _ldap_env(directory: Directory) -> dict[str, str]:
    role_groups = {VIEWER: "viewers", OPERATOR: "ops", APPROVER: "approvers", ADMIN: "admins"}
    return {
        "ISOWEB_LDAP_URI": directory.uri,
        "ISOWEB_LDAP_BIND_DN": directory.user_dn(SERVICE.uid),
        "ISOWEB_LDAP_BIND_PASSWORD": SERVICE.password,
        "ISOWEB_LDAP_USER_SEARCH_BASE": directory.people_dn(),
        "ISOWEB_LDAP_GROUP_SEARCH_BASE": directory.groups_dn(),
        "ISOWEB_LDAP_ROLE_GROUPS": ";".join(f"{role}={directory.group_dn(cn)}" for role, cn in role_groups.items()),
    }


def _roles(username: str) -> list[str]:
    user = User.objects.get(username=username)
    return sorted(user.groups.values_list("name", flat=True))


def test_directory_users_log_in_with_roles_from_their_groups_and_wrong_passwords_are_refused(
    directory: Directory, viewer: User
) -> None:
    with auth_server("ldap-login", **_ldap_env(directory)) as base:
        lena = HttpClient(base)
        assert lena.login("lena", "lena-ldap-pw-1").status == 302 and lena.logged_in()
        assert lena.request("GET", "/changes/new/").status == 200  # operator, from the ops group
        user = User.objects.get(username="lena")
        assert _roles("lena") == [APPROVER, OPERATOR]
        assert (
            not user.has_usable_password() and user.email == "lena@isoweb.test" and user.get_full_name() == "Lena Lind"
        )
        created = AuditEvent.objects.get(action=AuditEvent.Action.USER_CREATE, object_repr="user lena")
        assert created.actor is None and created.after["roles"] == [OPERATOR, APPROVER]

        token = lena.request("POST", "/api/auth/token/", body={"username": "lars", "password": "lars-ldap-pw-1"})
        assert token.status == 201 and token.json()["roles"] == [VIEWER, ADMIN]

        lotta = HttpClient(base)
        assert lotta.login("lotta", "lotta-ldap-pw-1").status == 302
        assert lotta.request("GET", "/guests/").status == 403  # in the directory, in no mapped group: no role
        assert _roles("lotta") == []

        for username, password in (("lena", "wrong-pw"), ("lena", "lars-ldap-pw-1"), ("nobody", "lena-ldap-pw-1")):
            stranger = HttpClient(base)
            assert stranger.login(username, password).status == 200 and not stranger.logged_in()
        assert User.objects.filter(username="nobody").count() == 0

        local = HttpClient(base)  # a local user still logs in with the local password
        assert local.login("vera", "vera-pass-123").status == 302 and local.logged_in()


def test_a_user_removed_from_a_group_loses_the_role_at_the_next_login(directory: Directory) -> None:
    with auth_server("ldap-groups", **_ldap_env(directory)) as base:
        assert HttpClient(base).login("lena", "lena-ldap-pw-1").status == 302
        assert _roles("lena") == [APPROVER, OPERATOR]

        directory.remove_member("ops", "lena")
        assert _roles("lena") == [APPROVER, OPERATOR]  # nothing changes before she logs in again
        again = HttpClient(base)
        assert again.login("lena", "lena-ldap-pw-1").status == 302
        assert _roles("lena") == [APPROVER]
        assert again.request("GET", "/changes/new/").status == 403
        changed = AuditEvent.objects.get(action=AuditEvent.Action.USER_UPDATE, object_repr="user lena")
        assert changed.before == {"roles": [OPERATOR, APPROVER]} and changed.after == {"roles": [APPROVER]}

        directory.add_member("admins", "lena")
        assert HttpClient(base).login("lena", "lena-ldap-pw-1").status == 302
        assert _roles("lena") == [ADMIN, APPROVER]


def test_a_directory_user_deactivated_in_isoweb_stays_out(directory: Directory, admin_user: User) -> None:
    with auth_server("ldap-deactivated", **_ldap_env(directory)) as base:
        lena = HttpClient(base)
        assert lena.login("lena", "lena-ldap-pw-1").status == 302 and lena.logged_in()
        deactivate_user(User.objects.get(username="lena"), actor=admin_user)
        assert not lena.logged_in()  # the open session ended
        retry = HttpClient(base)
        assert retry.login("lena", "lena-ldap-pw-1").status == 200 and not retry.logged_in()
        token = retry.request("POST", "/api/auth/token/", body={"username": "lena", "password": "lena-ldap-pw-1"})
        assert token.status == 400


def test_a_directory_that_never_answers_fails_logins_within_the_deadline(viewer: User) -> None:
    """A listener that accepts TCP and never answers, as a hung directory would: logins fail, within the deadline."""
    port = next(port for port in PORTS if not port_open(port))
    with socket.socket() as hung:
        hung.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # the previous test's slapd may be in TIME_WAIT
        hung.bind(("127.0.0.1", port))
        hung.listen(16)  # the kernel completes the handshake; nothing ever reads or answers
        env = {"ISOWEB_LDAP_URI": f"ldap://127.0.0.1:{port}", "ISOWEB_LDAP_TIMEOUT": "2", "ISOWEB_LDAP_ROLE_GROUPS": ""}
        with auth_server("ldap-hung", **env) as base:
            started = time.monotonic()
            refused = HttpClient(base)
            assert refused.login("lena", "lena-ldap-pw-1").status == 200 and not refused.logged_in()
            assert time.monotonic() - started < 12
            local = HttpClient(base)
            assert local.login("vera", "vera-pass-123").status == 302 and local.logged_in()
