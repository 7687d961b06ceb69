"""The outbox: a change and its email commit together, a mail server that is down delays mail and
never loses it, and any number of workers send each message once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask, g
from flask.testing import FlaskClient
from sqlalchemy import delete, select, update

from app import outbox, queries
from app.database import WRITE_OPTION, utcnow, write_transaction
from app.extensions import db
from app.models import OutboxMessage, Profile, Resource
from app.services import admin_actions, subscriptions
from app.services.statuses import Actor
from tests import factories
from tests.conftest import mail_app
from tests.helpers import confirm_target, count, html_of, submit, text_of, wait_for
from tests.smtp import SmtpServer, free_port

ALICE = "alice@example.com"


def pending() -> list[OutboxMessage]:
    db.session.rollback()
    return list(db.session.scalars(select(OutboxMessage).where(OutboxMessage.sent_at.is_(None))))


def test_a_status_change_and_its_email_commit_together_or_not_at_all(
    app: Flask, newsletter: Resource, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_enqueue(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(outbox, "enqueue", broken_enqueue)
    with pytest.raises(RuntimeError):
        subscriptions.request_signup(ALICE, ["newsletter"], form="test", actor=Actor())
    assert queries.profile_by_email(ALICE) is None
    assert count(Profile) == 0


def test_a_mail_server_that_is_down_delays_the_mail_and_loses_nothing(
    database_url: str, _schema: None, newsletter: Resource
) -> None:
    port = free_port()
    down = mail_app(database_url, port)
    with down.app_context():
        client = down.test_client()
        page = submit(client, "/subscribe/newsletter", {"email": ALICE})
        assert page.status_code == 200
        assert "Check your inbox" in page.get_data(as_text=True)
        page.close()  # the web process tries to deliver once the response is done
        (waiting,) = pending()
        assert waiting.attempts == 1 and "SMTP delivery failed" in (waiting.last_error or "")
        assert waiting.next_attempt_at > utcnow()

        # Nothing is due yet: a worker leaves it alone until the backoff has passed.
        assert outbox.deliver_due().handled == 0

        server = SmtpServer(port).start()
        try:
            later = utcnow() + timedelta(minutes=5)
            assert outbox.deliver_due(now=later).sent == 1
            assert outbox.deliver_due(now=later + timedelta(hours=1)).handled == 0
            (received,) = server.messages
            assert received["To"] == ALICE
        finally:
            server.stop()
        assert pending() == []
        db.session.remove()


def test_with_no_worker_the_web_process_itself_tries_again_once_the_mail_is_due(
    database_url: str, _schema: None, newsletter: Resource
) -> None:
    """The embedded default runs no worker: were the web process not to try again, a mail
    whose first try met a mail server that was down would wait for ever."""
    port = free_port()
    web = mail_app(database_url, port, OUTBOX_WEB_RETRY_SECONDS=0.01)
    with web.app_context():
        client = web.test_client()
        submit(client, "/subscribe/newsletter", {"email": ALICE}).close()
        (waiting,) = pending()
        assert waiting.attempts == 1

        server = SmtpServer(port).start()
        try:
            # Its backoff is over (as if the minutes had passed), and so is the retry interval.
            db.session.execute(update(OutboxMessage).values(next_attempt_at=utcnow()))
            db.session.commit()
            time.sleep(0.05)
            client.get("/healthz").close()  # any request will do, once its response is out
            assert [str(message["To"]) for message in server.messages] == [ALICE]
        finally:
            server.stop()
        assert pending() == []
        db.session.remove()


def test_the_web_process_delivers_right_after_the_response(
    database_url: str, _schema: None, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    smtp_server.messages.clear()
    inline = mail_app(database_url, smtp_server.port)
    with inline.app_context():
        page = submit(inline.test_client(), "/subscribe/newsletter", {"email": ALICE})
        page.close()
        assert [m["To"] for m in smtp_server.messages] == [ALICE]
        db.session.remove()


def test_a_worker_leaves_the_web_processs_own_messages_alone(
    database_url: str, _schema: None, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    """The web process claims what it queues in the same transaction: a worker that runs between
    the commit and the send after the response does not send it too."""
    smtp_server.messages.clear()
    inline = mail_app(database_url, smtp_server.port)
    with inline.app_context():
        page = submit(inline.test_client(), "/subscribe/newsletter", {"email": ALICE})
        (queued,) = pending()
        assert queued.claimed_until is not None and queued.claimed_until > utcnow()
        assert outbox.deliver_due().handled == 0
        page.close()
        assert [m["To"] for m in smtp_server.messages] == [ALICE]
        # Until its record is written (outbox.SentRecords) it stays the web process's.
        assert outbox.deliver_due().handled == 0
        assert wait_for(lambda: pending() == [], seconds=5)
        db.session.remove()


def test_the_web_process_sends_after_the_response_only_what_its_committed_transactions_queued(
    database_url: str, _schema: None, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    """The request hands its messages to the delivery after the response from what it queued,
    without reading the rows back: a transaction rolled back queued nothing, even though SQLite
    gives its message's id to the next message (here, another address's)."""
    smtp_server.messages.clear()
    inline = mail_app(database_url, smtp_server.port)
    with inline.test_request_context():
        with pytest.raises(RuntimeError), write_transaction():
            outbox.enqueue("bob@example.com", "preferences_link", profile_id=None)
            raise RuntimeError("the rest of the change failed")
        subscriptions.request_signup(ALICE, ["newsletter"], form="test", actor=Actor())
        outbox.deliver_claimed(g.pop(outbox.CLAIMS))
        assert [m["To"] for m in smtp_server.messages] == [ALICE]
        assert wait_for(lambda: pending() == [], seconds=5)
        db.session.remove()


def test_a_message_whose_web_process_died_is_sent_when_its_lease_runs_out(
    database_url: str, _schema: None, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    smtp_server.messages.clear()
    inline = mail_app(database_url, smtp_server.port)
    with inline.app_context():
        submit(inline.test_client(), "/subscribe/newsletter", {"email": ALICE})
        # The response is never closed: the process "died" before sending.
        assert outbox.deliver_due().handled == 0
        assert outbox.deliver_due(now=utcnow() + outbox.LEASE + timedelta(seconds=1)).sent == 1
        assert [m["To"] for m in smtp_server.messages] == [ALICE]
        db.session.remove()


def test_two_workers_send_each_message_exactly_once(
    app: Flask, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    for number in range(30):
        subscriptions.request_signup(
            f"user{number}@example.com", ["newsletter"], form="test", actor=Actor()
        )
    db.session.remove()
    reports: list[outbox.DeliveryReport] = []

    def worker() -> None:
        with app.app_context():
            while True:
                report = outbox.deliver_due(limit=3)
                reports.append(report)
                if report.handled == 0:
                    break
            db.session.remove()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    received = sorted(m["To"] for m in smtp_server.messages)
    assert received == sorted(f"user{n}@example.com" for n in range(30))
    assert sum(r.sent for r in reports) == 30
    assert pending() == []


def test_a_message_that_may_no_longer_be_sent_is_dropped_not_sent(
    app: Flask, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    subscriptions.request_signup(ALICE, ["newsletter"], form="test", actor=Actor())
    db.session.execute(delete(OutboxMessage))  # the confirmation email itself
    db.session.commit()
    subscriptions.confirm_signup(confirm_target(ALICE, newsletter), actor=Actor())  # the welcome
    factories.unsubscribe(ALICE, None)  # ... and the customer leaves before it goes out
    report = outbox.deliver_due()
    assert (report.sent, report.dropped) == (0, 1)
    assert smtp_server.messages == []
    dropped = db.session.scalars(select(OutboxMessage)).one()
    assert dropped.dropped_reason == "global_unsubscribed"


def test_a_round_of_delivery_first_ends_the_transaction_its_caller_left_open(
    app: Flask, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    """As a service's write transaction does: the round reads and writes on a connection of its
    own, which would otherwise wait for its caller's write lock on SQLite (as the worker's
    import, which sends due mail between two chunks, could hold one)."""
    subscriptions.request_signup(ALICE, ["newsletter"], form="test", actor=Actor())
    db.session.connection(execution_options={WRITE_OPTION: True})  # the caller's write lock...
    db.session.execute(update(Resource).values(name="Renamed"))  # ...with a change not committed
    assert outbox.deliver_due().sent == 1
    assert [str(message["To"]) for message in smtp_server.messages] == [ALICE]
    db.session.rollback()
    assert db.session.scalars(select(Resource.name)).one() == "Renamed"  # committed, not lost


def welcome_queued(newsletter: Resource) -> None:
    """Alice confirmed the newsletter: her welcome waits in the outbox, nothing else does."""
    subscriptions.request_signup(ALICE, ["newsletter"], form="test", actor=Actor())
    db.session.execute(delete(OutboxMessage))  # the confirmation email itself
    db.session.commit()
    subscriptions.confirm_signup(confirm_target(ALICE, newsletter), actor=Actor())


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda: factories.unsubscribe(ALICE, "newsletter"), "subscription_unsubscribed"),
        (
            lambda: admin_actions.suppress_address(ALICE, actor=Actor(reason="asked by phone")),
            "suppressed",
        ),
        (lambda: factories.pause(ALICE, None, utcnow() + timedelta(days=1)), "global_suspended"),
        (
            lambda: factories.pause(ALICE, "newsletter", utcnow() + timedelta(days=1)),
            "subscription_suspended",
        ),
    ],
)
def test_the_send_time_check_reads_the_subscription_the_suppression_list_and_a_pause(
    app: Flask,
    smtp_server: SmtpServer,
    newsletter: Resource,
    change: Callable[[], object],
    reason: str,
) -> None:
    welcome_queued(newsletter)
    change()  # between the queueing and the sending
    report = outbox.deliver_due()
    assert (report.sent, report.dropped) == (0, 1)
    assert smtp_server.messages == []
    assert db.session.scalars(select(OutboxMessage.dropped_reason)).one() == reason


def test_a_pause_that_has_ended_by_the_time_of_sending_lets_the_mail_go(
    app: Flask, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    welcome_queued(newsletter)
    factories.pause(ALICE, "newsletter", utcnow() + timedelta(hours=1))
    report = outbox.deliver_due(now=utcnow() + timedelta(hours=2))
    assert (report.sent, report.dropped) == (1, 0)
    (welcome,) = smtp_server.messages
    assert welcome["To"] == ALICE and welcome["List-Unsubscribe"] is not None


@pytest.mark.parametrize(
    ("locale", "hello"), [("en", "Hello {},"), ("de", "Hallo {},"), ("fr", "Hello {},")]
)
def test_a_welcome_speaks_the_customers_language_and_escapes_their_name_in_html(
    app: Flask, smtp_server: SmtpServer, offers: Resource, locale: str, hello: str
) -> None:
    name = '<b>Ann & "Co"</b>'
    subscriptions.request_signup(ALICE, ["offers"], form="test", actor=Actor())
    profile = queries.profile_by_email(ALICE)
    assert profile is not None
    with write_transaction() as session:
        session.execute(delete(OutboxMessage))  # the welcome without a name
        outbox.enqueue(
            ALICE,
            "welcome",
            profile_id=profile.id,
            resource_id=offers.id,
            resource_name=offers.name,
            resource_description=offers.description,
            name=name,
            locale=locale,
        )
    outbox.deliver_due()
    (welcome,) = smtp_server.messages
    assert hello.format(name) in text_of(welcome)
    assert hello.format("&lt;b&gt;Ann &amp; &#34;Co&#34;&lt;/b&gt;") in html_of(welcome)
    assert name not in html_of(welcome)
    assert f'<html lang="{locale if locale != "fr" else "en"}">' in html_of(welcome)


def test_mail_about_a_resource_goes_only_to_someone_subscribed_to_it_by_email_not_by_sms(
    app: Flask, smtp_server: SmtpServer, brand: Resource
) -> None:
    factories.signup(ALICE, "brand", channel="sms")
    factories.confirm(ALICE, "brand", channel="sms")  # subscribed by SMS, never by email
    profile = queries.profile_by_email(ALICE)
    assert profile is not None
    with write_transaction():
        outbox.enqueue(
            ALICE,
            "welcome",
            profile_id=profile.id,
            resource_id=brand.id,
            resource_name=brand.name,
            resource_description=brand.description,
            name=None,
            locale=None,
        )
    report = outbox.deliver_due()
    assert (report.sent, report.dropped) == (0, 1)
    assert smtp_server.messages == []
    dropped = db.session.scalars(select(OutboxMessage)).one()
    assert dropped.dropped_reason == "no_subscription"


def test_confirmation_emails_are_capped_per_address_per_day(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource, app: Flask
) -> None:
    for _ in range(5):
        assert submit(client, "/subscribe/newsletter", {"email": ALICE}).status_code == 200
    outbox.deliver_due()
    assert len(smtp_server.messages) == app.config["CONFIRMATIONS_PER_ADDRESS_PER_DAY"] == 3


def test_backoff_grows_and_is_capped() -> None:
    waits = [outbox.backoff(n) for n in range(1, 12)]
    assert waits[0] == timedelta(seconds=30)
    assert waits == sorted(waits)
    assert waits[-1] == timedelta(hours=1)
