"""Issue 12, item 3: no page makes Chromium report an error on its console: no script error, no
resource that fails to load (a missing /favicon.ico was one), no Content-Security-Policy
violation; every public and admin page, in English and German, as tests/every_page.py reaches it.
"""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from playwright.sync_api import Page, sync_playwright

from app.extensions import db
from app.models import AdminUser
from tests.browser import CHROMIUM_ARGS, watch_console
from tests.every_page import LANGUAGES, Visit, build_site, walk
from tests.helpers import Clock

pytestmark = pytest.mark.slow

DESKTOP = {"width": 1280, "height": 800}
ICO = b"\x00\x00\x01\x00"  # the first bytes of an icon file


def own_status(error: str, url: str, status: int) -> bool:
    """Whether ``error`` is Chromium's note of the page's own 4xx status: an error page answers
    with its status on purpose (a link that expired is a 410), and says so to the person."""
    return (
        status >= 400
        and error.startswith(
            f"Failed to load resource: the server responded with a status of {status} "
        )
        and error.endswith(f"({url})")
    )


def test_no_page_reports_an_error_on_the_browser_console(
    live_server: str, chromium: str, admin_user: AdminUser, clock: Clock
) -> None:
    sites = {language: build_site(clock, language) for language in LANGUAGES}
    db.session.rollback()  # the server's requests write to the database from now on
    consoles: dict[int, list[str]] = {}
    found: list[str] = []

    def watch(tab: Page) -> None:
        consoles[id(tab)] = watch_console(tab)

    def look(page: Page, language: str, visit: Visit) -> None:
        # A favicon is asked for after the page has loaded: let the browser finish.
        page.wait_for_load_state("networkidle")
        console = consoles[id(page)]
        found.extend(
            f"{language} {visit.name} ({visit.path}): {error}"
            for error in console
            if not own_status(error, page.url, visit.status)
        )
        console.clear()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        walk(browser, live_server, sites, DESKTOP, look, opened=watch)
        browser.close()

    assert found == [], "the browser's console shows errors:\n" + "\n".join(found)


def test_a_document_that_names_no_icon_finds_the_favicon(
    live_server: str, page: Page, console_errors: list[str]
) -> None:
    """A JSON answer names no icon, so Chromium asks for /favicon.ico (a 404 was an error)."""
    for path in ("/api/v1/openapi.json", "/healthz"):
        page.goto(live_server + path)
        page.wait_for_load_state("networkidle")
    page.wait_for_timeout(300)  # the icon is asked for after the load
    assert console_errors == []


def test_the_favicon_is_an_icon(client: FlaskClient) -> None:
    answer = client.get("/favicon.ico")
    assert answer.status_code == 200
    assert answer.mimetype in ("image/vnd.microsoft.icon", "image/x-icon")
    assert answer.data.startswith(ICO)
