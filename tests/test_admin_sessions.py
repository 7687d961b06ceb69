"""Admin sessions end on the server (issue 9, item 6): a session is a signed cookie, so logout
and a password change move the user's session version on, and every cookie made before, a
copy taken by someone else included, is refused from then on."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner

from app.models import AdminUser
from app.services.admin_users import authenticate
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, make_app
from tests.helpers import csrf_token, submit

NEW_PASSWORD = "a brand new long password"


def copy_of_the_session(database_url: str, browser: FlaskClient) -> FlaskClient:
    """Another browser holding a copy of ``browser``'s session cookie, as a thief would, sent to
    another web process (an app of its own: each of its requests starts afresh, as in
    production, where the test's ``app`` shares one app context, and so ``g``, among requests)."""
    cookie = browser.get_cookie("session")
    assert cookie is not None
    thief = make_app(database_url).test_client()
    thief.set_cookie("session", cookie.value)
    assert thief.get("/admin/dashboard").status_code == 200  # the copy works, for now
    return thief


def refused(browser: FlaskClient) -> bool:
    page = browser.get("/admin/dashboard")
    api = browser.get("/admin/dashboard", headers={"Accept": "application/json"})
    return (
        page.status_code == 302
        and page.headers["Location"].startswith("/admin/login")
        and api.status_code == 401
    )


def test_a_session_cookie_copied_before_logout_is_refused_after_it(
    database_url: str, admin_client: FlaskClient
) -> None:
    thief = copy_of_the_session(database_url, admin_client)
    token = csrf_token(admin_client, "/admin/dashboard")
    assert admin_client.post("/admin/logout", data={"csrf_token": token}).status_code == 303
    assert refused(thief)
    assert refused(admin_client)


def test_logging_in_again_after_logout_works(app: Flask, admin_client: FlaskClient) -> None:
    token = csrf_token(admin_client, "/admin/dashboard")
    admin_client.post("/admin/logout", data={"csrf_token": token})
    again = app.test_client()
    answer = submit(again, "/admin/login", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert answer.status_code == 303
    assert again.get("/admin/dashboard").status_code == 200


def test_a_password_change_ends_every_session_of_that_user(
    database_url: str, admin_client: FlaskClient, runner: FlaskCliRunner
) -> None:
    thief = copy_of_the_session(database_url, admin_client)
    result = runner.invoke(
        args=["users", "password", ADMIN_EMAIL, "--password-stdin"], input=NEW_PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    assert "sessions have ended" in result.output
    assert refused(thief)
    assert authenticate(ADMIN_EMAIL, ADMIN_PASSWORD) is None
    assert authenticate(ADMIN_EMAIL, NEW_PASSWORD) is not None


def test_users_password_prompts_twice_and_refuses_a_short_one(
    runner: FlaskCliRunner, admin_user: AdminUser
) -> None:
    result = runner.invoke(
        args=["users", "password", ADMIN_EMAIL], input=f"{NEW_PASSWORD}\n{NEW_PASSWORD}\n"
    )
    assert result.exit_code == 0, result.output
    assert authenticate(ADMIN_EMAIL, NEW_PASSWORD) is not None
    short = runner.invoke(args=["users", "password", ADMIN_EMAIL, "--password-stdin"], input="x")
    assert short.exit_code != 0 and "at least 10 characters" in short.output
    unknown = runner.invoke(
        args=["users", "password", "nobody@example.com", "--password-stdin"], input=NEW_PASSWORD
    )
    assert unknown.exit_code != 0 and "no admin user" in unknown.output


def test_a_session_naming_no_version_is_refused(app: Flask, admin_user: AdminUser) -> None:
    """A cookie in the old form ("7", the id alone) or any other shape opens nothing."""
    for forged in (str(admin_user.id), f"{admin_user.id}:", f"{admin_user.id}:x", "x:0"):
        browser = app.test_client()
        with browser.session_transaction() as session:
            session["_user_id"] = forged
            session["_fresh"] = True
            session["admin_login_at"] = 4_102_444_800  # far in the future: only the id decides
        assert refused(browser), forged
