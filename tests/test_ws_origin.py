"""The live charts' websockets accept only the site's own origin (scheme, host and port) or a trusted one.

Each socket is opened through ``isoweb.asgi.application`` by a logged-in viewer on a real guest's chart, so an
accepted origin gets the chart and a refused one is closed at the handshake with 4403 before any consumer runs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client
from pytest_django.fixtures import Settings

from hosts.inventory import create_host
from hosts.live import history, push
from hosts.live.origin import CLOSE_BAD_ORIGIN
from hosts.models import Domain
from isoweb.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def chart(redis_server: str, viewer: User, login: Callable[[User], Client]) -> tuple[str, tuple[bytes, bytes]]:
    """A guest's chart path and a viewer's session cookie."""
    host = create_host(name="originhost", uri="qemu+tcp://127.0.0.1:16999/system", actor=None)
    guest = Domain.objects.create(host=host, uuid=uuid.uuid4(), name="originguest", state=Domain.State.RUNNING)
    cookie = (b"cookie", f"sessionid={login(viewer).cookies['sessionid'].value}".encode())
    return f"/ws/guests/{guest.pk}/", cookie


def opened(
    chart: tuple[str, tuple[bytes, bytes]], origin: str | None, host: str = "127.0.0.1:8000", scheme: str = "ws"
) -> tuple[bool, object]:
    """Open the chart's socket with these Origin and Host headers; return (accepted, close code or hello)."""
    path, cookie = chart
    headers = [cookie, (b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))

    async def scenario() -> tuple[bool, object]:
        communicator = WebsocketCommunicator(application, path, headers=headers)
        communicator.scope["scheme"] = scheme
        connected, code = await communicator.connect(timeout=10)
        if not connected:
            await communicator.wait(timeout=5)
            return False, code
        hello = await communicator.receive_json_from(timeout=10)
        await communicator.disconnect()
        return True, hello["type"]

    return asyncio.run(asyncio.wait_for(scenario(), 30))


def members(path: str) -> int:
    guest_id = int(path.strip("/").split("/")[-1])
    return int(history.client().zcard(f"asgi:group:{push.group_name(push.GUEST, guest_id)}"))


def test_the_sites_own_origin_is_accepted(chart: tuple[str, tuple[bytes, bytes]]) -> None:
    assert opened(chart, "http://127.0.0.1:8000") == (True, "hello")
    assert opened(chart, "http://localhost", host="localhost") == (True, "hello")
    assert opened(chart, "http://localhost:80", host="localhost") == (True, "hello")
    assert opened(chart, "https://localhost", host="localhost", scheme="wss") == (True, "hello")
    assert opened(chart, "https://localhost:8443", host="localhost:8443", scheme="wss") == (True, "hello")


@pytest.mark.parametrize(
    ("origin", "host", "scheme"),
    [
        ("http://127.0.0.1:9999", "127.0.0.1:8000", "ws"),  # same host, another port
        ("http://127.0.0.1", "127.0.0.1:8000", "ws"),  # same host, the default port
        ("http://localhost:8000", "127.0.0.1:8000", "ws"),  # another host name, same port
        ("https://127.0.0.1:8000", "127.0.0.1:8000", "ws"),  # another scheme
        ("http://localhost", "localhost", "wss"),  # a plain-http page to a TLS socket
        ("https://localhost", "localhost", "ws"),
        ("http://evil.example.com:8000", "127.0.0.1:8000", "ws"),
        ("http://evil.example.com:8000", "evil.example.com:8000", "ws"),  # a Host not in ALLOWED_HOSTS
        ("null", "127.0.0.1:8000", "ws"),
        ("http://127.0.0.1:8000/page", "127.0.0.1:8000", "ws"),
        ("ws://127.0.0.1:8000", "127.0.0.1:8000", "ws"),
        (None, "127.0.0.1:8000", "ws"),  # no Origin at all
    ],
)
def test_any_other_origin_is_refused_before_the_consumer(
    chart: tuple[str, tuple[bytes, bytes]], origin: str | None, host: str, scheme: str
) -> None:
    assert opened(chart, origin, host=host, scheme=scheme) == (False, CLOSE_BAD_ORIGIN)
    assert members(chart[0]) == 0


def test_origins_in_csrf_trusted_origins_are_accepted_with_their_scheme_and_port(
    chart: tuple[str, tuple[bytes, bytes]], settings: Settings
) -> None:
    """Behind a reverse proxy the socket's Host is the proxy's upstream; the public origin is listed."""
    settings.CSRF_TRUSTED_ORIGINS = ["https://isoweb.example.com", "https://*.example.org:8443"]
    assert opened(chart, "https://isoweb.example.com") == (True, "hello")
    assert opened(chart, "https://isoweb.example.com:443") == (True, "hello")
    assert opened(chart, "https://charts.example.org:8443") == (True, "hello")
    for origin in (
        "http://isoweb.example.com",
        "https://isoweb.example.com:8443",
        "https://other.example.com",
        "https://charts.example.org",
        "https://example.org.evil.com:8443",
    ):
        assert opened(chart, origin) == (False, CLOSE_BAD_ORIGIN), origin
