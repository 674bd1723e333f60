"""Host URIs are untrusted input: only safe libvirt transports and parameters get in, nothing else is saved."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import Client

from hosts.inventory import create_host
from hosts.models import AuditEvent, Host
from hosts.uri import validate_host_uri


@pytest.mark.parametrize(
    ("uri", "transport", "encrypted"),
    [
        ("qemu:///system", "local", True),
        ("qemu+unix:///system", "unix", True),
        ("qemu+unix:///system?socket=/run/libvirt/libvirt-sock", "unix", True),
        ("qemu+tcp://127.0.0.1:16509/system", "tcp", False),
        ("qemu+tls://kvm01.example.com/system?pkipath=/etc/isoweb/pki/kvm01", "tls", True),
        ("qemu+ssh://root@kvm02.example.com:2222/system?keyfile=/etc/isoweb/id_ed25519", "ssh", True),
        ("qemu+ssh://[2001:db8::1]/system", "ssh", True),
    ],
)
def test_transports_an_operator_needs_are_accepted(uri: str, transport: str, encrypted: bool) -> None:
    parsed = validate_host_uri(uri)
    assert (parsed.transport, parsed.encrypted) == (transport, encrypted)


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("qemu+ext:///system?command=/bin/sh", "'ext' transport runs an arbitrary program"),
        ("qemu+ssh://host/system?command=/usr/bin/evil", "'command=' parameter makes libvirt run a program"),
        ("qemu+ssh://host/system?netcat=/tmp/nc", "'netcat=' parameter makes libvirt run a program"),
        ("qemu+tcp://host/system?netcat=nc", "'netcat=' parameter makes libvirt run a program"),
        ("qemu+ssh://host/system?proxy=netcat", "'proxy=' parameter makes libvirt run a program"),
        ("qemu+tls://host/system?foo=bar", "'foo=' parameter is not allowed for tls URIs"),
        ("qemu+libssh2://host/system", "Unsupported transport 'libssh2'"),
        ("xen+ssh://host/system", "Unsupported driver 'xen'"),
        ("test:///default", "Unsupported driver 'test'"),
        ("qemu+tcp:///system", "needs a host name"),
        ("qemu:///nowhere", "path must be /system or /session"),
        ("qemu+ssh://bad_host!/system", "is not a valid host name"),
        ("qemu+ssh://user:secret@host/system", "Do not put a password in the URI"),
        ("qemu+tcp://host:99999/system", "not a well-formed URI"),
        ("qemu+ssh://host/system; rm -rf /", "cannot contain spaces"),
        ("qemu+ssh://host/system?keyfile=$(reboot)", "contains characters that are not allowed"),
        ("", "Enter a libvirt URI"),
    ],
)
def test_unsafe_or_malformed_uris_are_refused_with_a_reason(uri: str, words: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_host_uri(uri)
    assert words in caught.value.messages[0]


def test_refused_uri_saves_nothing_through_the_service(db: None) -> None:
    with pytest.raises(ValidationError):
        create_host(name="evil", uri="qemu+ext:///system?command=/bin/sh", actor=None)
    assert not Host.objects.exists()
    assert not AuditEvent.objects.exists()


def test_refused_uri_through_the_api_names_the_field_and_saves_nothing(
    admin_user: User, login: Callable[[User], Client]
) -> None:
    response = login(admin_user).post(
        "/api/hosts/", {"name": "evil", "uri": "qemu+ssh://h/system?command=/bin/sh"}, content_type="application/json"
    )
    assert response.status_code == 400
    assert "command=" in response.json()["uri"][0]
    assert not Host.objects.exists()


def test_refused_uri_through_the_form_shows_the_error_and_saves_nothing(
    admin_user: User, login: Callable[[User], Client]
) -> None:
    response = login(admin_user).post("/hosts/add/", {"name": "evil", "uri": "qemu+ext:///system"})
    assert response.status_code == 200
    assert "transport runs an arbitrary program" in response.content.decode()
    assert not Host.objects.exists()


def test_admin_adds_a_host_and_the_change_is_audited(admin_user: User, login: Callable[[User], Client]) -> None:
    response = login(admin_user).post(
        "/api/hosts/", {"name": "kvm01", "uri": "qemu+tcp://127.0.0.1:1/system"}, content_type="application/json"
    )
    assert response.status_code == 201, response.content
    host = Host.objects.get(name="kvm01")
    assert host.transport == Host.Transport.TCP and not host.is_encrypted
    event = AuditEvent.objects.get(host=host)
    assert event.actor == admin_user and event.action == AuditEvent.Action.HOST_CREATE
    assert event.after["uri"] == "qemu+tcp://127.0.0.1:1/system"


def test_duplicate_uri_is_refused(admin_user: User, login: Callable[[User], Client]) -> None:
    client = login(admin_user)
    body = {"name": "a", "uri": "qemu+tcp://127.0.0.1:1/system"}
    assert client.post("/api/hosts/", body, content_type="application/json").status_code == 201
    again = client.post("/api/hosts/", {**body, "name": "b"}, content_type="application/json")
    assert again.status_code == 400 and "uri" in again.json()
    assert Host.objects.count() == 1
