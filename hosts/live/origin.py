"""Which pages may open a live chart's websocket: the site's own origin, scheme and port included.

Channels' ``AllowedHostsOriginValidator`` only compares the Origin's host name with ``ALLOWED_HOSTS``, so a page
served by any other program on the same machine (``http://127.0.0.1:9999``) or over the other scheme could open a
socket with the user's session cookie. Like Django's CSRF check, an Origin is accepted here when it is the
request's own origin (``http``/``https`` from the socket's ``ws``/``wss`` scheme, and the ``Host`` header, which
must be in ``ALLOWED_HOSTS``; default ports made explicit), or listed in ``CSRF_TRUSTED_ORIGINS`` (a reverse proxy
terminating TLS under another name; ``https://*.example.com`` as Django reads it). A socket without an Origin is
refused, as before. Refused sockets are closed at the handshake with ``CLOSE_BAD_ORIGIN``.

A scope without a ``Host`` header has no own origin to compare with; browsers and Daphne always send one, and
only an in-process test communicator omits it. Such a scope falls back to the former check (an ``http``/``https``
Origin whose host is in ``ALLOWED_HOSTS``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult, urlsplit

from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

CLOSE_BAD_ORIGIN = 4403
DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            try:
                return bytes(value).decode("latin1")
            except UnicodeDecodeError:
                return None
    return None


def _parse(origin: str) -> SplitResult | None:
    try:
        parsed = urlsplit(origin.strip().lower())
        parsed.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return None
    if parsed.scheme not in DEFAULT_PORTS or not parsed.hostname or parsed.path not in ("", "/"):
        return None
    if parsed.username is not None or parsed.query or parsed.fragment:
        return None
    return parsed


def _origin(parsed: SplitResult) -> Origin:
    return parsed.scheme, parsed.hostname or "", parsed.port or DEFAULT_PORTS[parsed.scheme]


def own_origin(scope: dict[str, Any]) -> Origin | None:
    """The origin of the page that belongs to this socket: its scheme, ``Host`` and port; ``None`` if unknown."""
    host = _header(scope, b"host")
    if host is None:
        return None
    domain, port = split_domain_port(host.lower())
    if not domain or not validate_host(domain, settings.ALLOWED_HOSTS):
        return None
    scheme = "https" if scope.get("scheme", "ws") in ("wss", "https") else "http"
    if port and not port.isdigit():
        return None
    return scheme, domain.strip("[]"), int(port) if port else DEFAULT_PORTS[scheme]


def trusted(origin: Origin) -> bool:
    """Whether ``CSRF_TRUSTED_ORIGINS`` lists this origin (exactly, or as ``scheme://*.domain[:port]``)."""
    scheme, host, port = origin
    for entry in settings.CSRF_TRUSTED_ORIGINS:
        wildcard = "://*." in entry
        parsed = _parse(entry.replace("://*.", "://", 1) if wildcard else entry)
        if parsed is None:
            continue
        pattern_scheme, pattern_host, pattern_port = _origin(parsed)
        if (pattern_scheme, pattern_port) != (scheme, port):
            continue
        if is_same_domain(host, "." + pattern_host) if wildcard else host == pattern_host:  # as Django's CSRF check
            return True
    return False


def origin_allowed(scope: dict[str, Any]) -> bool:
    """Whether the socket's ``Origin`` header is the site's own origin or a trusted one."""
    header = _header(scope, b"origin")
    parsed = _parse(header) if header is not None else None
    if parsed is None:
        return False
    origin = _origin(parsed)
    if _header(scope, b"host") is None:  # only an in-process test scope: the former host-name check
        return validate_host(origin[1], settings.ALLOWED_HOSTS)
    return origin == own_origin(scope) or trusted(origin)


class SameOriginValidator:
    """ASGI middleware for websockets: pass on sockets from an allowed origin, close the others at once."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            raise ValueError("SameOriginValidator only guards websockets")
        if origin_allowed(scope):
            return await self.application(scope, receive, send)
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.close", "code": CLOSE_BAD_ORIGIN})
        return None
