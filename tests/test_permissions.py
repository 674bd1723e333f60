"""Who may do what: anonymous gets nothing, a user without a role sees nothing, only admins add hosts."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client

from hosts.models import Domain, Host

PAGES = ["/", "/guests/"]
API = ["/api/hosts/", "/api/domains/"]


@pytest.fixture
def some_host(db: None) -> Host:
    host = Host.objects.create(name="kvm01", uri="qemu+tcp://127.0.0.1:1/system", transport="tcp")
    Domain.objects.create(host=host, uuid="6f1c2f0e-1b1e-4c55-9a44-1a2b3c4d5e6f", name="guest1")
    return host


def test_anonymous_gets_nothing(some_host: Host) -> None:
    client = Client()
    for url in [*PAGES, f"/hosts/{some_host.pk}/", "/hosts/add/"]:
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url
    for url in [*API, f"/api/hosts/{some_host.pk}/"]:
        assert client.get(url).status_code in (401, 403), url
    assert client.post(f"/api/hosts/{some_host.pk}/sync/").status_code in (401, 403)


def test_user_without_a_role_sees_nothing(outsider: User, login: Callable[[User], Client], some_host: Host) -> None:
    client = login(outsider)
    for url in [*PAGES, f"/hosts/{some_host.pk}/", *API]:
        assert client.get(url).status_code == 403, url


def test_viewer_reads_but_cannot_add_hosts_or_sync(
    viewer: User, login: Callable[[User], Client], some_host: Host
) -> None:
    client = login(viewer)
    for url in [*PAGES, f"/hosts/{some_host.pk}/", *API]:
        assert client.get(url).status_code == 200, url
    assert client.get("/hosts/add/").status_code == 403
    assert client.post("/hosts/add/", {"name": "x", "uri": "qemu:///system"}).status_code == 403
    api = client.post("/api/hosts/", {"name": "x", "uri": "qemu:///system"}, content_type="application/json")
    assert api.status_code == 403
    assert client.post(f"/hosts/{some_host.pk}/sync/").status_code == 403
    assert client.post(f"/api/hosts/{some_host.pk}/sync/").status_code == 403
    assert Host.objects.count() == 1
    assert "Add host" not in client.get("/").content.decode()


@pytest.mark.parametrize("role", ["operator", "approver"])
def test_only_admins_add_hosts(role: str, request: pytest.FixtureRequest, login: Callable[[User], Client]) -> None:
    client = login(request.getfixturevalue(role))
    assert client.get("/hosts/add/").status_code == 403
    api = client.post("/api/hosts/", {"name": "x", "uri": "qemu:///system"}, content_type="application/json")
    assert api.status_code == 403
    assert not Host.objects.exists()


def test_admin_sees_the_add_host_form(admin_user: User, login: Callable[[User], Client]) -> None:
    client = login(admin_user)
    assert client.get("/hosts/add/").status_code == 200
    assert "Add host" in client.get("/").content.decode()
