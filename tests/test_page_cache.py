"""The public forms' pages kept per process (app/views/page_cache.py): each visitor gets the page
with a token of their own that works, in their language, under the app's mount point, naming what
their link confirms; a form with errors is never taken from the kept pages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask, template_rendered
from flask.testing import FlaskClient
from wtforms.form import BaseForm

from app.links import links_for
from app.models import Resource
from app.services.resources import create_resource
from tests.helpers import ALICE, link_to, path_of, run_worker, submit, subscribed
from tests.smtp import SmtpServer

CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
GERMAN = {"Accept-Language": "de-DE,de;q=0.9"}
BOB = "bob@example.com"


def token_of(page: str) -> str:
    found = CSRF.findall(page)
    assert len(found) == 1, found
    return str(found[0])


@contextmanager
def rendered(app: Flask) -> Iterator[list[str]]:
    """The names of the templates rendered while the block runs."""
    names: list[str] = []

    def note(_app: Flask, template: object, **_context: object) -> None:
        names.append(getattr(template, "name", "?"))

    template_rendered.connect(note, app)
    try:
        yield names
    finally:
        template_rendered.disconnect(note, app)


def test_each_visitor_gets_the_same_page_with_a_token_of_their_own_that_works(
    app: Flask, newsletter: Resource, smtp_server: SmtpServer
) -> None:
    first, second = app.test_client(), app.test_client()
    # Each visitor in an app context of their own: under the fixture's, requests share ``g``,
    # where Flask-WTF keeps the request's token.
    with app.app_context():
        page_one = first.get("/subscribe/newsletter").text
    with app.app_context():
        page_two = second.get("/subscribe/newsletter").text
    token_one, token_two = token_of(page_one), token_of(page_two)
    assert token_one != token_two
    assert page_one.replace(token_one, "TOKEN") == page_two.replace(token_two, "TOKEN")
    assert "Subscribe to The Newsletter" in page_two
    form = {"email": ALICE, "website": ""}
    with app.app_context():
        answer = second.post("/subscribe/newsletter", data={"csrf_token": token_two, **form})
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    with app.app_context():
        refused = first.post("/subscribe/newsletter", data={"csrf_token": token_two, **form})
    assert refused.status_code == 400  # another visitor's token is not this one's


def test_the_second_visitor_costs_no_rendering(app: Flask, newsletter: Resource) -> None:
    app.test_client().get("/subscribe/newsletter")
    app.test_client().get("/preferences")
    with rendered(app) as names:
        assert app.test_client().get("/subscribe/newsletter").status_code == 200
        assert app.test_client().get("/preferences").status_code == 200
    assert names == []


def test_the_second_visitor_of_a_form_page_costs_no_form_and_their_token_works(
    app: Flask, newsletter: Resource, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kept page needs only the visitor's CSRF token: the form is made only to render it."""
    made: list[str] = []
    bind = BaseForm.__init__

    def noted(form: BaseForm, *args: Any, **kwargs: Any) -> None:
        made.append(type(form).__name__)
        bind(form, *args, **kwargs)

    monkeypatch.setattr(BaseForm, "__init__", noted)
    with app.app_context():
        app.test_client().get("/subscribe/newsletter")
        app.test_client().get("/preferences")
    assert made == ["SignupForm", "PreferencesRequestForm"]  # to render each page once
    visitor = app.test_client()
    with app.app_context():
        made.clear()
        token = token_of(visitor.get("/subscribe/newsletter").text)
        assert made == []
        assert token_of(visitor.get("/preferences").text) and made == []
    with app.app_context():
        answer = visitor.post(
            "/subscribe/newsletter", data={"csrf_token": token, "email": ALICE, "website": ""}
        )
    assert answer.status_code == 200 and "Check your inbox" in answer.text


def test_a_head_of_a_form_page_answers_as_its_get(
    client: FlaskClient, newsletter: Resource
) -> None:
    for path in ("/subscribe/newsletter", "/preferences"):
        assert client.head(path).status_code == 200


def test_each_language_has_its_own_page(client: FlaskClient, newsletter: Resource) -> None:
    assert "Subscribe to The Newsletter" in client.get("/subscribe/newsletter").text
    german = client.get("/subscribe/newsletter", headers=GERMAN).text
    assert '<html lang="de">' in german and "The Newsletter abonnieren" in german
    english = client.get("/subscribe/newsletter").text
    assert '<html lang="en">' in english and "Subscribe to The Newsletter" in english


def test_the_links_follow_the_mount_point(client: FlaskClient, newsletter: Resource) -> None:
    mounted = client.get("/subscribe/newsletter", base_url="http://localhost/news").text
    assert 'action="/news/subscribe/newsletter"' in mounted
    assert 'href="/news/static/style.css' in mounted
    plain = client.get("/subscribe/newsletter").text
    assert 'action="/subscribe/newsletter"' in plain and "/news/" not in plain


def test_a_form_with_errors_shows_them_and_the_next_visitor_gets_an_empty_form(
    app: Flask, newsletter: Resource
) -> None:
    client = app.test_client()
    client.get("/subscribe/newsletter")
    wrong = submit(client, "/subscribe/newsletter", {"email": "not an address", "website": ""})
    assert wrong.status_code == 400
    assert "Enter an email address like name@example.com." in wrong.text
    assert 'value="not an address"' in wrong.text
    fresh = app.test_client().get("/subscribe/newsletter").text
    assert "not an address" not in fresh and "has-error" not in fresh


def test_each_resource_has_its_own_form(client: FlaskClient, newsletter: Resource) -> None:
    create_resource("weekly", "Weekly")
    assert "Subscribe to The Newsletter" in client.get("/subscribe/newsletter").text
    weekly = client.get("/subscribe/weekly").text
    assert "Subscribe to Weekly" in weekly and "The Newsletter" not in weekly
    assert 'action="/subscribe/weekly"' in weekly


def test_a_confirmation_page_names_what_its_own_link_confirms(
    app: Flask, newsletter: Resource, smtp_server: SmtpServer
) -> None:
    create_resource("weekly", "Weekly")
    for email, slug in ((ALICE, "newsletter"), (BOB, "weekly")):
        with app.app_context():  # a visitor of their own (see the first test)
            submit(app.test_client(), f"/subscribe/{slug}", {"email": email, "website": ""})
    run_worker()
    links = {m["To"]: link_to(m, "/confirm/") for m in smtp_server.messages}
    alices = app.test_client().get(links[ALICE]).text
    bobs = app.test_client().get(links[BOB]).text
    assert "<strong>The Newsletter</strong>" in alices and "Weekly" not in alices
    assert "<strong>Weekly</strong>" in bobs and "The Newsletter" not in bobs
    client = app.test_client()
    with app.app_context():
        token = token_of(client.get(links[BOB]).text)
        answer = client.post(links[BOB], data={"csrf_token": token})
    assert answer.status_code == 200 and "you are subscribed" in answer.text


def test_check_your_inbox_names_each_visitors_own_address_escaped(
    app: Flask, newsletter: Resource, smtp_server: SmtpServer
) -> None:
    pages = {}
    for email in (ALICE, "o'brien@example.com"):
        with app.app_context():  # a visitor of their own (see the first test)
            answer = submit(app.test_client(), "/subscribe/newsletter", {"email": email})
        assert answer.status_code == 200
        pages[email] = answer.text
    assert f"If {ALICE} can receive our emails" in pages[ALICE]
    assert "If o&#39;brien@example.com can receive" in pages["o'brien@example.com"]
    assert "o&#39;brien" not in pages[ALICE] and ALICE not in pages["o'brien@example.com"]


def test_each_unsubscribed_visitor_gets_their_own_preference_link(
    app: Flask, newsletter: Resource
) -> None:
    for email in (ALICE, BOB):
        profile = subscribed(email, "newsletter")
        link = path_of(links_for(profile.id, profile.link_key, newsletter.id).unsubscribe_url)
        with app.app_context():  # a visitor of their own (see the first test)
            client = app.test_client()
            page = submit(client, link, {"scope": "resource"}).text
            assert "You will no longer receive The Newsletter." in page
            preferences = re.search(r'href="(/preferences/[^"]+)"', page)
            assert preferences, page
            assert email in client.get(preferences.group(1)).text


def test_an_unsubscribe_page_offers_its_own_resource(app: Flask, newsletter: Resource) -> None:
    weekly = create_resource("weekly", "Weekly")
    profile = subscribed(ALICE, "newsletter", "weekly")
    for resource_id, name in ((newsletter.id, "The Newsletter"), (None, None)):
        link = path_of(links_for(profile.id, profile.link_key, resource_id).unsubscribe_url)
        page = app.test_client().get(link).text
        if name:
            assert f"{name} only" in page and "Weekly only" not in page
        else:
            assert "You will receive nothing more from us." in page and " only" not in page
    link = path_of(links_for(profile.id, profile.link_key, weekly.id).unsubscribe_url)
    assert "Weekly only" in app.test_client().get(link).text


def test_an_error_page_is_kept_by_status_and_language(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/subscribe/nothing-here").status_code == 404
    with rendered(app) as names:
        missing = client.get("/subscribe/nothing-here")
    assert names == []
    assert missing.status_code == 404 and "<h1>Page not found</h1>" in missing.text
    german = client.get("/subscribe/nothing-here", headers=GERMAN)
    assert german.status_code == 404 and '<html lang="de">' in german.text
    assert "Page not found" not in german.text
    wrong = client.get("/subscribe/newsletter/embed")  # a POST-only address
    assert wrong.status_code == 405 and "<h1>Not like this</h1>" in wrong.text


def test_error_pages_under_many_mount_points_each_link_their_own_start_page(app: Flask) -> None:
    client = app.test_client()
    for n in range(80):  # more than are kept: the rest are rendered each time
        page = client.get("/nothing-here", base_url=f"http://localhost/m{n}").text
        assert f'<a href="/m{n}/">Back to the start page</a>' in page
    assert len(app.extensions["optin_error_pages"]) <= 64
