"""The admin's CSV import in a real browser: headless Chromium (Debian's package) driven by
Playwright against the app served on 127.0.0.1. Log in, upload a small CSV, read the preview,
start it, watch the page refresh itself until the import is done, and see the rejected rows.

Like every browser test, it skips without Chromium unless REQUIRE_BROWSER is set
(tests/browser.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from app.extensions import db
from app.models import AdminUser, Resource
from app.services import eligibility
from tests.browser import shot
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD

pytestmark = pytest.mark.slow

ROWS = ["email,name,status,consent date"]
ROWS += [f"person{i}@example.com,Person {i},subscribed,2024-03-0{1 + i % 9}" for i in range(40)]
ROWS += [
    "not-an-address,Nobody,subscribed,2024-03-01",
    "late@example.com,Late,subscribed,",
    "odd@example.com,Odd,sometimes,",
]


def test_import_a_csv_and_watch_it_finish(
    live_server: str,
    page: Page,
    console_errors: list[str],
    tmp_path: Path,
    admin_user: AdminUser,
    newsletter: Resource,
) -> None:
    csv_file = tmp_path / "subscribers.csv"
    csv_file.write_text("\n".join(ROWS) + "\n", encoding="utf-8")

    page.goto(live_server + "/admin/imports")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("Email address").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()

    expect(page.get_by_role("heading", name="Import subscribers")).to_be_visible()
    page.get_by_label("CSV file").set_input_files(str(csv_file))
    page.get_by_label("Resource for rows without a resource column").select_option("newsletter")
    page.get_by_role("button", name="Upload and preview").click()

    expect(page.get_by_role("heading", name="Preview")).to_be_visible()
    expect(page.get_by_text("43 rows in the file.")).to_be_visible()
    expect(page.get_by_role("cell", name="unknown status: sometimes")).to_be_visible()
    shot(page, "20-import-preview")
    page.get_by_role("button", name="Start the import").click()

    # The page reloads itself every second until the import is done.
    expect(page.get_by_text("The import is done.")).to_be_visible(timeout=20_000)
    expect(page.locator("#imported")).to_have_text("40")
    expect(page.locator("#rejected")).to_have_text("3")
    rejected = page.get_by_role("table").last
    expect(rejected).to_contain_text("malformed address")
    expect(rejected).to_contain_text("subscribed needs proof of consent")
    expect(rejected.get_by_role("cell", name="44", exact=True)).to_be_visible()
    shot(page, "21-import-done")

    db.session.rollback()
    assert eligibility.decide("person7@example.com", "newsletter").allowed
    assert not eligibility.decide("late@example.com", "newsletter").allowed
    assert console_errors == []
