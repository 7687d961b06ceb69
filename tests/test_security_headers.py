"""Protective headers and cookies (issue 9, item 5) on every kind of page optin answers: the
public pages and those behind a token, the data download, the admin, the API, the webhooks,
error pages and static files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app import create_app
from app.models import AdminUser, Resource
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, make_app
from tests.helpers import link_to, run_worker, submit
from tests.smtp import SmtpServer

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def pages_of_every_kind(
    client: FlaskClient, smtp_server: SmtpServer, admin_client: FlaskClient
) -> dict[str, TestResponse]:
    """One answer of each kind, reached as a customer and an admin reach them."""
    answers = {
        "landing page": client.get("/"),
        "signup form": client.get("/subscribe/newsletter"),
        "signup answer": submit(
            client, "/subscribe/newsletter", {"email": "alice@example.com", "name": ""}
        ),
        "preferences request": client.get("/preferences"),
        "not found page": client.get("/no/such/page"),
        "stylesheet": client.get("/static/style.css"),
        "API error": client.get("/api/v1/eligibility?email=a@example.com"),
        "OpenAPI document": client.get("/api/v1/openapi.json"),
        "webhook": client.post("/webhooks/postmark", json={}),
        "admin login": client.get("/admin/login"),
        "admin dashboard": admin_client.get("/admin/dashboard"),
        "admin profiles": admin_client.get("/admin/profiles?q=alice"),
        "admin JSON error": client.get("/admin/dashboard", headers={"Accept": "application/json"}),
    }
    run_worker()
    confirm = link_to(smtp_server.messages[-1], "/confirm/")
    answers["confirm page"] = client.get(confirm)
    answers["confirmed"] = submit(client, confirm, {})
    run_worker()
    welcome = smtp_server.messages[-1]
    unsubscribe = link_to(welcome, "/unsubscribe/")
    preferences = link_to(welcome, "/preferences/")
    answers["unsubscribe page"] = client.get(unsubscribe)
    answers["preferences page"] = client.get(preferences)
    submit(client, preferences + "/data-link", {}, form_path=preferences)
    run_worker()
    data_page = link_to(smtp_server.messages[-1], "/data/")
    answers["data page"] = client.get(data_page)
    answers["data download"] = client.get(data_page + "/data.json")
    answers["one-click unsubscribe"] = client.post(
        unsubscribe, data={"List-Unsubscribe": "One-Click"}
    )
    return answers


@pytest.fixture
def answers(
    database_url: str,
    client: FlaskClient,
    smtp_server: SmtpServer,
    admin_user: AdminUser,
    newsletter: Resource,
) -> dict[str, TestResponse]:
    # The admin browses another web process: requests to the test's own ``app`` share one app
    # context, and so Flask-WTF's CSRF token cached in ``g``, with the customer's browser.
    admin_client = make_app(database_url, BASE_URL="https://optin.test").test_client()
    login = submit(admin_client, "/admin/login", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert login.status_code == 303
    found = pages_of_every_kind(client, smtp_server, admin_client)
    assert found["admin dashboard"].status_code == 200
    assert found["preferences page"].status_code == 200
    assert found["stylesheet"].status_code == 200
    return found


def directives(answer: TestResponse) -> dict[str, str]:
    policy = answer.headers.get("Content-Security-Policy", "")
    parts = (part.strip().split(" ", 1) for part in policy.split(";") if part.strip())
    return {part[0]: part[1] if len(part) > 1 else "" for part in parts}


def test_every_answer_has_a_strict_content_security_policy(
    answers: dict[str, TestResponse],
) -> None:
    for kind, answer in answers.items():
        policy = directives(answer)
        assert policy.get("default-src") == "'self'", kind
        assert policy.get("base-uri") == "'none'", kind
        assert policy.get("object-src") == "'none'", kind
        assert policy.get("form-action") == "'self'", kind
        assert "unsafe-inline" not in answer.headers["Content-Security-Policy"], kind


def test_no_answer_can_be_framed(answers: dict[str, TestResponse]) -> None:
    for kind, answer in answers.items():
        assert directives(answer).get("frame-ancestors") == "'none'", kind
        assert answer.headers.get("X-Frame-Options") == "DENY", kind


def test_every_answer_forbids_sniffing_and_sends_no_referrer_to_other_sites(
    answers: dict[str, TestResponse],
) -> None:
    for kind, answer in answers.items():
        assert answer.headers.get("X-Content-Type-Options") == "nosniff", kind
        assert answer.headers.get("Referrer-Policy") == "same-origin", kind


def test_nothing_but_the_static_files_may_be_stored_by_a_cache(
    answers: dict[str, TestResponse],
) -> None:
    for kind, answer in answers.items():
        if kind == "stylesheet":
            assert "no-store" not in answer.headers.get("Cache-Control", ""), kind
        else:
            assert answer.headers.get("Cache-Control") == "no-store", kind


def test_under_https_every_answer_asks_for_https_from_now_on(
    answers: dict[str, TestResponse],
) -> None:
    for kind, answer in answers.items():
        assert answer.headers.get("Strict-Transport-Security") == "max-age=63072000", kind


def test_without_https_there_is_no_hsts_and_the_cookie_is_not_secure(
    database_url: str, admin_user: AdminUser
) -> None:
    app = make_app(database_url, BASE_URL="http://127.0.0.1:5000")
    client = app.test_client()
    answer = client.get("/admin/login")
    assert "Strict-Transport-Security" not in answer.headers
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


def test_the_session_cookie_is_httponly_samesite_lax_and_secure_under_https(
    client: FlaskClient, admin_user: AdminUser
) -> None:
    answer = submit(client, "/admin/login", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    cookies = answer.headers.getlist("Set-Cookie")
    assert cookies
    for cookie in cookies:
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie, cookie


def test_cookie_and_csrf_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPTIN_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("SESSION_COOKIE_SAMESITE", "Strict")
    monkeypatch.setenv("SESSION_COOKIE_SECURE", "true")
    monkeypatch.setenv("SESSION_COOKIE_NAME", "optin_session")
    monkeypatch.setenv("REMEMBER_COOKIE_SECURE", "true")
    monkeypatch.setenv("WTF_CSRF_TIME_LIMIT", "1800")
    app = create_app({"TESTING": True})
    assert app.config["SESSION_COOKIE_SAMESITE"] == "Strict"
    assert app.config["SESSION_COOKIE_SECURE"] is True  # though BASE_URL is http
    assert app.config["SESSION_COOKIE_NAME"] == "optin_session"
    assert app.config["REMEMBER_COOKIE_SECURE"] is True
    assert app.config["WTF_CSRF_TIME_LIMIT"] == 1800


def test_forms_may_go_on_to_a_trusted_thank_you_host_and_nowhere_else(
    database_url: str, newsletter: Resource
) -> None:
    app = make_app(
        database_url, TRUSTED_REDIRECT_HOSTS=["shop.example.org", "bad host; script-src *"]
    )
    answer = app.test_client().get("/subscribe/newsletter")
    assert directives(answer)["form-action"] == "'self' shop.example.org"
    assert "script-src" not in directives(answer)


def test_frame_ancestors_may_frame_the_signup_pages_and_nothing_else(
    database_url: str, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    app = make_app(database_url, FRAME_ANCESTORS=["https://shop.example.org"])
    client = app.test_client()
    for path in ("/subscribe/newsletter", "/subscribe"):
        answer = client.get(path)
        assert directives(answer)["frame-ancestors"] == "https://shop.example.org", path
        assert "X-Frame-Options" not in answer.headers, path
    for path in ("/", "/preferences", "/admin/login", "/confirm/not-a-token"):
        answer = client.get(path)
        assert directives(answer)["frame-ancestors"] == "'none'", path
        assert answer.headers["X-Frame-Options"] == "DENY", path


INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I), "an inline script"),
    (re.compile(r"\sstyle\s*=", re.I), "a style attribute"),
    (re.compile(r"<style", re.I), "a style element"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "an event handler attribute"),
    (re.compile(r"javascript:", re.I), "a javascript: URL"),
]


def test_no_page_template_has_inline_script_or_style_the_policy_would_block() -> None:
    """Emails are not pages (no CSP applies to them, and mail clients want inline styles)."""
    found = []
    for template in sorted(TEMPLATES.rglob("*.html")):
        if "email" in template.relative_to(TEMPLATES).parts:
            continue
        text = template.read_text()
        for pattern, what in INLINE:
            if pattern.search(text):
                found.append(f"{template.relative_to(TEMPLATES)}: {what}")
    assert found == []


def test_a_generated_page_under_an_app_error_has_the_headers_too(
    database_url: str, _schema: None
) -> None:
    app = make_app(database_url)  # its own: a route is added to it

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    app.testing = False  # the error page, as production shows it
    answer = app.test_client().get("/boom")
    assert answer.status_code == 500
    assert directives(answer)["frame-ancestors"] == "'none'"
    assert answer.headers["Cache-Control"] == "no-store"
