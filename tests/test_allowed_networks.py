"""ISOWEB_ALLOWED_HOST_NETWORKS: host URIs may only point at the listed networks; link-local never unless listed.

Names are resolved for real (``localhost`` through /etc/hosts; a name under the reserved ``.invalid`` domain
never resolves), and every refusal is checked through the API, the add form and the service with nothing saved.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.test import Client

from hosts.inventory import create_host
from hosts.models import AuditEvent, Host
from hosts.uri import validate_host_uri

pytestmark = pytest.mark.django_db


def _api_add(client: Client, uri: str) -> tuple[int, dict]:
    response = client.post("/api/hosts/", {"name": "h", "uri": uri}, content_type="application/json")
    return response.status_code, response.json()


@pytest.mark.parametrize(
    "uri",
    [
        "qemu+tcp://169.254.169.254:16509/system",
        "qemu+tls://169.254.0.1/system",
        "qemu+ssh://root@[fe80::1]/system",
        "qemu+tcp://[::ffff:169.254.169.254]:16509/system",
    ],
)
def test_link_local_addresses_are_refused_even_with_no_list(
    uri: str, settings: Any, admin_user: User, login: Callable[[User], Client]
) -> None:
    settings.ISOWEB_ALLOWED_HOST_NETWORKS = []
    status, body = _api_add(login(admin_user), uri)
    assert status == 400 and "link-local" in body["uri"][0] and "ISOWEB_ALLOWED_HOST_NETWORKS" in body["uri"][0]
    assert not Host.objects.exists() and not AuditEvent.objects.exists()


def test_a_listed_link_local_network_is_allowed(settings: Any) -> None:
    settings.ISOWEB_ALLOWED_HOST_NETWORKS = ["169.254.10.0/24"]
    assert validate_host_uri("qemu+tcp://169.254.10.7:16509/system").hostname == "169.254.10.7"
    with pytest.raises(ValidationError, match="a link-local address"):
        validate_host_uri("qemu+tcp://169.254.11.7:16509/system")


def test_with_no_list_any_other_address_and_an_unresolvable_name_are_accepted(settings: Any) -> None:
    settings.ISOWEB_ALLOWED_HOST_NETWORKS = []
    for uri in ("qemu+tcp://10.1.2.3/system", "qemu+tls://kvm01.isoweb-test.invalid/system"):
        assert validate_host_uri(uri).uri == uri


def test_an_address_outside_the_list_is_refused_through_the_api_naming_the_uri(
    settings: Any, admin_user: User, login: Callable[[User], Client]
) -> None:
    settings.ISOWEB_ALLOWED_HOST_NETWORKS = ["127.0.0.0/8", "192.0.2.0/24"]
    status, body = _api_add(login(admin_user), "qemu+tcp://10.1.2.3:16509/system")
    assert status == 400
    assert body["uri"][0].startswith("'10.1.2.3' is 10.1.2.3, outside ISOWEB_ALLOWED_HOST_NETWORKS (127.0.0.0/8, ")
    assert not Host.objects.exists()


def test_a_name_is_checked_by_what_it_resolves_to(settings: Any) -> None:
    settings.ISOWEB_ALLOWED_HOST_NETWORKS = ["192.0.2.0/24"]
    refusal = re.escape("'localhost' is 127.0.0.1, outside ISOWEB_ALLOWED_HOST_NETWORKS")
    with pytest.raises(ValidationError, match=refusal):
        validate_host_uri("qemu+tcp://localhost:16509/system")
    settings.ISOWEB_ALLOWED_HOST_NETWORKS = ["127.0.0.0/8"]
    assert validate_host_uri("qemu+tcp://localhost:16509/system").hostname == "localhost"


def test_a_name_that_does_not_resolve_is_refused_when_a_list_is_set(settings: Any) -> None:
    settings.ISOWEB_ALLOWED_HOST_NETWORKS = ["10.0.0.0/8"]
    with pytest.raises(ValidationError, match="does not resolve, so it cannot be checked"):
        create_host(name="ghost", uri="qemu+tls://kvm01.isoweb-test.invalid/system", actor=None)
    assert not Host.objects.exists()


def test_an_address_inside_the_list_is_registered(settings: Any) -> None:
    settings.ISOWEB_ALLOWED_HOST_NETWORKS = ["127.0.0.0/8"]
    host = create_host(name="local", uri="qemu+tcp://127.0.0.1:16509/system", actor=None)
    assert Host.objects.get(pk=host.pk).uri == "qemu+tcp://127.0.0.1:16509/system"


def test_the_add_form_shows_the_refusal_on_the_uri_field(
    settings: Any, admin_user: User, login: Callable[[User], Client]
) -> None:
    settings.ISOWEB_ALLOWED_HOST_NETWORKS = ["127.0.0.0/8"]
    page = login(admin_user).post("/hosts/add/", {"name": "h", "uri": "qemu+tcp://192.0.2.9/system"})
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="id_uri_errors"' in html and "outside ISOWEB_ALLOWED_HOST_NETWORKS" in html
    assert not Host.objects.exists()


def test_local_uris_need_no_network(settings: Any) -> None:
    settings.ISOWEB_ALLOWED_HOST_NETWORKS = ["192.0.2.0/24"]
    assert validate_host_uri("qemu:///system").transport == "local"


def test_a_malformed_list_is_a_configuration_error(settings: Any) -> None:
    settings.ISOWEB_ALLOWED_HOST_NETWORKS = ["10.0.0.0/33"]
    with pytest.raises(ImproperlyConfigured, match=re.escape("ISOWEB_ALLOWED_HOST_NETWORKS: '10.0.0.0/33'")):
        validate_host_uri("qemu+tcp://10.1.2.3/system")


def test_editing_a_host_to_an_address_outside_the_list_is_refused_and_changes_nothing(
    settings: Any, admin_user: User, login: Callable[[User], Client]
) -> None:
    settings.ISOWEB_ALLOWED_HOST_NETWORKS = ["127.0.0.0/8"]
    host = create_host(name="local", uri="qemu+tcp://127.0.0.1:16509/system", actor=None)
    response = login(admin_user).patch(
        f"/api/hosts/{host.pk}/", {"uri": "qemu+tcp://169.254.169.254/system"}, content_type="application/json"
    )
    assert response.status_code == 400 and "link-local" in response.json()["uri"][0]
    assert Host.objects.get(pk=host.pk).uri == "qemu+tcp://127.0.0.1:16509/system"
