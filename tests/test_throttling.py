"""Login lockout (django-axes) and API throttles (DRF), over real HTTP against a real Daphne.

Each test starts its own server with a short cool-off and its own rates (ISOWEB_LOGIN_COOLOFF,
ISOWEB_API_*_RATE), as an operator would set them in the environment.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import RequestFactory

from hosts.accounts import issue_token
from hosts.views.lockout import client_address
from tests.auth_server import Answer, HttpClient, auth_server

pytestmark = pytest.mark.django_db(transaction=True)

COOLOFF = 8  # seconds
LOCKOUT_ENV = {
    "ISOWEB_LOGIN_FAILURE_LIMIT": "10",
    "ISOWEB_LOGIN_COOLOFF": str(COOLOFF),
    "ISOWEB_API_ANON_RATE": "1000/minute",  # the lockout, not the throttle, must be what refuses here
}


def _after_cool_off(attempt: Callable[[], Answer]) -> Answer:
    """Wait out the cool-off without trying, then try; on a loaded machine allow a second full wait."""
    answer = None
    for _ in range(2):
        time.sleep(COOLOFF + 1.5)
        answer = attempt()
        if answer.status != 429:
            break
    assert answer is not None
    return answer


def test_thirty_wrong_passwords_lock_the_login_form_until_the_cool_off_for_that_user_only(
    viewer: User, operator: User
) -> None:
    with auth_server("lockout-form", **LOCKOUT_ENV) as base:
        browser = HttpClient(base)
        answers = [browser.login("vera", f"wrong-{n}") for n in range(30)]
        statuses = [answer.status for answer in answers]
        assert statuses[:9] == [200] * 9, statuses  # the form again, with its error
        assert statuses[10:] == [429] * 20, statuses
        locked = answers[-1]
        assert "Too many failed logins" in locked.body and 'id="retry-at"' in locked.body
        assert COOLOFF - 2 <= int(locked.headers["Retry-After"]) <= COOLOFF

        right = browser.login("vera", "vera-pass-123")
        assert right.status == 429 and not browser.logged_in()
        # A forged X-Forwarded-For does not make a new client (no trusted proxy is configured).
        forged = HttpClient(base).login("vera", "vera-pass-123", headers={"X-Forwarded-For": "192.0.2.7"})
        assert forged.status == 429

        other = HttpClient(base)
        assert other.login("otto", "otto-pass-123").status == 302 and other.logged_in()

        later = _after_cool_off(lambda: browser.login("vera", "vera-pass-123"))
        assert later.status == 302 and later.headers["Location"] == "/"
        assert browser.logged_in()


def test_the_token_endpoint_locks_out_the_same_way_and_says_when_to_retry(viewer: User, operator: User) -> None:
    with auth_server("lockout-token", **LOCKOUT_ENV) as base:
        client = HttpClient(base)

        def ask(username: str, password: str) -> Answer:
            return client.request("POST", "/api/auth/token/", body={"username": username, "password": password})

        statuses = [ask("vera", f"wrong-{n}").status for n in range(30)]
        assert statuses[:9] == [400] * 9 and statuses[10:] == [429] * 20, statuses
        refused = ask("vera", "vera-pass-123")
        assert refused.status == 429
        detail = refused.json()
        assert "locked out" in detail["detail"] and COOLOFF - 2 <= detail["retry_after_seconds"] <= COOLOFF
        assert refused.headers["Retry-After"] == str(detail["retry_after_seconds"]) and detail["retry_after"]
        assert "token" not in detail

        assert ask("otto", "otto-pass-123").status == 201
        later = _after_cool_off(lambda: ask("vera", "vera-pass-123"))
        assert later.status == 201 and later.json()["token"]


def test_the_api_throttles_each_user_and_anonymous_callers_at_their_rates(viewer: User, operator: User) -> None:
    vera, otto = issue_token(viewer, actor=viewer).secret, issue_token(operator, actor=operator).secret
    with auth_server("throttle", ISOWEB_API_USER_RATE="5/minute", ISOWEB_API_ANON_RATE="3/minute") as base:
        as_vera = HttpClient(base, {"Authorization": f"Token {vera}"})
        statuses = [as_vera.request("GET", "/api/audit-events/").status for _ in range(6)]
        assert statuses == [200] * 5 + [429], statuses
        throttled = as_vera.request("GET", "/api/audit-events/")
        assert throttled.status == 429 and "throttled" in throttled.json()["detail"]
        assert 1 <= int(throttled.headers["Retry-After"]) <= 60
        assert HttpClient(base, {"Authorization": f"Token {otto}"}).request("GET", "/api/audit-events/").status == 200

        anonymous = HttpClient(base)
        answers = [
            anonymous.request("POST", "/api/auth/token/", body={"username": "nobody", "password": "x"})
            for _ in range(4)
        ]
        assert [answer.status for answer in answers] == [400, 400, 400, 429]
        assert "throttled" in answers[-1].json()["detail"]


def test_the_client_address_behind_trusted_proxies_is_the_one_they_saw(settings: object) -> None:
    request = RequestFactory().get("/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.9, 203.0.113.5")
    settings.ISOWEB_TRUSTED_PROXY_COUNT = 0  # type: ignore[attr-defined]
    assert client_address(request) == "10.0.0.2"
    settings.ISOWEB_TRUSTED_PROXY_COUNT = 1  # type: ignore[attr-defined]
    assert client_address(request) == "203.0.113.5"  # what the one proxy in front saw; the rest is the client's word
    settings.ISOWEB_TRUSTED_PROXY_COUNT = 3  # type: ignore[attr-defined]
    assert client_address(request) == "10.0.0.2"  # fewer entries than proxies: not believed
