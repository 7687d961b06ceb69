"""Bad input gets a clear answer and changes nothing: malformed addresses, header injection,
markup, CSRF, oversized bodies, rate limits, and the error pages."""

from __future__ import annotations

import io

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from app import queries
from app.models import Resource
from app.services import subscriptions
from tests.conftest import make_app
from tests.helpers import (
    csrf_token,
    database_state,
    html_of,
    link_to,
    run_worker,
    submit,
    text_of,
)
from tests.smtp import SmtpServer

MARKUP = '<script>alert("x")</script><b>Bob</b>'


@pytest.mark.parametrize(
    "email",
    [
        "",
        "not-an-address",
        "two@@example.com",
        "x" * 250 + "@example.com",
        "alice@example.com\r\nBcc: victim@example.com",
        "alice@example.com\nSubject: hi",
        "<script>@example.com",
    ],
)
def test_a_malformed_address_is_a_form_error_and_changes_nothing(
    client: FlaskClient, newsletter: Resource, email: str
) -> None:
    before = database_state()
    page = submit(client, "/subscribe/newsletter", {"email": email, "name": ""})
    assert page.status_code == 400
    assert "Enter" in page.get_data(as_text=True)  # the field's message, next to the field
    assert 'aria-invalid="true"' in page.get_data(as_text=True)
    assert database_state() == before


def test_a_line_break_in_the_name_cannot_inject_headers(
    client: FlaskClient, newsletter: Resource
) -> None:
    before = database_state()
    page = submit(
        client, "/subscribe/newsletter", {"email": "a@example.com", "name": "A\r\nBcc: v@x.com"}
    )
    assert page.status_code == 400
    assert database_state() == before


def test_markup_in_a_name_is_escaped_on_pages_and_in_emails(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    submit(client, "/subscribe/newsletter", {"email": "bob@example.com", "name": MARKUP})
    run_worker()
    (confirmation,) = smtp_server.messages
    assert "alert" not in html_of(confirmation)  # no name at all: the asker typed it
    # The welcome, after the click, greets by the name: escaped in HTML.
    submit(client, link_to(confirmation, "/confirm/"), {})
    run_worker()
    message = smtp_server.messages[-1]
    assert MARKUP not in html_of(message)
    assert "&lt;script&gt;" in html_of(message)
    assert MARKUP in text_of(message)  # plain text shows it as the characters it is

    profile = queries.profile_by_email("bob@example.com")
    assert profile is not None and profile.name == MARKUP
    from app.links import links_for

    preferences = links_for(profile.id, profile.link_key, None).preferences_url.removeprefix(
        "https://optin.test"
    )
    page = client.get(preferences).get_data(as_text=True)
    assert "<script>alert" not in page
    assert "&lt;script&gt;" in page


def test_a_missing_or_wrong_csrf_token_is_refused_and_changes_nothing(
    client: FlaskClient, newsletter: Resource
) -> None:
    csrf_token(client, "/subscribe/newsletter")  # the browser has a session cookie
    before = database_state()
    missing = client.post("/subscribe/newsletter", data={"email": "a@example.com"})
    wrong = client.post(
        "/subscribe/newsletter", data={"email": "a@example.com", "csrf_token": "forged"}
    )
    assert (missing.status_code, wrong.status_code) == (400, 400)
    assert database_state() == before


def test_an_oversized_body_is_refused_with_413(
    client: FlaskClient, newsletter: Resource, app: Flask
) -> None:
    before = database_state()
    token = csrf_token(client, "/subscribe/newsletter")
    huge = "x" * (app.config["MAX_CONTENT_LENGTH"] + 1)
    page = client.post(
        "/subscribe/newsletter", data={"csrf_token": token, "email": "a@example.com", "name": huge}
    )
    assert page.status_code == 413
    assert "Too much data" in page.get_data(as_text=True)
    assert database_state() == before


def test_repeated_signups_past_the_rate_limit_get_429_and_change_nothing(
    client: FlaskClient, newsletter: Resource, app: Flask
) -> None:
    app.config["SIGNUP_LIMIT_PER_ADDRESS"] = "2 per day"
    for _ in range(2):
        assert (
            submit(client, "/subscribe/newsletter", {"email": "a@example.com"}).status_code == 200
        )
    before = database_state()
    limited = submit(client, "/subscribe/newsletter", {"email": "a@example.com"})
    assert limited.status_code == 429
    assert "Too many attempts" in limited.get_data(as_text=True)
    assert database_state() == before
    # Another address from the same browser is not blocked by that address's limit.
    assert submit(client, "/subscribe/newsletter", {"email": "b@example.com"}).status_code == 200


def test_the_per_ip_limit(client: FlaskClient, newsletter: Resource, app: Flask) -> None:
    app.config["SIGNUP_LIMIT_PER_IP"] = "3 per minute"
    codes = [
        submit(client, "/subscribe/newsletter", {"email": f"u{n}@example.com"}).status_code
        for n in range(4)
    ]
    assert codes == [200, 200, 200, 429]


def test_each_app_counts_its_own_requests_when_another_app_is_made(
    client: FlaskClient, newsletter: Resource, app: Flask, database_url: str
) -> None:
    """Two apps in one process (a test's, a benchmark's) keep their own counters: making the
    second neither forgets the first one's requests nor lends it its store."""
    app.config["SIGNUP_LIMIT_PER_IP"] = "2 per minute"
    for n in range(2):
        answer = submit(client, "/subscribe/newsletter", {"email": f"u{n}@example.com"})
        assert answer.status_code == 200
    other = make_app(database_url, SIGNUP_LIMIT_PER_IP="2 per minute")
    with other.app_context():
        answer = submit(other.test_client(), "/subscribe/newsletter", {"email": "o@example.com"})
        assert answer.status_code == 200  # its own count starts at zero
    limited = submit(client, "/subscribe/newsletter", {"email": "u2@example.com"})
    assert limited.status_code == 429


def test_rate_limits_are_shared_through_redis(
    database_url: str, _schema: None, newsletter: Resource
) -> None:
    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/0").ping()
    except redis.ConnectionError:
        pytest.fail("Redis must be running on 127.0.0.1:6379 (.ci/run starts it)")
    namespace = f"optin-test-{id(object())}"
    settings = {
        "RATELIMIT_STORAGE_URI": "redis://127.0.0.1:6379/0",
        "RATELIMIT_KEY_PREFIX": namespace,
        "SIGNUP_LIMIT_PER_IP": "2 per minute",
        "OUTBOX_DELIVER_INLINE": False,
    }
    codes = []
    for _ in range(3):  # three app instances, like three gunicorn workers
        worker = make_app(database_url, **settings)
        with worker.app_context():
            client = worker.test_client()
            codes.append(
                submit(client, "/subscribe/newsletter", {"email": "a@example.com"}).status_code
            )
    assert codes == [200, 200, 429]


@pytest.mark.parametrize(
    ("method", "path", "status", "words"),
    [
        ("get", "/no/such/page", 404, "Page not found"),
        ("delete", "/subscribe/newsletter", 405, "Not like this"),
        ("get", "/subscribe/no-such-resource", 404, "Page not found"),
        ("get", "/confirm/not-a-token", 400, "This link is not valid"),
        ("get", "/preferences/not-a-token", 400, "This link is not valid"),
    ],
)
def test_error_pages_are_clear(
    client: FlaskClient, newsletter: Resource, method: str, path: str, status: int, words: str
) -> None:
    page = getattr(client, method)(path)
    assert page.status_code == status
    html = page.get_data(as_text=True)
    assert words in html and "<html" in html


def test_an_unexpected_error_gets_the_500_page_and_no_half_made_change(
    database_url: str, _schema: None, newsletter: Resource, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(database_url, OUTBOX_DELIVER_INLINE=False, PROPAGATE_EXCEPTIONS=False)
    app.testing = False

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    with app.app_context():
        before = database_state()
        client = app.test_client()
        token = csrf_token(client, "/subscribe/newsletter")
        monkeypatch.setattr(subscriptions, "queue_confirmation", crash)
        page = client.post("/subscribe/newsletter", data={"csrf_token": token, "email": "a@b.co"})
        assert page.status_code == 500
        assert "Nothing was changed" in page.get_data(as_text=True)
        assert database_state() == before


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("get", "/subscribe/news%00letter", None),
        ("get", "/?ref=a%00b", None),
        ("post", "/subscribe/newsletter/embed", {"email": "a@example.com", "name": "A\x00B"}),
        ("post", "/preferences", {"email": "a\x00@example.com"}),
        ("get", "/?a%00=b", None),
        ("get", "/?ref=a&ref=%00", None),
        # multipart/form-data: a NUL in a field or in an upload's file name
        ("post", "/preferences", {"email": "a\x00@example.com", "f": (io.BytesIO(b"x"), "a.txt")}),
        ("post", "/preferences", {"email": "a@example.com", "f": (io.BytesIO(b"x"), "a\x00.txt")}),
    ],
)
def test_a_nul_character_anywhere_is_a_clear_400(
    client: FlaskClient, newsletter: Resource, method: str, path: str, data: dict | None
) -> None:
    # PostgreSQL cannot store NUL; found by schemathesis as a 500 before this check existed.
    before = database_state()
    page = getattr(client, method)(path, data=data) if data else getattr(client, method)(path)
    assert page.status_code == 400
    assert database_state() == before


def test_a_bad_embedded_signup_shows_the_error_on_optins_own_form(
    app: Flask, newsletter: Resource
) -> None:
    page = app.test_client().post(
        "/subscribe/newsletter/embed", data={"email": "not-an-address", "website": ""}
    )
    assert page.status_code == 400
    html = page.get_data(as_text=True)
    assert "Enter an email address like name@example.com." in html
    assert 'name="csrf_token"' in html  # correcting it happens on optin's own, protected form
