"""Forms remember what was chosen and say things once.

After a failed preview or save the change form keeps its guests and the picker's host, and the profile
editor's live check keeps its host, guests and scope (in headless Chromium: that part is the page's script);
a new profile form shows no error before anything is typed; a refusal says the value at fault once.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from django.test import Client

from hosts.cpulist import CpulistError, parse_cpulist
from hosts.models import Domain, Host
from hosts.planning.profiles import create_profile
from hosts.planning.schema import ProfileError, validate_profile
from tests.conftest import logged_in_page, wait_for
from tests.rows_fixtures import host_with_guest


def test_a_reversed_range_is_named_once() -> None:
    with pytest.raises(CpulistError) as refused:
        parse_cpulist("1-0")
    assert str(refused.value) == "'1-0' is a reversed range (its first CPU is above its last)"
    with pytest.raises(ProfileError) as invalid:
        validate_profile({"vcpupin": {"strategy": "pool", "cpus": "1-0"}})
    [message] = invalid.value.errors["vcpupin.cpus"]
    assert message == "vcpupin.cpus: '1-0' is a reversed range (its first CPU is above its last)"
    assert message.count("1-0") == 1


def test_a_bad_token_in_a_longer_list_names_the_token_and_its_list() -> None:
    with pytest.raises(ProfileError) as invalid:
        validate_profile({"emulatorpin": {"strategy": "cpulist", "cpus": "0,x"}})
    assert invalid.value.errors["emulatorpin.cpus"] == ["emulatorpin.cpus: 'x' in '0,x' is not a CPU number"]


@pytest.mark.django_db
def test_the_profile_editor_shows_a_cpulist_error_once(operator: User, login: Callable[[User], Client]) -> None:
    page = (
        login(operator)
        .post("/profiles/new/", {"name": "p", "vcpupin_strategy": "pool", "vcpupin_pool_cpus": "3-1"})
        .content.decode()
    )
    errors = re.findall(r'data-errors-for="vcpupin_pool_cpus">(.*?)</div>', page, re.S)
    assert errors and errors[0].count("3-1") == 1, errors


@pytest.mark.django_db
def test_a_failed_preview_keeps_the_guests_and_the_pickers_host(
    operator: User, login: Callable[[User], Client]
) -> None:
    kept = host_with_guest({"sched": {"vcpu_quota": -1}}, name="kvm-b", guest="keep-me")
    other = host_with_guest({"sched": {"vcpu_quota": -1}}, name="kvm-a", guest="not-me")
    profile = create_profile(name="shares", description="", content={"sched": {"cpu_shares": 512}}, actor=operator)
    answer = login(operator).post(
        "/changes/new/",
        {
            "profile_revision": profile.revisions.get().pk,
            "domains": [kept.pk],
            "scope": "live",
            "reason": "",  # refused: a reason is required
            "pick_host": "kvm-b",
            "pick_find": "keep",
            "action": "preview",
        },
    )
    assert answer.status_code == 400
    page = answer.content.decode()
    assert "Say why this change is needed." in page
    boxes = dict(re.findall(r'<input type="checkbox" name="domains" value="(\d+)"([^>]*)>', page))
    assert "checked" in boxes[str(kept.pk)] and "checked" not in boxes[str(other.pk)]
    assert re.search(r'<select name="pick_host"[^>]*>.*<option selected>kvm-b</option>', page, re.S)
    assert 'name="pick_find" value="keep"' in page


@pytest.mark.fleet
@pytest.mark.django_db(transaction=True)
def test_the_profile_editor_keeps_its_live_check_and_opens_without_errors(
    fleet_hosts: list[Host], web_server: str, operator: User
) -> None:
    second_host = fleet_hosts[1]
    guests = list(Domain.objects.filter(host=second_host).order_by("name").values_list("pk", "name"))
    chosen = [str(pk) for pk, _name in guests[1:]]  # not the first guest, which the check picks by default
    assert chosen
    with logged_in_page(web_server, operator) as page:
        page.goto(f"{web_server}/profiles/new/")
        page.wait_for_selector("#plan-host option", state="attached")
        page.wait_for_timeout(800)  # the check's first run has answered (or would have shown errors)
        assert page.locator("#profile-form .error p").count() == 0
        assert page.locator("#profile-form .has-error, #profile-form .live-error").count() == 0
        assert "plan-bad" not in (page.get_attribute("#plan-status", "class") or "")

        page.select_option("#plan-host", str(second_host.pk))
        page.select_option("#plan-guests", chosen)
        page.select_option("#plan-scope", "live")
        page.select_option("[name=vcpupin_strategy]", "pool")
        page.fill("[name=vcpupin_pool_cpus]", "1-0")
        page.click("#profile-form button[type=submit]")  # refused: no name, and a reversed range
        page.wait_for_selector(".banner-error")
        wait_for(lambda: page.input_value("#plan-host") == str(second_host.pk), 5, what="the host kept")
        picked = page.eval_on_selector_all("#plan-guests option:checked", "os => os.map(o => o.value)")
        assert sorted(picked) == sorted(chosen)
        assert page.input_value("#plan-scope") == "live"
        messages = page.locator('[data-errors-for="vcpupin_pool_cpus"] p').all_inner_texts()
        assert messages and all(m.count("1-0") == 1 for m in messages), messages
