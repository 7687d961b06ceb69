"""Every page of optin, as a person reaches it, for the tests that check all of them: the Nu HTML
Checker (tests/test_html_validity.py), axe-core (tests/test_accessibility.py) and the browser's
console (tests/test_console_errors.py).

``build_site`` puts in the database what the pages need (resources, customers with links,
imports, a suppression, a key; the admin is the ``admin_user`` fixture's) and answers the list
of ``Visit``s. A visit is a page opened by its address, or the answer to a form sent from a
page; ``fetch`` makes it with Flask's test client, ``open_in_browser`` with Playwright in
Chromium. Each language has a customer of its own, since erasing or unsubscribing changes what
the next visit would see.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import current_app
from flask.testing import FlaskClient
from playwright.sync_api import Browser, Page
from werkzeug.test import TestResponse

from app import queries
from app.i18n import LANGUAGES as TRANSLATED
from app.links import confirm_url, data_url, links_for
from app.services import imports
from app.services.admin_actions import suppress_address
from app.services.api_keys import create_key
from app.services.resources import create_resource
from app.services.statuses import Actor
from app.services.subscriptions import confirm_signup, request_signup
from app.tokens import LinkTarget
from tests import factories
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD  # the admin_user fixture's
from tests.helpers import ALICE, Clock, confirm_target, path_of, submit

# The languages every page is checked in: each that optin has, as a browser asks for it.
LANGUAGES = {code: code for code in TRANSLATED}
IMPORT_CSV = b"email,name,status\nnew@example.com,New,subscribed\nnot-an-address,X,subscribed\n"
VISITOR = Actor(ip="192.0.2.7", user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0")
# How many times a form is sent at most to meet its rate limit (SIGNUP_LIMIT_PER_ADDRESS is 5).
TRIES_TO_BE_LIMITED = 20


@dataclass(frozen=True)
class Visit:
    """One page: ``path`` opened, then, when ``action`` is set, the form posting there sent with
    ``fields`` (a checkbox's value True); ``until`` sends it again until that status answers."""

    name: str
    path: str
    status: int = 200
    admin: bool = False
    action: str | None = None
    fields: dict[str, str | bool] = field(default_factory=dict)
    until: int | None = None


def signed_up(email: str, slug: str, *, name: str | None = None) -> LinkTarget:
    """A signup through the public form's service, waiting for its confirmation: what the
    link in its email names (with the form and the consent text shown, for the proof)."""
    request_signup(email, [slug], name=name, form=f"subscribe/{slug}", actor=VISITOR)
    resource = queries.resource_by_slug(slug)
    assert resource is not None
    text = queries.current_consent_text(resource.id)
    return confirm_target(email, resource, f"subscribe/{slug}", text.id if text else None)


def _customer(email: str, clock: Clock) -> list[Visit]:
    """A customer's pages by their links: signed up to two resources and confirmed, with a
    third signup waiting for its confirmation; expired links made in the past."""
    for slug in ("newsletter", "offers"):
        confirm_signup(signed_up(email, slug), actor=VISITOR)
    pending = signed_up(email, "weekly")
    profile = queries.profile_by_email(email)
    newsletter = queries.resource_by_slug("newsletter")
    assert profile is not None and newsletter is not None
    links = links_for(profile.id, profile.link_key, newsletter.id)
    unsubscribe = path_of(links.unsubscribe_url)
    preferences = path_of(links.preferences_url)
    confirm = path_of(confirm_url(pending))
    data = path_of(data_url(profile.id, profile.link_key))
    ago = current_app.config["CONFIRM_MAX_AGE"] + 3600  # the longer of the two lifetimes
    clock.advance(-ago)
    expired_confirm = path_of(confirm_url(pending))
    expired_data = path_of(data_url(profile.id, profile.link_key))
    clock.advance(ago)
    return [
        Visit("confirm", confirm),
        Visit("confirmed", confirm, action=confirm),
        Visit("confirm-expired", expired_confirm, status=410),
        Visit("unsubscribe", unsubscribe),
        Visit("unsubscribed", unsubscribe, action=unsubscribe),
        Visit("preferences", preferences),
        Visit("data", data),
        Visit("data-expired", expired_data, status=410),
        Visit("erased", data, action=f"{data}/erase", fields={"understood": True}),
    ]


def build_site(clock: Clock, language: str) -> list[Visit]:
    """What the pages need, in the database, and every page in ``language``'s turn. Call it
    once for each language: the resources and the admin's things are made on the first call."""
    if queries.resource_by_slug("newsletter") is None:
        _shared_records()
    customer = _customer(f"customer-{language}@example.com", clock)
    return [*_public_pages(), *customer, *_error_pages(), *_admin_pages(language)]


def _shared_records() -> None:
    create_resource("newsletter", "The Newsletter", description="News every month.")
    create_resource("offers", "Offers", double_opt_in=False)
    create_resource("weekly", "The Weekly", description="Every Friday.")
    create_resource("brand", "Brand news", channels=["email", "sms"], public=False)
    maria = signed_up("maria.lopez@example.com", "newsletter", name="María López")
    confirm_signup(maria, actor=VISITOR)
    factories.complaint("maria.lopez@example.com", "newsletter")
    factories.hard_bounce("bounced@example.com")
    suppress_address("blocked@example.com", actor=Actor(name=ADMIN_EMAIL, reason="asked by phone"))
    create_key("sender-prod")


def _public_pages() -> list[Visit]:
    signup = "/subscribe/newsletter"
    return [
        Visit("index", "/"),
        Visit("subscribe-one", signup),
        Visit("subscribe-one-errors", signup, 400, action=signup, fields={"email": "not-an-email"}),
        Visit("subscribe-all", "/subscribe"),
        Visit("check-inbox", signup, action=signup, fields={"email": "new@example.com"}),
        Visit("preferences-by-email", "/preferences"),
        Visit("preferences-sent", "/preferences", action="/preferences", fields={"email": ALICE}),
    ]


def _error_pages() -> list[Visit]:
    return [
        Visit("error-404", "/no-such-page", 404),
        Visit("error-404-admin", "/admin/resources/999999", 404, admin=True),
        Visit("error-400", "/confirm/not-a-token", 400),
        # The rate limit of the form that emails a preference link, met by sending it again.
        Visit(
            "error-429",
            "/preferences",
            429,
            action="/preferences",
            fields={"email": "limited@example.com"},
            until=429,
        ),
    ]


def _admin_pages(language: str) -> list[Visit]:
    profile = queries.profile_by_email("maria.lopez@example.com")
    newsletter = queries.resource_by_slug("newsletter")
    assert profile is not None and newsletter is not None
    uploaded = _import_job()
    finished = _import_job()
    imports.run_job(finished)
    return [
        Visit("admin-login", "/admin/login"),  # the visitor's tab: not logged in
        Visit("admin-dashboard", "/admin/dashboard", admin=True),
        Visit("admin-profiles", "/admin/profiles", admin=True),
        Visit("admin-profiles-search", "/admin/profiles?q=mar", admin=True),
        Visit("admin-profile", f"/admin/profiles/{profile.id}", admin=True),
        Visit("admin-resources", "/admin/resources", admin=True),
        Visit("admin-resource-new", "/admin/resources/new", admin=True),
        Visit("admin-resource-edit", f"/admin/resources/{newsletter.id}", admin=True),
        Visit("admin-suppressions", "/admin/suppressions", admin=True),
        Visit("admin-imports", "/admin/imports", admin=True),
        Visit("admin-import-preview", f"/admin/imports/{uploaded}", admin=True),
        Visit("admin-import-job", f"/admin/imports/{finished}", admin=True),
        Visit("admin-exports", "/admin/exports", admin=True),
        Visit("admin-api-keys", "/admin/api-keys", admin=True),
        Visit(
            "admin-api-key-created",
            "/admin/api-keys",
            201,
            admin=True,
            action="/admin/api-keys",
            fields={"name": f"sender-{language}"},
        ),
    ]


def _import_job() -> int:
    path = imports.save_upload(io.BytesIO(IMPORT_CSV), "people.csv")
    return imports.create_job(path, "people.csv", "newsletter", ADMIN_EMAIL).id


def in_order(sites: dict[str, list[Visit]]) -> list[tuple[str, Visit]]:
    """Every language's visits, those that meet a rate limit last: the limits count per IP
    address, and every visit comes from 127.0.0.1."""
    visits = [(language, visit) for language, site in sites.items() for visit in site]
    return sorted(visits, key=lambda pair: pair[1].until is not None)


# --- Making a visit -------------------------------------------------------------------------------


def fetch(client: FlaskClient, visit: Visit) -> TestResponse:
    """The page of ``visit`` through the test client (which keeps the admin's session)."""
    if visit.action is None:
        answer = client.get(visit.path)
    else:
        for _try in range(TRIES_TO_BE_LIMITED if visit.until else 1):
            answer = submit(client, visit.action, dict(visit.fields), form_path=visit.path)
            if answer.status_code == (visit.until or answer.status_code):
                break
    assert answer.status_code == visit.status, (visit.name, answer.status_code)
    return answer


def log_in(page: Page, base: str) -> None:
    """The admin logs in through the login form."""
    page.goto(base + "/admin/login")
    page.locator('[name="email"]').fill(ADMIN_EMAIL)
    page.locator('[name="password"]').fill(ADMIN_PASSWORD)
    with page.expect_navigation():
        page.locator('main form[method="post"] [type="submit"]').click()
    assert "/admin/login" not in page.url, "the admin could not log in"


def open_in_browser(page: Page, base: str, visit: Visit) -> None:
    """The page of ``visit`` in the browser: opened, or reached by filling in and sending the
    form (the one posting to ``action``, or the page's only form that names none)."""
    answer = page.goto(base + visit.path)
    if visit.action is not None:
        form = page.locator(
            f'main form[action="{visit.action}"], main form[method="post"]:not([action])'
        ).first
        for _try in range(TRIES_TO_BE_LIMITED if visit.until else 1):
            if _try:
                page.goto(base + visit.path)
            for name, value in visit.fields.items():
                box = form.locator(f'[name="{name}"]')
                if value is True:
                    box.check()
                else:
                    box.fill(str(value))
            with page.expect_navigation() as navigation:
                form.locator('[type="submit"]').first.click()
            answer = navigation.value
            if answer is not None and answer.status == (visit.until or answer.status):
                break
    assert answer is not None and answer.status == visit.status, (visit.name, answer)


def walk(
    browser: Browser,
    base: str,
    sites: dict[str, list[Visit]],
    viewport: dict[str, int],
    look: Callable[[Page, str, Visit], None],
    opened: Callable[[Page], None] = lambda _tab: None,
) -> None:
    """Every visit of ``sites`` in the browser, in order, then ``look(page, language, visit)``.
    Each language has a visitor's tab and a logged-in admin's, in browser contexts of their own
    whose Accept-Language is that language's; ``opened(tab)`` sees each tab before its first
    page."""
    tabs: dict[tuple[str, bool], Page] = {}
    for language, locale in LANGUAGES.items():
        for admin in (False, True):
            context = browser.new_context(locale=locale, viewport=viewport)  # type: ignore[arg-type]
            tabs[language, admin] = context.new_page()
            opened(tabs[language, admin])
            if admin:
                log_in(tabs[language, admin], base)
    for language, visit in in_order(sites):
        page = tabs[language, visit.admin]
        open_in_browser(page, base, visit)
        look(page, language, visit)
