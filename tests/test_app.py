"""The application object (``app/__init__.py``) and what every request goes through: hooks asked
once whether they are coroutines, the signed session cookie, the links of every page."""

from __future__ import annotations

import gc

from flask import Flask, after_this_request
from werkzeug.wrappers import Response

from app.views.public import site_urls
from tests.conftest import make_app


def test_a_request_s_own_after_request_function_is_not_kept(database_url: str) -> None:
    app = make_app(database_url)
    added: list[int] = []

    @app.get("/with-a-callback")
    def with_a_callback() -> str:
        @after_this_request
        def mark(response: Response) -> Response:
            added.append(1)
            return response

        return "done"

    client = app.test_client()
    client.get("/with-a-callback")
    gc.collect()
    remembered = len(app._coroutines)  # type: ignore[attr-defined]  # Optin's own
    for _ in range(20):
        client.get("/with-a-callback")
    gc.collect()
    assert added == [1] * 21
    assert len(app._coroutines) == remembered  # type: ignore[attr-defined]


def test_a_synchronous_view_or_hook_runs_as_it_is(app: Flask) -> None:
    def view() -> str:
        return "plain"

    assert app.ensure_sync(view) is view
    assert app.ensure_sync(view) is view  # the second time from what was remembered
    assert app.ensure_sync(len) is len  # takes no weak reference: asked every time


def test_a_session_cookie_opens_until_its_key_is_retired(database_url: str) -> None:
    app = make_app(database_url, SECRET_KEY="first-key")
    browser = app.test_client()
    with browser.session_transaction() as session:
        session["seen"] = "yes"
    with browser.session_transaction() as session:
        assert session.get("seen") == "yes"
    # A new key with the old one among the fallbacks still opens it; without, it opens nothing.
    app.config.update(SECRET_KEY="second-key", SECRET_KEY_FALLBACKS=["first-key"])
    app.secret_key = "second-key"
    with browser.session_transaction() as session:
        assert session.get("seen") == "yes"
    app.config["SECRET_KEY_FALLBACKS"] = []
    with browser.session_transaction() as session:
        assert "seen" not in session


def test_the_links_of_every_page_follow_the_mount_point(app: Flask) -> None:
    with app.test_request_context():
        urls = site_urls()
        assert (urls.home, urls.favicon, urls.icon, urls.stylesheet) == (
            "/",
            "/favicon.ico",
            "/static/favicon.svg",
            "/static/style.css",
        )
    with app.test_request_context(base_url="http://localhost/optin/"):
        assert site_urls().stylesheet == "/optin/static/style.css"
