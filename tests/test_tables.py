"""The list pages as tables: sortable columns, paging, plain filter labels, refused values, the change list's
hosts/guests/reason/age, the approver's count in the menu, bulk guest picking, and the error pages.

Rows only (no libvirt): these are about what the pages draw from the database.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.contrib.staticfiles import finders
from django.db import connection
from django.template import loader
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import get_resolver

from hosts.menu import menu_context
from hosts.models import ChangeRequest, ChangeTarget, Domain, Host, PinProfile, PinProfileRevision

pytestmark = pytest.mark.django_db


def _host(name: str, status: str = "up") -> Host:
    port = sum(map(ord, name)) % 60000 + 1
    return Host.objects.create(name=name, uri=f"qemu+tcp://127.0.0.1:{port}/system", status=status)


def _guest(host: Host, name: str, state: str = "running", stale: bool = False) -> Domain:
    return Domain.objects.create(
        host=host, uuid=uuid.uuid4(), name=name, state=state, vcpus_current=1, vcpus_max=2, is_stale=stale
    )


def _request(requester: User, targets: list[Domain], reason: str = "noisy neighbour") -> ChangeRequest:
    profile, _ = PinProfile.objects.get_or_create(name="cap")
    revision, _ = PinProfileRevision.objects.get_or_create(
        profile=profile, number=1, defaults={"content": {"sched": {"cpu_shares": 512}}}
    )
    cr = ChangeRequest.objects.create(profile_revision=revision, reason=reason, requested_by=requester)
    for d in targets:
        ChangeTarget.objects.create(
            change_request=cr, host=d.host, domain=d, domain_uuid=d.uuid, domain_name=d.name, desired={}
        )
    return cr


def _errors(response) -> list[str]:  # type: ignore[no-untyped-def]
    return [m.message for m in response.context["messages"] if m.level_tag == "error"]


def _column(page: str, table_id: str, index: int) -> list[str]:
    """The text of one column of a table on the page, row by row."""
    body = page.split(f'id="{table_id}"', 1)[1].split("<tbody", 1)[1].split("</tbody>", 1)[0]
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S) for row in rows]
    return [re.sub(r"<[^>]+>", "", c[index]).strip() for c in cells if len(c) > index]


def test_the_host_list_sorts_by_any_column_both_ways(viewer: User, login: Callable[[User], Client]) -> None:
    for name, guests in (("kvm-b", 3), ("kvm-a", 1), ("kvm-c", 2)):
        host = _host(name)
        for i in range(guests):
            _guest(host, f"{name}-g{i}")
    client = login(viewer)
    page = client.get("/").content.decode()
    assert _column(page, "host-table", 0) == ["kvm-a", "kvm-b", "kvm-c"]
    by_guests = client.get("/", {"sort": "-domain_count"})
    assert by_guests.status_code == 200
    assert _column(by_guests.content.decode(), "host-table", 0) == ["kvm-b", "kvm-c", "kvm-a"]
    assert 'aria-sort="descending"' in by_guests.content.decode()
    assert _column(client.get("/", {"sort": "-name"}).content.decode(), "host-table", 0) == ["kvm-c", "kvm-b", "kvm-a"]


def test_the_guest_list_pages_and_keeps_its_sort_across_pages(viewer: User, login: Callable[[User], Client]) -> None:
    host = _host("kvm")
    for i in range(105):
        _guest(host, f"g{i:03d}")
    client = login(viewer)
    first = client.get("/guests/", {"sort": "-name"})
    page = first.content.decode()
    names = _column(page, "guest-table", 1)
    assert len(names) == 100 and names[0] == "g104"
    assert "page 1 of 2" in page and "sort=-name&amp;page=2" in page
    second = client.get("/guests/", {"sort": "-name", "page": "2"}).content.decode()
    assert _column(second, "guest-table", 1) == ["g004", "g003", "g002", "g001", "g000"]


@pytest.mark.parametrize(
    ("url", "params", "field"),
    [
        ("/", {"sort": "uri"}, "Sort"),  # not a sortable column
        ("/guests/", {"sort": "secret_field"}, "Sort"),
        ("/changes/", {"page": "abc"}, "Page"),
        ("/profiles/", {"page": "0"}, "Page"),
        ("/audit/", {"sort": "before"}, "Sort"),
    ],
)
def test_an_unknown_sort_or_page_is_a_400_that_names_it(
    url: str, params: dict[str, str], field: str, viewer: User, login: Callable[[User], Client]
) -> None:
    response = login(viewer).get(url, params)
    assert response.status_code == 400
    errors = _errors(response)
    assert len(errors) == 1 and errors[0].startswith(f"{field}: "), errors
    assert 'class="message message-error"' in response.content.decode()


def test_a_page_past_the_last_shows_the_last(viewer: User, login: Callable[[User], Client]) -> None:
    _guest(_host("kvm"), "only")
    response = login(viewer).get("/guests/", {"page": "7"})
    assert response.status_code == 200 and "only" in response.content.decode()


@pytest.mark.parametrize("url", ["/", "/guests/", "/changes/", "/audit/", "/profiles/"])
def test_filters_say_any_instead_of_dashes_or_unknown(url: str, viewer: User, login: Callable[[User], Client]) -> None:
    _guest(_host("kvm"), "g")
    page = login(viewer).get(url).content.decode()
    form = page.split('class="filters"', 1)[1].split("</form>", 1)[0]
    assert "---------" not in form
    if "<select" in form:
        assert re.search(r"<option value=\"\"[^>]*>any", form), form[:400]


def test_the_guest_freshness_filter_is_plain_and_strict_on_the_page_and_in_the_api(
    viewer: User, login: Callable[[User], Client]
) -> None:
    host = _host("kvm")
    _guest(host, "fresh")
    _guest(host, "old", stale=True)
    client = login(viewer)
    page = client.get("/guests/").content.decode()
    assert "Freshness" in page and '<option value="true">stale</option>' in page
    assert "Is stale" not in page and ">Unknown</option>" not in page
    stale = client.get("/guests/", {"is_stale": "true"}).content.decode()
    assert _column(stale, "guest-table", 1) == ["old"]
    refused = client.get("/guests/", {"is_stale": "maybe"})
    assert refused.status_code == 400
    assert _errors(refused) == ["Freshness: 'maybe' is neither true nor false (leave it empty for any)."]
    assert not list(refused.context["page"])
    api = client.get("/api/domains/", {"is_stale": "maybe"})
    assert api.status_code == 400 and list(api.json()) == ["is_stale"]
    assert [d["name"] for d in client.get("/api/domains/", {"is_stale": "false"}).json()["results"]] == ["fresh"]


def test_the_change_list_shows_hosts_guests_reason_and_age(
    viewer: User, operator: User, login: Callable[[User], Client]
) -> None:
    a, b = _host("kvm-a"), _host("kvm-b")
    guests = [_guest(a, "web1"), _guest(a, "web2"), _guest(b, "db1"), _guest(b, "db2"), _guest(b, "db3")]
    _request(operator, guests, reason="latency of the order database")
    page = login(viewer).get("/changes/").content.decode()
    row = page.split('id="change-table"', 1)[1].split("</tbody>", 1)[0]
    assert "kvm-a, kvm-b" in row
    assert "db1, db2, db3" in row and "and 2 more" in row
    assert "latency of the order database" in row
    assert re.search(r"<time [^>]*>\d+\s+minutes? ago</time>|<time [^>]*>0\s+minutes ago</time>", row), row


def test_an_approver_sees_how_many_requests_wait_for_them_in_the_menu(
    approver: User, operator: User, login: Callable[[User], Client]
) -> None:
    guest = _guest(_host("kvm"), "g")
    _request(operator, [guest])
    _request(operator, [guest])
    _request(approver, [guest])  # their own: someone else decides it
    decided = _request(operator, [guest])
    ChangeRequest.objects.filter(pk=decided.pk).update(status=ChangeRequest.Status.REJECTED)
    page = login(approver).get("/guests/").content.decode()
    badge = re.search(r'class="badge[^"]*waiting-count"[^>]*>(\d+)<', page)
    assert badge and badge.group(1) == "2"
    assert "waiting-count" not in login(operator).get("/guests/").content.decode()

    request = RequestFactory().get("/")
    request.user = approver
    with CaptureQueriesContext(connection) as queries:
        assert menu_context(request) == {"waiting_for_approval": 2}
        assert menu_context(request) == {"waiting_for_approval": 2}  # the second render of the menu asks nothing
    counts = [q for q in queries.captured_queries if "hosts_changerequest" in q["sql"]]
    assert len(counts) == 1


def test_bulk_picks_add_every_guest_of_a_host_or_every_running_guest_matching_the_filter(
    operator: User, login: Callable[[User], Client]
) -> None:
    a, b = _host("kvm-a"), _host("kvm-b")
    web1, web2, off = _guest(a, "web1"), _guest(a, "web2"), _guest(a, "web-off", state="shutoff")
    db1, webx = _guest(b, "db1"), _guest(b, "webx")
    client = login(operator)
    form = {"scope": "live", "reason": "tidy", "domains": [db1.pk]}

    whole_host = client.post("/changes/new/", {**form, "pick_host": "kvm-a", "action": "pick-host"})
    assert whole_host.status_code == 200
    checked = {int(v) for v in re.findall(r'name="domains" value="(\d+)"[^>]*checked', whole_host.content.decode())}
    assert checked == {db1.pk, web1.pk, web2.pk, off.pk}
    assert "Say why" not in whole_host.content.decode()  # picking is not submitting: no "required" errors yet
    assert re.search(r'<textarea name="reason"[^>]*>\s*tidy</textarea>', whole_host.content.decode())

    running = client.post("/changes/new/", {**form, "pick_find": "web", "action": "pick-running"})
    checked = {int(v) for v in re.findall(r'name="domains" value="(\d+)"[^>]*checked', running.content.decode())}
    assert checked == {db1.pk, web1.pk, web2.pk, webx.pk}  # the shut-off guest is not running

    no_host = client.post("/changes/new/", {**form, "action": "pick-host"})
    assert any(m.message.startswith("Host: choose a host") for m in no_host.context["messages"])
    assert not ChangeRequest.objects.exists()


def test_hosts_path_leads_to_the_host_list(viewer: User, login: Callable[[User], Client]) -> None:
    response = login(viewer).get("/hosts/", {"status": "up"})
    assert response.status_code == 302 and response["Location"] == "/?status=up"


def test_the_404_page_has_the_menu_and_a_way_back(viewer: User, login: Callable[[User], Client]) -> None:
    response = login(viewer).get("/no/such/page/")
    page = response.content.decode()
    assert response.status_code == 404
    assert 'id="mainmenu"' in page and "Page not found" in page and 'href="/"' in page
    assert "Skip to the content" in page


def test_the_500_page_renders_without_a_request_or_the_database(django_db_blocker) -> None:  # type: ignore[no-untyped-def]
    handler = get_resolver().resolve_error_handler(500)
    with django_db_blocker.block():  # any database access now raises
        response = handler(RequestFactory().get("/broken/"))
        bare = loader.get_template("500.html").render()  # as Django's own handler would
    page = response.content.decode()
    assert response.status_code == 500
    assert 'id="mainmenu"' in page and "Something went wrong" in page and "Go to the hosts" in page
    assert "Something went wrong" in bare


def test_the_api_docs_page_runs_swagger_ui_from_our_own_static_files(
    viewer: User, login: Callable[[User], Client]
) -> None:
    page = login(viewer).get("/api/docs/").content.decode()
    scripts = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', page)
    assert "/static/swagger-ui/swagger-ui-bundle.js" in scripts and "/static/swagger-ui/swagger-ui.css" in scripts
    assert not [s for s in scripts if s.startswith(("http:", "https:", "//"))], scripts
    assert 'data-schema-url="/api/schema/?format=json"' in page
    for path in (
        "swagger-ui/swagger-ui-bundle.js",
        "bootstrap/css/bootstrap.min.css",
        "bootstrap/js/bootstrap.bundle.min.js",
    ):
        assert finders.find(path), path
    menu = page.split('id="mainmenu"', 1)[1].split("</ul>", 1)[0]
    assert 'href="/api/docs/"' in menu and "/api/schema/" not in menu


def test_approve_asks_for_confirmation(approver: User, operator: User, login: Callable[[User], Client]) -> None:
    cr = _request(operator, [_guest(_host("kvm"), "g")])
    page = login(approver).get(f"/changes/{cr.pk}/").content.decode()
    button = re.search(r"<button[^>]*change-approve[^>]*>|<button[^>]*/approve/[^>]*>", page)
    assert button and "data-confirm=" in button.group(0)


def test_the_403_page_has_the_menu_and_a_way_out(outsider: User, login: Callable[[User], Client]) -> None:
    response = login(outsider).get("/guests/")
    page = response.content.decode()
    assert response.status_code == 403
    assert 'id="mainmenu"' in page and "Not allowed" in page and "Log in as someone else" in page


def test_an_anonymous_404_offers_the_login(client: Client) -> None:
    response = client.get("/no/such/page/")
    page = response.content.decode()
    assert response.status_code == 404 and "Page not found" in page
    assert 'href="/accounts/login/"' in page and 'id="mainmenu"' not in page
