"""Issue 12, item 3: axe-core finds no violation of WCAG 2.2 AA or of its best practices on any
page, public or admin, in English and German, on a phone and on a desktop screen.

axe runs in the real headless Chromium against the served app (tests/browser.py). Its script is
evaluated through Playwright's ``page.evaluate``, which the DevTools protocol runs outside the
page's Content-Security-Policy: the pages keep their real CSP (no inline script) and need no
``bypass_csp``. Each page is checked at both sizes without loading it twice: the viewport is
resized and axe runs again, since a form's answer page cannot be had twice without sending
the form twice (and every form counts towards the rate limits).
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, sync_playwright

from app.extensions import db
from app.models import AdminUser
from tests.browser import CHROMIUM_ARGS
from tests.checkers import axe_source
from tests.every_page import LANGUAGES, Visit, build_site, walk
from tests.helpers import Clock

pytestmark = pytest.mark.slow

VIEWPORTS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 800}}
# WCAG 2.0, 2.1 and 2.2 at levels A and AA, and axe's best practices.
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]
RUN_AXE = """tags => axe
    .run(document, {runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]})
    .then(result => result.violations.map(v => ({
        id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(node => node.target.join(" ")),
    })))"""


def violations(page: Page, source: str) -> list[dict[str, Any]]:
    """What axe finds on the page as it is shown now."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(source)
    found: list[dict[str, Any]] = page.evaluate(RUN_AXE, TAGS)
    return found


def test_axe_finds_no_violation_on_any_page(
    live_server: str, chromium: str, admin_user: AdminUser, clock: Clock
) -> None:
    source = axe_source()
    sites = {language: build_site(clock, language) for language in LANGUAGES}
    db.session.rollback()  # the server's requests write to the database from now on
    found: list[str] = []
    checked: list[str] = []

    def look(page: Page, language: str, visit: Visit) -> None:
        for size, viewport in VIEWPORTS.items():
            page.set_viewport_size(viewport)  # type: ignore[arg-type]
            for violation in violations(page, source):
                found.append(
                    f"{language} {size} {visit.name} ({visit.path}): {violation['id']} "
                    f"[{violation['impact']}] {violation['help']}: {violation['nodes'][:3]}"
                )
            checked.append(f"{language} {size} {visit.name}")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        walk(browser, live_server, sites, VIEWPORTS["desktop"], look)
        browser.close()

    assert found == [], "axe finds violations:\n" + "\n".join(found)
    assert len(checked) == 2 * sum(len(site) for site in sites.values())


def test_axe_reports_a_violation_with_its_page(chromium: str) -> None:
    """The test above can fail: an image without a text alternative is reported."""
    source = axe_source()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_content(
            '<!doctype html><html lang="en"><head><title>x</title></head>'
            '<body><main><h1>x</h1><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw="></main>'
            "</body></html>"
        )
        found = [violation["id"] for violation in violations(page, source)]
        browser.close()
    assert found == ["image-alt"]
