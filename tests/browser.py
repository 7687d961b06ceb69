"""Fixtures for the tests in a real browser: headless Chromium (Debian's package) driven by
Playwright, against optin served on 127.0.0.1 with its mail sent to the real SMTP server.

Loaded for every test module by ``pytest_plugins`` in tests/conftest.py, so a browser test asks
for ``live_server``, ``page`` and ``console_errors`` like any other fixture. Without Chromium a
browser test skips and says why, unless REQUIRE_BROWSER is set (as .ci/run does), where it fails
instead. Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from playwright.sync_api import ConsoleMessage, Page, sync_playwright
from werkzeug.serving import make_server

from tests.smtp import SmtpServer, free_port

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
# Flags for a sandboxed machine with no network: no GPU, no background requests to the outside.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def chromium() -> str:
    """The Chromium executable; a test that needs it skips without it, or fails in CI."""
    if not Path(CHROMIUM).exists():
        reason = f"Chromium not found at {CHROMIUM} (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture
def live_server(
    database_url: str, _schema: None, smtp_server: SmtpServer, app: Flask
) -> Iterator[str]:
    """optin served over HTTP on a free loopback port, as `make run` serves it: the web process
    sends each queued email right after its response."""
    from tests.conftest import mail_app

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    served = mail_app(database_url, smtp_server.port, BASE_URL=base)
    server = make_server("127.0.0.1", port, served, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def page(chromium: str) -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        yield context.new_page()
        browser.close()


def watch_console(page: Page) -> list[str]:
    """Every error the browser reports on ``page`` from now on: a script error, a resource that
    failed to load, and a Content-Security-Policy violation (Chromium logs each as an error)."""
    errors: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(f"{message.text} ({message.location.get('url')})")

    page.on("console", console)
    page.on("pageerror", lambda error: errors.append(f"{error.name}: {error.message}"))
    return errors


@pytest.fixture
def console_errors(page: Page) -> list[str]:
    """The browser's errors during a test; each flow ends by asserting there were none."""
    return watch_console(page)


def shot(page: Page, name: str) -> None:
    """A full-page screenshot, for a person to look at (the README's come from these)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
