"""The admin view in a real browser: headless Chromium (Debian's package) driven by Playwright
against optin served on 127.0.0.1, as tests/test_browser.py does for the public pages.

Log in, find a profile by searching, suspend it until tomorrow with a reason, see the change and
the reason in its history, lift a suppression. Screenshots go to test-artifacts/screenshots/ with
the public pages' ones; docs/screenshots/admin-*.png in the README are copies of a run's.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from app import queries
from app.addresses import email_hash
from app.extensions import db
from app.models import AdminUser, Resource
from app.services.statuses import Actor
from app.services.subscriptions import confirm_signup, request_signup
from tests import factories
from tests.browser import shot
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD
from tests.helpers import confirm_target

pytestmark = pytest.mark.slow

FIRST_NAMES = [
    "Alice",
    "Bruno",
    "Chiara",
    "Dmitri",
    "Emma",
    "Farid",
    "Greta",
    "Hiro",
    "Ines",
    "Jonas",
]


def a_month_of_activity(slugs: list[str]) -> None:
    """Signups, confirmations, unsubscribes, bounces and complaints spread over 30 days, so the
    dashboard has something to draw (a fixed seed: the same picture every run)."""
    rng = random.Random(5)
    now = datetime.now(UTC)
    for number in range(120):
        when = now - timedelta(days=rng.randrange(30), hours=rng.randrange(12))
        address = f"{FIRST_NAMES[number % 10].lower()}.{number}@example.org"
        slug = slugs[number % len(slugs)]
        factories.signup(address, slug, name=f"{FIRST_NAMES[number % 10]} {number}", now=when)
        if rng.random() < 0.8:
            factories.confirm(address, slug, now=when + timedelta(minutes=5))
            roll = rng.random()
            later = when + timedelta(hours=6)
            if roll < 0.12:
                factories.unsubscribe(address, slug, now=later)
            elif roll < 0.17:
                factories.hard_bounce(address, now=later)
            elif roll < 0.2:
                factories.complaint(address, slug, now=later)


def confirmed_profile(email: str, name: str, resource: Resource) -> None:
    request_signup(
        email,
        [resource.slug],
        name=name,
        form=f"subscribe/{resource.slug}",
        actor=Actor(ip="198.51.100.23"),
    )
    text = queries.current_consent_text(resource.id)
    target = confirm_target(email, resource, f"subscribe/{resource.slug}", text.id)
    confirm_signup(
        target,
        actor=Actor(ip="198.51.100.23", user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"),
    )


def save_for_readme(browser_page: Page, name: str) -> None:
    """A screenshot the README shows (copied from test-artifacts/ by hand: a test run must not
    change the files under version control)."""
    shot(browser_page, name)


def test_an_admin_finds_suspends_and_lifts_in_a_real_browser(
    live_server: str,
    page: Page,
    console_errors: list[str],
    admin_user: AdminUser,
    newsletter: Resource,
    offers: Resource,
) -> None:
    a_month_of_activity(["newsletter", "offers"])
    factories.signup("cleo@example.com", "offers", name="Cleo")
    factories.complaint("cleo@example.com", "offers")
    confirmed_profile("maria.lopez@example.com", "María López", newsletter)
    factories.hard_bounce("bounced@example.com")

    # Log in; the admin's front page is the dashboard.
    page.goto(live_server + "/admin/")
    page.get_by_label("Email address").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Dashboard", exact=True)).to_be_visible()
    expect(page.get_by_role("img", name="Signups per day")).to_be_visible()
    save_for_readme(page, "admin-dashboard")

    # Find the profile by the start of its name, in another case.
    page.get_by_role("navigation", name="Admin sections").get_by_role(
        "link", name="Profiles"
    ).click()
    # Before anything is typed, the newest profiles; this week's complainers are one choice.
    expect(page.locator("tbody tr").first).to_contain_text("maria.lopez@example.com")
    save_for_readme(page, "admin-profiles")
    page.get_by_label("Global status").select_option("complainer")
    page.get_by_label("Created").select_option("7d")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("link", name="cleo@example.com")).to_be_visible()
    expect(page.get_by_role("link", name="maria.lopez@example.com")).to_have_count(0)
    for status in page.locator("tbody td:nth-child(3)").all_inner_texts():
        assert status == "complainer"
    page.get_by_label("Global status").select_option("")
    page.get_by_label("Created").select_option("")
    page.get_by_label("Email address or name starts with").fill("MARÍA")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="maria.lopez@example.com").click()
    expect(page.get_by_role("heading", name="maria.lopez@example.com")).to_be_visible()

    # Suspend it until tomorrow, saying why.
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).replace(second=0, microsecond=0)
    form = page.locator("section", has=page.get_by_role("heading", name="Change the global status"))
    form.get_by_label("New global status").select_option("suspended")
    form.get_by_label("Suspended until (UTC; for suspended)").fill(
        tomorrow.strftime("%Y-%m-%dT%H:%M")
    )
    form.get_by_label("Reason (needed for invalid)").fill("On holiday, asked by phone")
    form.get_by_role("button", name="Change").click()
    expect(page.get_by_role("status")).to_have_text("Changed the global status to suspended.")
    expect(page.locator("#global-status")).to_have_text("suspended")
    last = page.locator("#history tbody tr").last
    expect(last).to_contain_text("subscribed → suspended")
    expect(last).to_contain_text("On holiday, asked by phone")
    expect(last).to_contain_text(ADMIN_EMAIL)
    save_for_readme(page, "admin-profile")
    db.session.rollback()  # read what the server committed, not this thread's old snapshot
    profile = queries.profile_by_email("maria.lopez@example.com")
    assert profile is not None and profile.suspended_until == tomorrow

    # Lift a suppression, saying why.
    page.get_by_role("navigation", name="Admin sections").get_by_role(
        "link", name="Suppression list"
    ).click()
    page.get_by_label("Email address starts with").fill("bounced")
    page.get_by_role("button", name="Search").click()
    page.get_by_label("Reason to lift bounced@example.com").fill(
        "Mailbox fixed, checked with the customer"
    )
    page.get_by_role("button", name="Lift bounced@example.com").click()
    expect(page.get_by_role("status")).to_have_text(
        "Lifted the suppression of bounced@example.com."
    )
    shot(page, "admin-suppressions")
    db.session.rollback()
    assert queries.suppression_of(email_hash("bounced@example.com")) is None
    assert console_errors == []  # a CSP violation on any admin page would be one
