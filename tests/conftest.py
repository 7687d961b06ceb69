"""Fixtures: ``app``, ``client``, ``runner`` on a real database, and small factories.

The database is a SQLite file by default, or the PostgreSQL server named by TEST_DATABASE_URL
(``.ci/run`` runs the whole suite both ways). The schema is made once per run; every test
starts from empty tables.
"""

from __future__ import annotations

import atexit
import copy
import os
import shutil
import tempfile
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from hypothesis import settings
from sqlalchemy import text
from werkzeug.security import generate_password_hash

# Keep test runs out of the developer's instance folder (its SQLite file, its mail), even when
# the shell names one, and out of each other's: a new folder for each run, removed at its end.
os.environ["OPTIN_INSTANCE_PATH"] = tempfile.mkdtemp(prefix="optin-test-instance-")

from app import create_app, database
from app.extensions import db, limiter
from app.models import AdminUser, Resource
from app.services import admin_users
from app.services.admin_users import create_user
from app.services.resources import create_resource
from tests.helpers import Clock, submit
from tests.smtp import SmtpServer

# The browser tests' fixtures (live_server, page, console_errors), for any module to ask for.
pytest_plugins = ["tests.browser"]

atexit.register(shutil.rmtree, os.environ["OPTIN_INSTANCE_PATH"], ignore_errors=True)

# CI (HYPOTHESIS_PROFILE=ci, set by .ci/run) runs every property test on the same examples each
# time, so a submission is judged on its own code and not on the luck of the draw; runs on a
# developer's machine keep drawing new examples, and a failure they find is a new test case.
# No profile has a deadline: an example's wall time says how busy the machine is, not whether a
# rule holds, and a deadline failed a correct test while other test suites shared the cores.
settings.register_profile("default", deadline=None)
settings.register_profile("ci", derandomize=True, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL")


def on_postgres() -> bool:
    return bool(TEST_DATABASE_URL)


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    if TEST_DATABASE_URL:
        return TEST_DATABASE_URL
    return "sqlite:///" + str(tmp_path_factory.mktemp("db") / "optin-test.sqlite3")


@pytest.fixture(scope="session")
def _schema(database_url: str) -> Iterator[None]:
    app = create_app({"TESTING": True, "DATABASE_URL": database_url})
    with app.app_context():
        db.drop_all()
        with db.engine.begin() as connection:
            connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
        db.create_all()
        db.engine.dispose()
    yield


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    """A real SMTP server on 127.0.0.1 for the whole run; each test starts with an empty inbox."""
    server = SmtpServer().start()
    yield server
    server.stop()


def make_app(database_url: str, **config: object) -> Flask:
    return create_app(
        {"TESTING": True, "DATABASE_URL": database_url, "SECRET_KEY": "test-secret", **config}
    )


def mail_app(database_url: str, smtp_port: int, **config: object) -> Flask:
    """An app that sends its mail over SMTP to 127.0.0.1:``smtp_port``. Flask-Mail reads its
    settings when the app is made, as in production, so each mail server needs its own app."""
    settings: dict[str, object] = {"OUTBOX_DELIVER_INLINE": True, **config}
    return make_app(
        database_url, MAIL_BACKEND="smtp", MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_port, **settings
    )


@pytest.fixture(scope="session")
def _shared_app(
    database_url: str, _schema: None, smtp_server: SmtpServer
) -> tuple[Flask, dict[str, Any]]:
    """The app behind every test's ``app``, made once per run (``create_app`` compiles some
    sixty URL rules, about 20 ms of CPU: for every test, a third of the fast loop's time), and a
    copy of its settings as made."""
    app = mail_app(
        database_url, smtp_server.port, OUTBOX_DELIVER_INLINE=False, BASE_URL="https://optin.test"
    )
    return app, copy.deepcopy(dict(app.config))


@pytest.fixture
def app(_shared_app: tuple[Flask, dict[str, Any]], smtp_server: SmtpServer) -> Iterator[Flask]:
    """The app on the test database, sending mail over SMTP to ``smtp_server``. Queued mail is
    delivered when a test runs the worker (``deliver_due``), as in production.

    One app serves every test, each of which gets it as it was made: its settings as made
    (a test may change them), no rate-limit counts, empty tables, an empty inbox and a new app
    context (``g``); at the end its rows are deleted, so no test sees another's. A test that
    changes the app itself (adds a route or a hook) makes its own with ``make_app``."""
    app, settings = _shared_app
    app.config.clear()
    app.config.update(copy.deepcopy(settings))
    smtp_server.messages.clear()
    with app.app_context():
        limiter.reset()  # this app's own counters (each app has its own Limiter)
        yield app
        db.session.remove()
        with db.engine.begin() as connection:
            for table in reversed(db.metadata.sorted_tables):
                connection.execute(table.delete())
        db.engine.dispose()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The app's clock (``utcnow``, and the timestamps of expiring links) held still at the real
    time of the test's start; ``clock.advance(seconds)`` moves it on, no ``sleep`` needed."""
    held = Clock(database.system_time())
    monkeypatch.setattr(database, "clock", held)
    return held


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def newsletter(app: Flask) -> Resource:
    """A public double-opt-in resource on email."""
    return create_resource("newsletter", "The Newsletter")


@pytest.fixture
def brand(app: Flask) -> Resource:
    """A private double-opt-in resource on email and SMS."""
    return create_resource("brand", "Brand news", channels=["email", "sms"], public=False)


@pytest.fixture
def offers(app: Flask) -> Resource:
    """A public single-opt-in resource."""
    return create_resource("offers", "Offers", double_opt_in=False)


ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "correct horse battery"


@pytest.fixture
def admin_user(app: Flask, monkeypatch: pytest.MonkeyPatch) -> AdminUser:
    """An admin user, as ``flask users create`` makes one, but with a password hash that is
    cheap to make and to check: Werkzeug's scrypt costs 0.1 s of CPU each time, which for the
    two hundred tests that log in was more of the fast loop than anything else. Logging in
    still checks the password; the tests of ``create_user`` itself keep scrypt."""
    with monkeypatch.context() as patched:
        patched.setattr(
            admin_users,
            "generate_password_hash",
            partial(generate_password_hash, method="pbkdf2:sha256:1"),
        )
        return create_user(ADMIN_EMAIL, ADMIN_PASSWORD)


@pytest.fixture
def admin_client(app: Flask, admin_user: AdminUser) -> FlaskClient:
    """A browser logged in to the admin view through its login form."""
    client = app.test_client()
    answer = submit(client, "/admin/login", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    assert answer.status_code == 303, answer.status_code
    return client
