"""A real Daphne serving the product with settings from the environment, and a small HTTP client with cookies.

For the login, lockout, throttling and LDAP tests: each starts its own server (the throttles count in the
server process's memory, so a fresh server starts from zero) on the test database, with the environment the
test gives, and stops it by pid. Users the test creates must be committed (transactional tests).
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import re
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from typing import Any

from tests.conftest import _free_port, _stop, spawn, wait_for


@contextlib.contextmanager
def auth_server(name: str, **env: str) -> Iterator[str]:
    """Run Daphne with ``env`` on a free loopback port; yield its base URL."""
    port = _free_port()
    proc, log = spawn(
        name, [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "isoweb.asgi:application"], **env
    )

    def answers() -> bool:
        assert proc.poll() is None, f"daphne exited; see artifacts/{name}.log"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.3):
                return True
        except OSError:
            return False

    try:
        wait_for(answers, 30, what="daphne")
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)
        log.close()


@dataclass
class Answer:
    status: int
    headers: Message
    body: str

    def json(self) -> Any:
        return json.loads(self.body)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect is an answer to look at, not to follow


class HttpClient:
    """A browser-like client over real HTTP: keeps cookies, sends the CSRF token, never follows redirects."""

    def __init__(self, base: str, headers: dict[str, str] | None = None) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect())
        self.headers = headers or {}

    def request(
        self,
        method: str,
        path: str,
        *,
        form: dict[str, str] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        data, sent = None, {**self.headers, **(headers or {})}
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        request = urllib.request.Request(f"{self.base}{path}", data=data, headers=sent, method=method)  # noqa: S310 - loopback
        try:
            with self.opener.open(request, timeout=30) as response:
                return Answer(response.status, response.headers, response.read().decode())
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, exc.headers, exc.read().decode())

    def login(self, username: str, password: str, headers: dict[str, str] | None = None) -> Answer:
        """Submit the login form as a browser does (GET it for the CSRF token, then POST)."""
        page = self.request("GET", "/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
        assert token, page.body[:500]
        form = {"csrfmiddlewaretoken": token.group(1), "username": username, "password": password, "next": "/"}
        return self.request("POST", "/accounts/login/", form=form, headers=headers)

    def logged_in(self) -> bool:
        return self.request("GET", "/guests/").status == 200
