"""Every page at phone width (390x844) and on a desktop (1440x900), in Debian's Chromium: nothing scrolls
sideways, the main menu can be reached (at 390 px behind the toggler, which opens it with every link visible),
and a screenshot of each page at each size is left under artifacts/screens/.

Real parts: Daphne serving the app with its static files (Bootstrap from node_modules), the libvirt fleet,
Redis; the pages hold a profile, a change request and audit events made through the services.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.ui_pages import (  # noqa: F401 - ui_site_fixture provides ui_site
    DESKTOP,
    PHONE,
    Site,
    browser_page,
    horizontal_overflow,
    open_page,
    screenshot,
    ui_site_fixture,
)

pytestmark = [pytest.mark.fleet, pytest.mark.django_db(transaction=True)]

MENU_LINKS = ("Hosts", "Guests", "Profiles", "Change requests", "Audit", "API")


def _menu_problem(page: Any, viewport: dict[str, int]) -> str | None:
    """None if every main menu link can be reached (opening the collapsed menu first on a phone)."""
    toggler = page.locator("button.navbar-toggler")
    menu = page.locator("#mainmenu")
    if viewport["width"] < 1200:  # the menu collapses below Bootstrap's xl breakpoint
        if not toggler.is_visible():
            return "no menu button at phone width"
        if menu.locator("a.nav-link").first.is_visible():
            return "the menu is open before the menu button is pressed"
        toggler.click()
        try:
            menu.locator("a.nav-link").last.wait_for(state="visible", timeout=5000)
        except Exception:  # a timeout: reported as the problem
            return "the menu button did not open the menu"
        if toggler.get_attribute("aria-expanded") != "true":
            return "the menu button does not say the menu is open (aria-expanded)"
    elif toggler.is_visible():
        return "a menu button on a wide screen"
    missing = [name for name in MENU_LINKS if not menu.get_by_role("link", name=name, exact=False).first.is_visible()]
    if missing:
        return f"menu links not visible: {missing}"
    logout = menu.get_by_role("button", name="Log out")
    if not logout.is_visible():
        return "Log out is not visible in the menu"
    box = logout.bounding_box()
    if box is None or box["x"] + box["width"] > viewport["width"]:
        return f"Log out is off-screen: {box}"
    return None


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["390x844", "1440x900"])
def test_every_page_fits_the_screen_and_its_menu_can_be_reached(ui_site: Site, viewport: dict[str, int]) -> None:
    problems: dict[str, list[str]] = {}
    shots = []
    with browser_page(ui_site, viewport) as page:
        for target in (p for p in ui_site.pages if p.logged_in):
            open_page(page, ui_site, target)
            found = problems.setdefault(target.name, [])
            overflow = horizontal_overflow(page)
            if overflow:
                found.append(f"scrolls sideways: {overflow}")
            shots.append(screenshot(page, target, viewport))
            menu = _menu_problem(page, viewport)
            if menu:
                found.append(menu)
            if viewport is PHONE:
                page.wait_for_timeout(400)  # the menu's opening animation
                screenshot(page, target, viewport, suffix="-menu")
    with browser_page(ui_site, viewport, logged_in=False) as page:
        for target in (p for p in ui_site.pages if not p.logged_in):
            open_page(page, ui_site, target)
            overflow = horizontal_overflow(page)
            if overflow:
                problems.setdefault(target.name, []).append(f"scrolls sideways: {overflow}")
            shots.append(screenshot(page, target, viewport))
    assert all(path.stat().st_size > 1000 for path in shots)
    failures = [f"{name}: {problem}" for name, found in problems.items() for problem in found]
    assert not failures, "\n".join(failures)
