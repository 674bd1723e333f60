"""What the page-level browser tests share: a site with something on every page, the list of pages, and a
headless Chromium at a given size.

The site is the real stack the other browser tests use (Daphne on a loopback port serving the test database,
Redis, the libvirt fleet synced into the inventory) with a profile, a pending change request and audit events
added through the services, so no page is an empty shell. Every page is visited as a user holding every role,
so every button and form is drawn.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.urls import NoReverseMatch, reverse

from hosts.changes.requests import create_change_request
from hosts.models import Domain, Host
from hosts.planning.profiles import create_profile
from hosts.roles import ROLES, ensure_role_groups
from tests.conftest import ARTIFACTS, CHROMIUM_ARGS

AXE = Path(settings.BASE_DIR) / "node_modules" / "axe-core" / "axe.min.js"
SCREENS = Path(ARTIFACTS) / "screens"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}
PASSWORD = "ruth-pass-123"


@dataclass(frozen=True)
class Page:
    """One page to visit: a short name (for screenshots and messages), its path, and whether it needs a login."""

    name: str
    path: str
    logged_in: bool = True


@dataclass(frozen=True)
class Site:
    base: str
    user: str
    pages: tuple[Page, ...]


def _optional(name: str) -> str | None:
    """The path of a page other work may or may not have added yet (the drift page, users, settings)."""
    try:
        return reverse(name)
    except NoReverseMatch:
        return None


@pytest.fixture(name="ui_site")
def ui_site_fixture(fleet_hosts: list[Host], web_server: str) -> Site:
    """The real site with a profile, a pending change request of someone else and their audit events."""
    groups = ensure_role_groups()
    ruth = User.objects.create_user("ruth", password=PASSWORD)
    ruth.groups.add(*(groups[role] for role in ROLES))
    otto = User.objects.create_user("otto-ui", password="otto-ui-pass-123")
    otto.groups.add(groups["operator"])
    host = fleet_hosts[0]
    running = Domain.objects.filter(host=host, state=Domain.State.RUNNING).order_by("name")
    guest = running.first()
    assert guest is not None, "the fleet's first host has no running guest"
    profile = create_profile(
        name="half-a-cpu",
        description="Cap every vCPU at half a host CPU, emulator on the housekeeping CPUs.",
        content={"sched": {"vcpu_period": 100000, "vcpu_quota": 50000}},
        actor=otto,
    )
    revision = profile.revisions.get()
    cr = create_change_request(
        revision=revision,
        domain_ids=[guest.pk],
        scope="live",
        reason="The batch guest starves its neighbours every night at 02:00.",
        actor=otto,
    )
    pages = [
        Page("hosts", "/"),
        Page("host", f"/hosts/{host.pk}/"),
        Page("guests", "/guests/"),
        Page("guest", f"/guests/{guest.pk}/"),
        Page("profiles", "/profiles/"),
        Page("profile", f"/profiles/{profile.pk}/"),
        Page("profile-form", "/profiles/new/"),
        Page("changes", "/changes/"),
        Page("change", f"/changes/{cr.pk}/"),
        Page("change-form", f"/changes/new/?profile={profile.pk}"),
        Page("audit", "/audit/"),
        Page("api-docs", "/api/docs/"),
        Page("not-found", "/no/such/page/"),
        Page("login", "/accounts/login/", logged_in=False),
    ]
    for name, url_name in (
        ("drift", "hosts:drift-list"),
        ("users", "hosts:user-list"),
        ("settings", "hosts:user-settings"),
    ):
        path = _optional(url_name)
        if path:
            pages.append(Page(name, path))
    return Site(base=web_server, user=ruth.username, pages=tuple(pages))


@contextlib.contextmanager
def browser_page(
    site: Site, viewport: dict[str, int], *, logged_in: bool = True, color_scheme: str = "light"
) -> Iterator[Any]:
    """Debian's Chromium at ``viewport``, logged in as the site's user through the login form (or not).

    Page scripts run under isoweb's Content-Security-Policy; only the test's own injected axe-core needs it
    lifted (``bypass_csp``), which changes nothing the product's pages do.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(
                viewport=viewport,  # type: ignore[arg-type]  # a plain dict of width and height
                color_scheme=color_scheme,  # type: ignore[arg-type]  # "light" or "dark"
                bypass_csp=True,
            )
            page = context.new_page()
            page.set_default_timeout(20000)
            if logged_in:
                page.goto(f"{site.base}/accounts/login/")
                page.fill("input[name=username]", site.user)
                page.fill("input[name=password]", PASSWORD)
                page.click("main button[type=submit]")
                page.wait_for_url(lambda url: "/accounts/login/" not in url)
            yield page
        finally:
            browser.close()


def open_page(page: Any, site: Site, target: Page) -> None:
    """Go to a page and let its scripts draw (live pages keep a websocket open, so never "network idle")."""
    page.goto(f"{site.base}{target.path}", wait_until="load")
    page.wait_for_timeout(400)
    if target.name == "api-docs":
        page.wait_for_selector(".swagger-ui .opblock", timeout=20000)


def horizontal_overflow(page: Any) -> dict[str, Any] | None:
    """None if the page fits its window's width; else how wide it is and the widest elements sticking out."""
    return page.evaluate(  # type: ignore[no-any-return]
        """() => {
          const width = document.scrollingElement.scrollWidth, inner = window.innerWidth;
          if (width <= inner) { return null; }
          const out = [];
          for (const el of document.querySelectorAll('body *')) {
            const r = el.getBoundingClientRect();
            if (r.right > inner + 1 && r.width > 0) {
              let inScroller = false;
              for (let p = el.parentElement; p; p = p.parentElement) {
                const s = getComputedStyle(p);
                const clips = ['auto', 'scroll', 'hidden'].includes(s.overflowX);
                if (clips && p.getBoundingClientRect().right <= inner + 1) {
                  inScroller = true; break;
                }
              }
              if (!inScroller) {
                out.push((el.tagName + '.' + [...el.classList].join('.')) + ' right=' + Math.round(r.right));
              }
            }
          }
          return {scrollWidth: width, innerWidth: inner, elements: out.slice(0, 8)};
        }"""
    )


def screenshot(page: Any, target: Page, viewport: dict[str, int], suffix: str = "") -> Path:
    SCREENS.mkdir(parents=True, exist_ok=True)
    path = SCREENS / f"{target.name}-{viewport['width']}x{viewport['height']}{suffix}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Run axe-core (from node_modules) on the page; return its serious and critical violations."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        """async () => {
          const result = await axe.run(document, {resultTypes: ['violations']});
          return result.violations.map(v => ({
            id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 4).map(n => n.target.join(' ') + ' :: ' + (n.failureSummary || '').split('\\n')[1])
          }));
        }"""
    )
    return [v for v in found if v["impact"] in ("serious", "critical")]
