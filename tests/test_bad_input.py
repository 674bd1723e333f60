"""Out-of-range ids in filters, paging and paths answer 400 or 404 (or are ignored), never 500.

A 20-digit id used to reach SQLite as a Python int and fail there (``OverflowError``, a 500); every filter
that takes a row id now accepts 1..2**63-1 only and names itself in the error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client

from hosts.filters import AuditEventFilterSet, ChangeRequestFilterSet, DomainFilterSet
from hosts.inventory import create_host
from hosts.models import AuditEvent, Host
from isoweb.asgi import application

pytestmark = pytest.mark.django_db

TOO_BIG = "99999999999999999999"
OUT_OF_RANGE = [TOO_BIG, str(2**63), "-1", "0", "1.5", "1e3"]
LARGEST_ID = str(2**63 - 1)

# (API list, page, filterset, field) for every filter that takes a row id.
ID_FILTERS = [
    ("/api/audit-events/", "/audit/", AuditEventFilterSet, "change_request"),
    ("/api/audit-events/", "/audit/", AuditEventFilterSet, "host"),
    ("/api/audit-events/", "/audit/", AuditEventFilterSet, "domain"),
    ("/api/audit-events/", "/audit/", AuditEventFilterSet, "profile"),
    ("/api/domains/", "/guests/", DomainFilterSet, "host"),
    ("/api/change-requests/", "/changes/", ChangeRequestFilterSet, "requested_by"),
    ("/api/change-requests/", "/changes/", ChangeRequestFilterSet, "decided_by"),
]
IDS = [f"{f[3]}@{f[1]}" for f in ID_FILTERS]


@pytest.fixture
def host(db: None) -> Host:
    return create_host(name="badinput", uri="qemu+tcp://127.0.0.1:16999/system", actor=None)


def client_for(user: User, login: Callable[[User], Client]) -> Client:
    client = login(user)
    client.raise_request_exception = False  # a 500 shows as a status, not as the view's exception
    return client


def test_every_id_filter_is_bounded() -> None:
    """The list above is complete: every filter over a foreign key or a typed-in id is in it."""
    found = set()
    for filterset in (AuditEventFilterSet, ChangeRequestFilterSet, DomainFilterSet):
        for name, field in filterset().form.fields.items():
            if name not in ("since", "before") and type(field).__name__ in ("IdChoiceField", "IntegerField"):
                found.add((filterset, name))
    assert found == {(f[2], f[3]) for f in ID_FILTERS}


@pytest.mark.parametrize("value", OUT_OF_RANGE)
@pytest.mark.parametrize(("api", "page", "filterset", "field"), ID_FILTERS, ids=IDS)
def test_the_api_answers_400_naming_the_filter(
    api: str, page: str, filterset: type, field: str, value: str, host: Host, viewer: User, login
) -> None:
    response = client_for(viewer, login).get(api, {field: value})
    assert response.status_code == 400, (response.status_code, response.content[:300])
    assert list(response.json()) == [field]


@pytest.mark.parametrize(("api", "page", "filterset", "field"), ID_FILTERS, ids=IDS)
def test_the_page_shows_the_filter_error_and_lists_nothing(
    api: str, page: str, filterset: type, field: str, host: Host, viewer: User, login
) -> None:
    response = client_for(viewer, login).get(page, {field: TOO_BIG})
    assert response.status_code == 400, (response.status_code, response.content[:300])
    label = filterset().form.fields[field].label
    errors = [m.message for m in response.context["messages"] if m.level_tag == "error"]
    assert len(errors) == 1 and errors[0].startswith(f"{label}: "), errors
    assert 'class="message message-error"' in response.content.decode()
    assert not list(response.context["page"])  # no unfiltered rows under an error


def test_the_largest_id_is_a_valid_filter_that_matches_nothing(host: Host, viewer: User, login) -> None:
    client = client_for(viewer, login)
    assert AuditEvent.objects.filter(host=host).exists()
    response = client.get("/api/audit-events/", {"change_request": LARGEST_ID})
    assert response.status_code == 200 and response.json()["results"] == []
    page = client.get("/audit/", {"change_request": LARGEST_ID})
    assert page.status_code == 200 and not list(page.context["page"])
    by_host = client.get("/api/audit-events/", {"host": host.pk}).json()["results"]
    assert {e["action"] for e in by_host} == {AuditEvent.Action.HOST_CREATE}


@pytest.mark.parametrize("api", ["hosts", "domains", "profiles", "change-requests", "audit-events"])
def test_a_huge_limit_or_offset_is_bounded(api: str, host: Host, viewer: User, login) -> None:
    client = client_for(viewer, login)
    for params in ({"limit": TOO_BIG}, {"offset": TOO_BIG}, {"limit": TOO_BIG, "offset": "0"}):
        response = client.get(f"/api/{api}/", params)
        assert response.status_code == 200, (params, response.status_code, response.content[:300])


@pytest.mark.parametrize("value", [TOO_BIG, str(2**63), LARGEST_ID])
@pytest.mark.parametrize(
    "path",
    [
        "/hosts/{}/",
        "/guests/{}/",
        "/profiles/{}/",
        "/changes/{}/",
        "/api/hosts/{}/",
        "/api/domains/{}/",
        "/api/profiles/{}/",
        "/api/change-requests/{}/",
        "/api/audit-events/{}/",
    ],
)
def test_a_path_id_out_of_range_is_not_found(path: str, value: str, host: Host, admin_user: User, login) -> None:
    assert client_for(admin_user, login).get(path.format(value)).status_code == 404


@pytest.mark.parametrize(
    ("path", "persona"),
    [
        ("/hosts/{}/sync/", "operator"),
        ("/hosts/{}/partition/", "admin_user"),
        ("/changes/{}/approve/", "approver"),
        ("/changes/{}/reject/", "approver"),
        ("/changes/{}/rollback/", "approver"),
        ("/api/hosts/{}/sync/", "operator"),
        ("/api/hosts/{}/partition/", "admin_user"),
        ("/api/change-requests/{}/approve/", "approver"),
        ("/api/change-requests/{}/rollback/", "approver"),
    ],
)
def test_a_post_to_a_path_id_out_of_range_is_not_found(
    path: str, persona: str, host: Host, login, request: pytest.FixtureRequest
) -> None:
    user = request.getfixturevalue(persona)
    assert client_for(user, login).post(path.format(TOO_BIG)).status_code == 404


@pytest.mark.parametrize("param", ["revision", "profile", "domain"])
def test_the_change_form_ignores_ids_out_of_range(param: str, host: Host, operator: User, login) -> None:
    response = client_for(operator, login).get("/changes/new/", {param: TOO_BIG})
    assert response.status_code == 200, (response.status_code, response.content[:300])


# --- websockets ------------------------------------------------------------------------------------

ORIGIN = (b"origin", b"http://127.0.0.1:8000")
HOST = (b"host", b"127.0.0.1:8000")
NO_CHART_PATHS = [
    "/ws/hosts/-1/",
    "/ws/guests/-1/",
    "/ws/hosts/abc/",
    "/ws/hosts/1.5/",
    f"/ws/hosts/{TOO_BIG}/",
    f"/ws/guests/{2**63}/",
    "/ws/hosts/1/extra/",
    "/ws/hosts/",
    "/ws/",
    "/ws/nothing/",
    "/",
    "/api/hosts/",
]


async def ws_refusal(path: str, *headers: tuple[bytes, bytes]) -> object:
    communicator = WebsocketCommunicator(application, path, headers=[ORIGIN, HOST, *headers])
    connected, code = await asyncio.wait_for(communicator.connect(timeout=10), 20)
    if connected:
        await communicator.disconnect()
    assert not connected, path
    await communicator.wait(timeout=5)  # the application has finished, without raising
    return code


@pytest.mark.parametrize("path", NO_CHART_PATHS)
def test_a_websocket_to_no_chart_is_closed_with_4404_and_no_error(
    path: str, redis_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING"):
        assert asyncio.run(ws_refusal(path)) == 4404
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], caplog.text


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "path", ["/ws/hosts/-1/", f"/ws/guests/{TOO_BIG}/", "/ws/nothing/", f"/ws/hosts/{LARGEST_ID}/"]
)
def test_a_logged_in_viewer_gets_4404_for_no_chart_and_no_error(
    path: str, viewer: User, login, redis_server: str, caplog: pytest.LogCaptureFixture
) -> None:
    cookie = (b"cookie", f"sessionid={login(viewer).cookies['sessionid'].value}".encode())
    with caplog.at_level("WARNING"):
        assert asyncio.run(ws_refusal(path, cookie)) == 4404
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], caplog.text
