"""The admin view's door: admin users, login, logout, session expiry, the guard on every page."""

from __future__ import annotations

import pytest
from flask import Flask, template_rendered
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select

from app.extensions import db
from app.models import AdminUser
from app.services.admin_users import authenticate, create_user
from app.services.errors import InvalidInput
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, make_app
from tests.helpers import Clock, csrf_token, submit


def admin_pages(app: Flask) -> list[str]:
    """Every admin page that takes no argument in its path, as a browser would GET it."""
    paths = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("admin.") and "GET" in rule.methods and not rule.arguments:
            paths.append(rule.rule)
    return sorted(paths)


def test_users_create_stores_a_hash_never_the_password(runner: FlaskCliRunner) -> None:
    result = runner.invoke(
        args=["users", "create", "Team@Example.com", "--password-stdin"],
        input="a long enough password\n",
    )
    assert result.exit_code == 0, result.output
    assert "created admin user team@example.com" in result.output
    user = db.session.scalar(select(AdminUser))
    assert user is not None and user.email == "team@example.com"
    assert "a long enough password" not in user.password_hash
    assert user.password_hash.startswith("scrypt:")  # a slow hash (admin_user fixture: a cheap one)
    assert authenticate("team@example.com", "a long enough password") is not None


def test_users_create_prompts_twice_for_the_password(runner: FlaskCliRunner) -> None:
    result = runner.invoke(
        args=["users", "create", "team@example.com"],
        input="a long enough password\na long enough password\n",
    )
    assert result.exit_code == 0, result.output
    assert authenticate("team@example.com", "a long enough password") is not None


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        ("not an address", "a long enough password", "not a valid email address"),
        ("team@example.com", "short", "at least 10 characters"),
    ],
)
def test_users_create_refuses_bad_input(
    runner: FlaskCliRunner, email: str, password: str, message: str
) -> None:
    result = runner.invoke(args=["users", "create", email, "--password-stdin"], input=password)
    assert result.exit_code != 0
    assert message in result.output
    assert db.session.scalar(select(AdminUser)) is None


def test_a_second_user_with_the_same_address_is_refused(admin_user: AdminUser) -> None:
    with pytest.raises(InvalidInput, match="exists already"):
        create_user(ADMIN_EMAIL.upper(), "another long password")


def test_anonymous_browsers_are_sent_to_the_login_page_from_every_admin_page(
    app: Flask, client: FlaskClient
) -> None:
    pages = [path for path in admin_pages(app) if path != "/admin/login"]
    assert "/admin/" in pages
    for path in pages:
        answer = client.get(path)
        assert answer.status_code == 302, path
        assert answer.headers["Location"].startswith("/admin/login?next="), path


def test_an_api_client_gets_401_json(app: Flask, client: FlaskClient) -> None:
    for path in [p for p in admin_pages(app) if p != "/admin/login"]:
        answer = client.get(path, headers={"Accept": "application/json"})
        assert answer.status_code == 401, path
        assert answer.get_json()["error"]["code"] == "login_required"
    answer = client.get("/admin/", headers={"Authorization": "Bearer optin_whatever"})
    assert answer.status_code == 401


def test_login_with_the_right_password_opens_the_admin(
    client: FlaskClient, admin_user: AdminUser
) -> None:
    answer = submit(client, "/admin/login", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert answer.status_code == 303
    assert answer.headers["Location"] == "/admin/"
    page = client.get("/admin/", follow_redirects=True)
    assert page.status_code == 200
    assert ADMIN_EMAIL in page.get_data(as_text=True)
    assert db.session.get(AdminUser, admin_user.id).last_login_at is not None


def test_login_returns_to_the_page_asked_for_but_never_to_another_site(
    client: FlaskClient, admin_user: AdminUser
) -> None:
    data = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    answer = submit(client, "/admin/login?next=/admin/", data, form_path="/admin/login")
    assert answer.headers["Location"] == "/admin/"
    for target in ["https://evil.example/admin/", "//evil.example/admin/", "/subscribe"]:
        client.post("/admin/logout", data={"csrf_token": csrf_token(client, "/admin/login")})
        answer = submit(client, f"/admin/login?next={target}", data, form_path="/admin/login")
        assert answer.headers["Location"] == "/admin/", target


@pytest.mark.parametrize(
    ("email", "password"),
    [
        (ADMIN_EMAIL, "wrong password!"),
        ("nobody@example.com", ADMIN_PASSWORD),
        ("not an address", ADMIN_PASSWORD),
        (ADMIN_EMAIL, ""),
    ],
)
def test_a_wrong_login_gets_the_form_again_and_no_session(
    client: FlaskClient, admin_user: AdminUser, email: str, password: str
) -> None:
    answer = submit(client, "/admin/login", {"email": email, "password": password})
    assert answer.status_code == 400
    assert "Log in" in answer.get_data(as_text=True)
    assert client.get("/admin/dashboard").status_code == 302


def test_unknown_address_and_wrong_password_read_the_same(
    client: FlaskClient, admin_user: AdminUser
) -> None:
    wrong_password = submit(client, "/admin/login", {"email": ADMIN_EMAIL, "password": "x" * 12})
    unknown = submit(client, "/admin/login", {"email": "who@example.com", "password": "x" * 12})
    assert "Wrong email address or password." in wrong_password.get_data(as_text=True)
    assert "Wrong email address or password." in unknown.get_data(as_text=True)


def test_login_without_a_csrf_token_is_refused(client: FlaskClient, admin_user: AdminUser) -> None:
    answer = client.post("/admin/login", data={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert answer.status_code == 400
    assert client.get("/admin/dashboard").status_code == 302


def test_login_attempts_are_rate_limited(client: FlaskClient, admin_user: AdminUser) -> None:
    token = csrf_token(client, "/admin/login")
    codes = [
        client.post(
            "/admin/login",
            data={"csrf_token": token, "email": ADMIN_EMAIL, "password": f"guess number {i}"},
        ).status_code
        for i in range(7)
    ]
    assert codes[:5] == [400] * 5
    assert codes[5:] == [429, 429]
    # Even the right password waits until the window ends.
    right = {"csrf_token": token, "email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    assert client.post("/admin/login", data=right).status_code == 429


def test_logout_ends_the_session(admin_client: FlaskClient) -> None:
    assert admin_client.get("/admin/", follow_redirects=True).status_code == 200
    token = csrf_token(admin_client, "/admin/dashboard")
    assert admin_client.post("/admin/logout", data={"csrf_token": token}).status_code == 303
    assert admin_client.get("/admin/dashboard").status_code == 302


def test_admin_pages_name_the_logged_in_user_and_public_pages_never_load_them(
    app: Flask, client: FlaskClient, admin_client: FlaskClient
) -> None:
    # The admin bar shows who is logged in (the admin blueprint's context processor); a
    # public page's render is not given the user at all.
    page = admin_client.get("/admin/dashboard").text
    assert ADMIN_EMAIL in page and 'action="/admin/logout"' in page
    contexts: list[dict[str, object]] = []

    def _remember(_sender: Flask, template: object, context: dict[str, object]) -> None:
        contexts.append(context)

    with template_rendered.connected_to(_remember, app):
        assert client.get("/preferences").status_code == 200
    assert contexts and all("current_user" not in context for context in contexts)


def test_logout_needs_the_csrf_token(admin_client: FlaskClient) -> None:
    assert admin_client.post("/admin/logout").status_code == 400
    assert admin_client.get("/admin/", follow_redirects=True).status_code == 200


def test_sessions_expire(database_url: str, admin_user: AdminUser, clock: Clock) -> None:
    short = make_app(database_url, ADMIN_SESSION_LIFETIME=1)
    client = short.test_client()
    with short.app_context():
        answer = submit(client, "/admin/login", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
        assert answer.status_code == 303
        assert client.get("/admin/dashboard").status_code == 200
        clock.advance(1.2)
        assert client.get("/admin/dashboard").status_code == 302
        # The expired session is gone for good, not just refused once.
        assert client.get("/admin/dashboard").status_code == 302
