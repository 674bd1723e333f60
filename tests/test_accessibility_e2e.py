"""Every page passes axe-core (from node_modules) with no serious or critical violation at 390x844 and
1440x900, in the light and the dark theme; the skip link, the theme and Approve's confirmation work in a real
browser.

Real parts: Daphne serving the app, the libvirt fleet, Redis and Debian's Chromium; axe-core is injected into
each page as the only script that is not the product's own.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from hosts.models import ChangeRequest
from tests.ui_pages import (  # noqa: F401 - ui_site_fixture provides ui_site
    DESKTOP,
    PHONE,
    Site,
    axe_violations,
    browser_page,
    open_page,
    screenshot,
    ui_site_fixture,
)

pytestmark = [pytest.mark.fleet, pytest.mark.django_db(transaction=True)]


def _report(found: dict[str, list[dict[str, Any]]]) -> str:
    return "\n".join(
        f"{page}: [{v['impact']}] {v['id']} ({v['help']}) at {v['nodes']}" for page, vs in found.items() for v in vs
    )


@pytest.mark.parametrize(
    ("viewport", "scheme"),
    [(PHONE, "light"), (DESKTOP, "light"), (DESKTOP, "dark")],
    ids=["390x844-light", "1440x900-light", "1440x900-dark"],
)
def test_no_page_has_a_serious_or_critical_accessibility_violation(
    ui_site: Site, viewport: dict[str, int], scheme: str
) -> None:
    found: dict[str, list[dict[str, Any]]] = {}
    for logged_in in (True, False):
        with browser_page(ui_site, viewport, logged_in=logged_in, color_scheme=scheme) as page:
            for target in (p for p in ui_site.pages if p.logged_in == logged_in):
                open_page(page, ui_site, target)
                theme = page.evaluate("document.documentElement.getAttribute('data-bs-theme')")
                assert theme == scheme, f"{target.name}: data-bs-theme is {theme!r} in a {scheme} browser"
                if scheme == "dark":
                    screenshot(page, target, viewport, suffix="-dark")
                violations = axe_violations(page)
                if violations:
                    found[target.name] = violations
    assert not found, _report(found)


def test_the_skip_link_is_the_first_stop_and_moves_the_focus_to_the_content(ui_site: Site) -> None:
    with browser_page(ui_site, DESKTOP) as page:
        page.goto(f"{ui_site.base}/guests/")
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.textContent.trim()")
        assert focused == "Skip to the content"
        box = page.locator(".skip-link").bounding_box()
        assert box is not None and box["width"] > 10 and box["y"] >= 0  # visible once focused
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "content"


def test_approve_asks_first_and_cancelling_sends_nothing(ui_site: Site, approver: User) -> None:
    cr = ChangeRequest.objects.get()
    with browser_page(ui_site, PHONE) as page:
        page.goto(f"{ui_site.base}/changes/{cr.pk}/")
        asked: list[str] = []

        def dismiss(dialog: Any) -> None:
            asked.append(dialog.message)
            dialog.dismiss()

        page.once("dialog", dismiss)
        page.get_by_role("button", name="Approve", exact=False).click()
        page.wait_for_timeout(800)
        assert asked and asked[0].startswith(f"Approve CR-{cr.pk}?"), asked
        assert "/approve/" not in page.url
        status_after_cancel = page.evaluate("document.querySelector('[data-cr-status-text]').textContent")

        page.once("dialog", lambda dialog: dialog.accept())
        with page.expect_navigation():
            page.get_by_role("button", name="Approve", exact=False).click()
        approved_text = page.locator(".messages").inner_text()
    assert "Pending" in status_after_cancel
    assert f"CR-{cr.pk} approved" in approved_text
    cr.refresh_from_db()
    assert cr.status != ChangeRequest.Status.PENDING and cr.decided_by is not None
