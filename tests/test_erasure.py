"""Erasure (SPEC §2): after "erase my data" no row of any table and no saved mail holds the
person's address, name, IP, browser or the words written about them; what stays is anonymous
counts and the address's hash on the suppression list, which keeps every import away.

Every text column of the schema is classified below, so a column added later cannot be
forgotten: the classification test fails until someone decides what erasure does with it.
"""

from __future__ import annotations

import email
import email.policy
import json
import logging
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from flask_migrate import upgrade
from sqlalchemy import TypeDecorator, select, text

from app import create_app, mailer, outbox, queries
from app.addresses import email_hash
from app.database import utcnow
from app.extensions import db
from app.models import DeliveryEvent, ImportRejection, OutboxMessage, Resource, StatusEvent
from app.services import admin_actions, imports, preferences, subscriptions
from app.services.events import EventType, IncomingEvent, record_events
from app.services.statuses import Actor
from app.services.webhooks import endpoints as webhook_endpoints
from app.status import Status
from tests.conftest import ADMIN_EMAIL, make_app
from tests.helpers import LINK, count, csrf_token, run_worker, submit
from tests.test_migrations import empty_database_url  # noqa: F401  (a fixture)

ERASED = "erased"  # the row goes with the profile, or the value is blanked (where it names them)
HASH = "hash only"  # a SHA-256 of the address, or nothing
NOT_PERSONAL = "not personal"  # codes, times, the admin's own texts, staff and keys

# Every column that can hold text, and what erasure does with it. A new one fails
# test_every_text_column_of_the_schema_is_classified until it is added here (and, if it can hold
# personal data, until erasure handles it).
CLASSIFIED: dict[str, str] = {
    "admin_users.email": NOT_PERSONAL,  # a staff member's login, not a customer's
    "admin_users.password_hash": NOT_PERSONAL,
    "api_keys.name": NOT_PERSONAL,
    "api_keys.key_hash": NOT_PERSONAL,
    "api_keys.prefix": NOT_PERSONAL,
    "profiles.email": ERASED,
    "profiles.email_hash": ERASED,
    "profiles.name": ERASED,
    "profiles.phone": ERASED,
    "profiles.locale": ERASED,
    "profiles.global_status": ERASED,
    "profiles.resume_status": ERASED,
    "profiles.link_key": ERASED,
    "profiles.email_key": ERASED,  # the search keys: the address and the name, folded
    "profiles.name_key": ERASED,
    "subscriptions.channel": ERASED,
    "subscriptions.status": ERASED,
    "subscriptions.resume_status": ERASED,
    "subscriptions.confirm_nonce": ERASED,
    "consent_records.ip": ERASED,
    "consent_records.user_agent": ERASED,
    "consent_records.form": ERASED,
    "resources.slug": NOT_PERSONAL,
    "resources.name": NOT_PERSONAL,
    "resources.description": NOT_PERSONAL,
    "resources.channels": NOT_PERSONAL,
    "resources.thank_you_url": NOT_PERSONAL,
    "consent_texts.text": NOT_PERSONAL,
    "status_events.channel": NOT_PERSONAL,
    "status_events.old_status": NOT_PERSONAL,
    "status_events.new_status": NOT_PERSONAL,
    "status_events.cause": NOT_PERSONAL,
    "status_events.actor": ERASED,  # kept when it names staff, a key or a provider
    "status_events.reason": ERASED,
    "status_events.ip": ERASED,
    "status_events.user_agent": ERASED,
    "erasures.actor": ERASED,  # the change feed's entry: as status_events.actor
    "suppressions.email_hash": HASH,
    "suppressions.email": ERASED,
    "suppressions.reason": NOT_PERSONAL,  # a cause: admin, bounce, erased
    "suppressions.actor": ERASED,  # as status_events.actor
    "suppression_events.email_hash": HASH,
    "suppression_events.email": ERASED,
    "suppression_events.action": NOT_PERSONAL,
    "suppression_events.cause": NOT_PERSONAL,
    "suppression_events.reason": ERASED,
    "suppression_events.actor": ERASED,  # as status_events.actor
    "delivery_events.source": NOT_PERSONAL,
    "delivery_events.event_id": ERASED,  # the address in a provider's id becomes its hash
    "delivery_events.type": NOT_PERSONAL,
    "delivery_events.email_hash": HASH,
    "outbox.to_address": ERASED,
    "outbox.template": ERASED,
    "outbox.context": ERASED,
    "outbox.last_error": ERASED,
    "outbox.dropped_reason": ERASED,
    "import_jobs.filename": NOT_PERSONAL,  # the admin's file
    "import_jobs.path": NOT_PERSONAL,
    "import_jobs.actor": NOT_PERSONAL,  # the admin or "cli"
    "import_jobs.state": NOT_PERSONAL,
    "import_jobs.error": NOT_PERSONAL,  # why a file failed, not a row's contents
    "import_rejections.email": ERASED,
    "import_rejections.email_hash": ERASED,
    "import_rejections.reason": NOT_PERSONAL,  # optin's words and the row's status or date
    # A webhook delivery names its status event; the document, address included, is built when
    # it is sent, so an erasure leaves a queued delivery nothing personal to send.
    "webhook_deliveries.type": NOT_PERSONAL,
    "webhook_deliveries.state": NOT_PERSONAL,
    "webhook_deliveries.actor": NOT_PERSONAL,  # who erased: an admin, or none (the person)
    "webhook_deliveries.last_error": NOT_PERSONAL,  # the network's or the endpoint's status
    "webhook_endpoints.url": NOT_PERSONAL,
    "webhook_endpoints.event_types": NOT_PERSONAL,
    "webhook_endpoints.resource_ids": NOT_PERSONAL,
    "webhook_endpoints.secret": NOT_PERSONAL,
    "webhook_endpoints.paused_reason": NOT_PERSONAL,
}
NOT_TEXT = (int, bool, datetime, float)

# One person's life, every piece of it a string that must be gone afterwards.
ADDRESS = "ada.erasure-test@example.org"
SPELLED_IN_FILE = "Ada.Erasure-Test@Example.ORG"
NAME = "Ada Quillfeather"
IP = "203.0.113.77"
USER_AGENT = "ErasureTestBrowser/7.3 (quillfeather)"
ADMIN_REASON = "Ada Quillfeather rang to say the address is her late aunt's"
SUPPRESSION_REASON = "Quillfeather family asked us on the phone to stop"
TRACES = (ADDRESS, NAME, IP, USER_AGENT, ADMIN_REASON, SUPPRESSION_REASON)
BOB = "bob.keeps-his-data@example.org"
HEX64 = re.compile(r"[0-9a-f]{64}")


def text_columns() -> dict[str, Any]:
    """Every column of the schema whose values are not numbers, flags or times."""
    found = {}
    for table in db.metadata.sorted_tables:
        for column in table.columns:
            kind = column.type
            kind = kind.impl_instance if isinstance(kind, TypeDecorator) else kind
            try:
                python_type = kind.python_type
            except NotImplementedError:
                python_type = object
            if not issubclass(python_type, NOT_TEXT):
                found[f"{table.name}.{column.name}"] = column
    return found


def test_every_text_column_of_the_schema_is_classified(app: Flask) -> None:
    columns = text_columns()
    unclassified = sorted(set(columns) - set(CLASSIFIED))
    assert not unclassified, f"decide what erasure does with: {unclassified}"
    assert not set(CLASSIFIED) - set(columns), "CLASSIFIED names columns that no longer exist"
    assert set(CLASSIFIED.values()) <= {ERASED, HASH, NOT_PERSONAL}


def every_value() -> list[tuple[str, str]]:
    """Every value of every column of every table, as lower-case text."""
    db.session.rollback()
    found = []
    with db.engine.connect() as connection:
        for table in db.metadata.sorted_tables:
            for row in connection.execute(table.select()).mappings():
                for name, value in row.items():
                    if value is None:
                        continue
                    text = json.dumps(value) if isinstance(value, dict | list) else str(value)
                    found.append((f"{table.name}.{name}", text.lower()))
    return found


def traces_in_database() -> list[tuple[str, str]]:
    return [
        (where, trace)
        for where, value in every_value()
        for trace in TRACES
        if trace.lower() in value
    ]


def saved_mail(app: Flask) -> dict[Path, str]:
    folder = Path(app.instance_path) / "mail"
    return {path: path.read_text(encoding="utf-8") for path in folder.glob("*.eml")}


def saved_link(app: Flask, prefix: str) -> str:
    """The newest link starting with ``prefix`` in the mail saved for ADDRESS, read as a person
    trying optin would: from the file the console backend wrote."""
    files = mailer.saved_mail_of(email_hash(ADDRESS))
    assert files, "the console backend saved nothing for the address"
    for path in reversed(files):
        message = email.message_from_string(Path(path).read_text(), policy=email.policy.default)
        body = message.get_body(("plain",))
        assert body is not None
        links = [link for link in LINK.findall(body.get_content()) if link.startswith(prefix)]
        if links:
            return links[0]
    raise AssertionError(f"no {prefix} link in the saved mail")


def as_the_person(client: FlaskClient, path: str, data: dict[str, str]):  # type: ignore[no-untyped-def]
    """A form posted from the person's own browser and address."""
    token = csrf_token(client, path)
    return client.post(
        path,
        data={"csrf_token": token, **data},
        headers={"User-Agent": USER_AGENT},
        environ_base={"REMOTE_ADDR": IP},
    )


def live_a_life(app: Flask, client: FlaskClient, tmp_path: Path) -> int:
    """Everything that writes about a person: a signup with a name from an IP and browser, the
    confirmation, an admin's change with a reason that names them, a bounce reported by a
    provider, a suppression added by hand with a reason, an import whose row for them was
    rejected, emails saved by the console backend and one still waiting in the outbox."""
    app.config["MAIL_BACKEND"] = "console"
    # Every change is queued for a webhook endpoint too (and stays queued: nothing sends it).
    webhook_endpoints.create_endpoint("https://crm.example.net/hooks")
    client.environ_base["HTTP_USER_AGENT"] = USER_AGENT
    signed_up = as_the_person(client, "/subscribe/newsletter", {"email": ADDRESS, "name": NAME})
    assert signed_up.status_code == 200
    run_worker()
    confirmed = as_the_person(client, saved_link(app, "/confirm/"), {})
    assert confirmed.status_code == 200
    run_worker()  # the welcome, saved too
    profile = queries.profile_by_email(ADDRESS)
    assert profile is not None and profile.name == NAME
    profile_id = profile.id

    admin = Actor(name=ADMIN_EMAIL, ip="198.51.100.9", user_agent="AdminBrowser")
    admin_actions.change_status(
        profile_id,
        Status.INVALID,
        actor=Actor(admin.name, admin.ip, admin.user_agent, ADMIN_REASON),
    )
    record_events(
        [IncomingEvent(EventType.SOFT_BOUNCE, ADDRESS, f"feedback-1:{ADDRESS}", utcnow())],
        source="ses",
        actor=Actor(name="webhook:ses"),
    )
    admin_actions.suppress_address(
        ADDRESS, actor=Actor(admin.name, admin.ip, admin.user_agent, SUPPRESSION_REASON)
    )
    csv = tmp_path / "old-tool-export.csv"
    csv.write_text(
        "email,name,status,consent date\n"
        f"{SPELLED_IN_FILE},{NAME},suspended,2024-01-01\n"
        f"{BOB},Bob,subscribed,2024-01-01\n",
        encoding="utf-8",
    )
    job = imports.import_file(str(csv), "newsletter", actor=ADMIN_EMAIL)
    db.session.rollback()
    assert job.rejected_rows == 1
    preferences.request_preferences_link(ADDRESS)  # queued, not yet sent
    db.session.rollback()
    return profile_id


def test_erasure_leaves_no_trace_of_the_person_in_any_table_or_saved_mail(
    app: Flask, client: FlaskClient, newsletter: Resource, tmp_path: Path
) -> None:
    profile_id = live_a_life(app, client, tmp_path)
    bob_files = mailer.saved_mail_of(email_hash(BOB))
    assert traces_in_database(), "the life left nothing to erase: the test proves nothing"
    assert mailer.saved_mail_of(email_hash(ADDRESS))
    events_before = count(StatusEvent)

    preferences.erase(profile_id, actor=Actor(ip=IP, user_agent=USER_AGENT))
    sent = run_worker()

    assert traces_in_database() == []
    assert mailer.saved_mail_of(email_hash(ADDRESS)) == []
    leftovers = [
        (path.name, trace)
        for path, text in saved_mail(app).items()
        for trace in TRACES
        if trace.lower() in text.lower()
    ]
    assert leftovers == []
    assert sent.sent == 0  # the waiting preference link never went out
    # The hash-only columns hold nothing but hashes.
    for where, value in every_value():
        if CLASSIFIED.get(where) == HASH:
            assert HEX64.fullmatch(value), (where, value)

    # What stays: the events as anonymous counts, the hash on the suppression list, other people.
    assert count(StatusEvent) == events_before
    assert db.session.scalar(select(StatusEvent.id).where(StatusEvent.profile_id.is_not(None)))
    suppression = queries.suppression_of(email_hash(ADDRESS))
    assert suppression is not None and suppression.email is None
    assert queries.profile_by_email(BOB) is not None
    assert mailer.saved_mail_of(email_hash(BOB)) == bob_files
    rejection = db.session.scalar(select(ImportRejection))
    assert rejection is not None and rejection.line == 2 and rejection.email is None
    assert "suspended needs an end time" in rejection.reason


def test_an_erased_address_is_kept_out_of_every_later_import(
    app: Flask, client: FlaskClient, newsletter: Resource, tmp_path: Path
) -> None:
    profile_id = live_a_life(app, client, tmp_path)
    preferences.erase(profile_id, actor=Actor())
    csv = tmp_path / "the-same-export-again.csv"
    csv.write_text(
        f"email,name,status,consent date\n{SPELLED_IN_FILE},{NAME},subscribed,2024-01-01\n",
        encoding="utf-8",
    )
    job = imports.import_file(str(csv), "newsletter", actor=ADMIN_EMAIL)
    db.session.rollback()
    assert (job.imported_rows, job.rejected_rows) == (0, 1)
    assert queries.profile_by_email(ADDRESS) is None
    # The new rejection holds the address with its hash, to be erased like the first if the
    # person asks again; nothing else brought them back.
    rejections = queries.import_rejections(job.id, limit=10)
    assert [r.email_hash for r in rejections] == [email_hash(ADDRESS)]
    assert "suppression list" in rejections[0].reason


def test_a_message_claimed_just_before_the_erasure_is_not_sent(
    app: Flask, newsletter: Resource, smtp_server: Any
) -> None:
    subscriptions.request_signup(ADDRESS, ["newsletter"], name=NAME, form="test", actor=Actor())
    now = utcnow()
    claimed = outbox._claim(10, now)  # a worker has the row in hand...
    assert [message.to_address for message in claimed] == [ADDRESS]
    profile = queries.profile_by_email(ADDRESS)
    assert profile is not None
    preferences.erase(profile.id, actor=Actor())  # ...when the person erases themselves
    assert count(OutboxMessage) == 0
    attempt = outbox._attempt(claimed[0], now)
    assert attempt.dropped_because == "profile_erased"
    assert smtp_server.messages == []


def test_a_saved_mail_file_that_cannot_be_deleted_is_logged_and_the_erasure_stands(
    app: Flask,
    newsletter: Resource,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app.config["MAIL_BACKEND"] = "console"
    subscriptions.request_signup(ADDRESS, ["newsletter"], form="test", actor=Actor())
    run_worker()
    (saved,) = mailer.saved_mail_of(email_hash(ADDRESS))

    def refuse(path: str) -> None:
        raise PermissionError(13, "Permission denied", path)

    monkeypatch.setattr(mailer.os, "remove", refuse)
    profile = queries.profile_by_email(ADDRESS)
    assert profile is not None
    with caplog.at_level(logging.ERROR, logger="app.mailer"):
        preferences.erase(profile.id, actor=Actor())
    assert queries.profile_by_email(ADDRESS) is None
    assert saved in caplog.text and "Permission denied" in caplog.text
    monkeypatch.undo()
    Path(saved).unlink()


def test_a_provider_event_id_that_spells_the_address_is_stored_with_its_hash(
    app: Flask,
) -> None:
    def bounce() -> int:
        event = IncomingEvent(
            EventType.SOFT_BOUNCE, ADDRESS.upper(), f"feedback-9:{ADDRESS.upper()}", utcnow()
        )
        return record_events([event], source="ses", actor=Actor(name="webhook:ses")).duplicates

    assert bounce() == 0
    stored = db.session.scalar(select(DeliveryEvent.event_id))
    assert stored == f"feedback-9:{email_hash(ADDRESS)}"
    assert bounce() == 1  # a redelivery is still the same event (rule 9)


def test_the_console_backend_names_each_file_by_its_recipients_hash(app: Flask) -> None:
    app.config["MAIL_BACKEND"] = "console"
    message = mailer.compose(
        to=ADDRESS, subject="Hi", text="x", html="<p>x</p>", message_id="<1@x>"
    )
    mailer.deliver(message)
    (path,) = mailer.saved_mail_of(email_hash(ADDRESS))
    assert Path(path).name.endswith(f"-{email_hash(ADDRESS)}.eml")
    assert Path(path).name[:8] == datetime.now(UTC).strftime("%Y%m%d")
    Path(path).unlink()


def test_the_migration_hashes_the_rejections_written_before_it(
    empty_database_url: str,  # noqa: F811  (the fixture imported above)
) -> None:
    app = create_app({"TESTING": True, "DATABASE_URL": empty_database_url})
    with app.app_context():
        upgrade(revision="0007")
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO import_jobs (id, filename, state, total_rows, processed_rows,"
                    " imported_rows, unchanged_rows, rejected_rows, created_at)"
                    " VALUES (1, 'old.csv', 'done', 2, 2, 0, 0, 2, :now)"
                ),
                {"now": datetime.now(UTC)},
            )
            connection.execute(
                text(
                    "INSERT INTO import_rejections (id, job_id, line, email, reason) VALUES"
                    " (1, 1, 2, :spelled, 'missing status'),"
                    " (2, 1, 3, 'not-an-address', 'malformed address')"
                ),
                {"spelled": SPELLED_IN_FILE},
            )
        upgrade()
        with db.engine.connect() as connection:
            hashes = connection.execute(
                text("SELECT email_hash FROM import_rejections ORDER BY id")
            ).scalars()
            assert list(hashes) == [email_hash(ADDRESS), None]
        db.engine.dispose()


def test_the_rate_limiters_store_keeps_no_address(
    database_url: str, _schema: None, newsletter: Resource
) -> None:
    """Redis outlives any erasure (a day's counters): the per-address limit keys by the hash."""
    store = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    namespace = f"optin-erasure-test-{uuid.uuid4().hex}"
    worker = make_app(
        database_url,
        RATELIMIT_STORAGE_URI="redis://127.0.0.1:6379/0",
        RATELIMIT_KEY_PREFIX=namespace,
        OUTBOX_DELIVER_INLINE=False,
    )
    try:
        with worker.app_context():
            client = worker.test_client()
            answer = submit(client, "/subscribe/newsletter", {"email": ADDRESS})
            assert answer.status_code == 200
        # (Flask-Limiter keeps the first app's key prefix: look for the keys by what is in them.)
        hashed = list(store.scan_iter(f"*address:{email_hash(ADDRESS)}*"))
        assert hashed, "the per-address limit counted nothing: the test proves nothing"
        assert list(store.scan_iter(f"*{ADDRESS}*")) == []
    finally:
        for key in store.scan_iter(f"*{email_hash(ADDRESS)}*"):
            store.delete(key)
