"""The whole flow in a real browser: headless Chromium (Debian's package) driven by Playwright,
against the app served on 127.0.0.1, with the emails received by a real SMTP server.

Screenshots of each page are saved under test-artifacts/screenshots/. The fixtures, and what
happens without Chromium, are in tests/browser.py.
"""

from __future__ import annotations

import time
from email.message import EmailMessage

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from app import queries
from app.extensions import db
from app.models import Resource
from app.services import eligibility
from app.status import Decision
from tests.browser import CHROMIUM_ARGS, shot, watch_console
from tests.helpers import text_of
from tests.smtp import SmtpServer

pytestmark = pytest.mark.slow


def decide(email: str, resource: str | None = None) -> Decision:
    """The send decision as the server's latest commit has it (ends this thread's old read)."""
    db.session.rollback()
    return eligibility.decide(email, resource)


def wait_for_mail(smtp_server: SmtpServer, subject_part: str, seconds: float = 10) -> EmailMessage:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for message in reversed(smtp_server.messages):
            if subject_part in message["Subject"]:
                return message
        time.sleep(0.05)
    raise AssertionError(
        f"no email with {subject_part!r}: {[m['Subject'] for m in smtp_server.messages]}"
    )


def link(message: EmailMessage, base: str, prefix: str) -> str:
    for word in text_of(message).split():
        if word.startswith(base + prefix):
            return word
    raise AssertionError(f"no {prefix} link in {text_of(message)}")


def test_sign_up_confirm_manage_and_unsubscribe_in_a_real_browser(
    live_server: str,
    page: Page,
    console_errors: list[str],
    smtp_server: SmtpServer,
    newsletter: Resource,
    offers: Resource,
) -> None:
    email = "alice@example.com"

    # Sign up from the landing page.
    page.goto(live_server + "/")
    shot(page, "01-landing")
    page.get_by_role("link", name="Subscribe to The Newsletter").click()
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Name (optional)").fill("Alice")
    shot(page, "02-signup")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    shot(page, "03-check-inbox")

    # Open the link from the email: a page with a button; the click confirms.
    confirm_url = link(wait_for_mail(smtp_server, "Please confirm"), live_server, "/confirm/")
    page.goto(confirm_url)
    expect(page.get_by_role("heading", name="Confirm your subscription")).to_be_visible()
    assert decide(email, "newsletter").reason == "global_unconfirmed"  # the GET changed nothing
    shot(page, "04-confirm")
    page.get_by_role("button", name="Confirm my subscription").click()
    expect(page.get_by_role("heading", name="Thank you, you are subscribed")).to_be_visible()
    shot(page, "05-confirmed")
    assert decide(email, "newsletter").allowed

    # The welcome email carries the preferences and unsubscribe links.
    welcome = wait_for_mail(smtp_server, "Welcome to The Newsletter")
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    page.goto(link(welcome, live_server, "/preferences/"))
    expect(page.get_by_role("heading", name="Your preferences")).to_be_visible()
    page.get_by_label("Offers").check()
    page.get_by_role("button", name="Save my preferences").click()
    expect(page.get_by_role("status")).to_have_text("Your preferences are saved.")
    shot(page, "06-preferences")
    assert decide(email, "offers").allowed

    # Unsubscribe from one resource through the link in the email.
    page.goto(link(welcome, live_server, "/unsubscribe/"))
    page.get_by_label("The Newsletter only").check()
    shot(page, "07-unsubscribe")
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
    shot(page, "08-unsubscribed")
    assert decide(email, "newsletter").reason == "subscription_unsubscribed"
    assert decide(email, "offers").allowed

    # Then from everything, on the preference page.
    page.get_by_role("link", name="Change your preferences").click()
    page.get_by_role("button", name="Unsubscribe from everything").click()
    expect(page.get_by_role("status")).to_contain_text("unsubscribed from everything")
    shot(page, "09-unsubscribed-everything")
    assert decide(email, "offers").reason == "global_unsubscribed"
    assert console_errors == []  # a CSP violation on any page of the flow would be one

    # The data itself only through a fresh link sent to the address.
    page.get_by_role("button", name="Email me a link to download or erase my data").click()
    expect(page.get_by_role("status")).to_contain_text("We sent a link to alice@example.com")
    data_mail = wait_for_mail(smtp_server, "Your link to download or erase your data")
    page.goto(link(data_mail, live_server, "/data/"))
    expect(page.get_by_role("heading", name="Your data", exact=True)).to_be_visible()
    shot(page, "09b-your-data")
    page.get_by_label("I understand").check()
    page.get_by_role("button", name="Erase my data").click()
    expect(page.get_by_role("heading", name="Your data is erased")).to_be_visible()
    db.session.rollback()  # the server's latest commit
    assert queries.profile_by_email(email) is None


def test_the_signup_page_fits_a_phone(
    live_server: str, chromium: str, newsletter: Resource
) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        phone = browser.new_context(viewport={"width": 375, "height": 740}, device_scale_factor=2)
        page = phone.new_page()
        console_errors = watch_console(page)
        page.goto(live_server + "/subscribe/newsletter")
        scroll_width = page.evaluate("document.documentElement.scrollWidth")
        assert scroll_width <= 375  # nothing sticks out sideways
        shot(page, "10-signup-phone")
        # Keyboard only: the label focuses the field, Enter submits.
        page.get_by_label("Email address").fill("bob@example.com")
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
        browser.close()
    assert console_errors == []
