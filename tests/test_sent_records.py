"""The records of the mails the web process sends after its responses (outbox.SentRecords): they
ride in the process's next write transaction instead of taking the write lock once more, a
timer writes them when no write comes, and none is lost or written over another claim's."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, select, text
from sqlalchemy.exc import DBAPIError, OperationalError

from app import outbox
from app.database import WRITE_OPTION, utcnow, write_transaction
from app.extensions import db
from app.models import OutboxMessage, Resource
from tests.conftest import mail_app
from tests.helpers import submit, wait_for
from tests.smtp import SmtpServer

ALICE = "alice@example.com"
BOB = "bob@example.com"
ROOT = Path(__file__).resolve().parent.parent


def message_to(address: str) -> OutboxMessage:
    db.session.rollback()  # a fresh look at what is committed
    return db.session.execute(
        select(OutboxMessage).where(OutboxMessage.to_address == address)
    ).scalar_one()


def recorded(address: str) -> bool:
    return message_to(address).sent_at is not None


def web_app(database_url: str, smtp_server: SmtpServer, delay: float) -> Flask:
    smtp_server.messages.clear()
    return mail_app(database_url, smtp_server.port, OUTBOX_RECORD_DELAY_SECONDS=delay)


@contextmanager
def write_commits_counted() -> Iterator[list[int]]:
    """How many write transactions the app's engine commits inside the block."""
    counted = [0]

    def count(connection: Any) -> None:
        if connection.get_execution_options().get(WRITE_OPTION):
            counted[0] += 1

    event.listen(db.engine, "commit", count)
    try:
        yield counted
    finally:
        event.remove(db.engine, "commit", count)


def test_the_record_of_a_mail_sent_after_the_response_rides_in_the_next_write(
    database_url: str, _schema: None, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    web = web_app(database_url, smtp_server, delay=60)
    with web.app_context():
        client = web.test_client()
        page = submit(client, "/subscribe/newsletter", {"email": ALICE})
        with write_commits_counted() as writes:
            page.close()  # the confirmation goes out after the response
        assert [m["To"] for m in smtp_server.messages] == [ALICE]
        assert writes == [0]  # no write transaction of its own for the record
        waiting = message_to(ALICE)
        assert waiting.sent_at is None and waiting.claimed_until is not None
        assert outbox.deliver_due().handled == 0  # still this process's: nobody sends it again

        # The next signup's transaction writes it, before that signup's own mail goes out.
        second = submit(client, "/subscribe/newsletter", {"email": BOB})
        sent = message_to(ALICE)
        assert sent.sent_at is not None and sent.claimed_until is None and sent.attempts == 1
        second.close()
        outbox.sent_records().write()  # type: ignore[union-attr]
        assert recorded(BOB)
        assert sorted(m["To"] for m in smtp_server.messages) == [ALICE, BOB]
        db.session.remove()


def test_with_no_write_to_ride_in_a_timer_writes_the_record(
    database_url: str, _schema: None, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    web = web_app(database_url, smtp_server, delay=0.05)
    with web.app_context():
        submit(web.test_client(), "/subscribe/newsletter", {"email": ALICE}).close()
        assert wait_for(lambda: recorded(ALICE), seconds=5)
        assert message_to(ALICE).attempts == 1
        # Recorded: not sent again, not even once the web process's claim would have run out.
        later = utcnow() + outbox.LEASE + timedelta(seconds=1)
        assert outbox.deliver_due(now=later).handled == 0
        assert [m["To"] for m in smtp_server.messages] == [ALICE]
        db.session.remove()


def test_a_record_that_rode_in_a_transaction_rolled_back_is_written_later(
    database_url: str, _schema: None, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    web = web_app(database_url, smtp_server, delay=60)
    with web.app_context():
        submit(web.test_client(), "/subscribe/newsletter", {"email": ALICE}).close()
        with pytest.raises(RuntimeError), write_transaction():
            # Inside, the record is written: the transaction began with it.
            assert db.session.scalar(
                select(OutboxMessage.sent_at).where(OutboxMessage.to_address == ALICE)
            )
            raise RuntimeError("the change failed")
        assert not recorded(ALICE)  # rolled back with the change...
        outbox.sent_records().write()  # type: ignore[union-attr]
        assert recorded(ALICE)  # ...and waited for the next write
        assert [m["To"] for m in smtp_server.messages] == [ALICE]
        db.session.remove()


def test_a_record_whose_write_fails_as_a_transaction_begins_waits_again(
    database_url: str,
    _schema: None,
    smtp_server: SmtpServer,
    newsletter: Resource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    web = web_app(database_url, smtp_server, delay=60)
    with web.app_context():
        submit(web.test_client(), "/subscribe/newsletter", {"email": ALICE}).close()
        waiting = outbox.sent_records()
        assert waiting is not None and len(waiting) == 1
        with monkeypatch.context() as broken:
            broken.setattr(outbox, "_HELD_MARK", text("UPDATE outbox SET no_such_column = 1"))
            with pytest.raises(DBAPIError), write_transaction():
                pass
        db.session.rollback()
        assert len(waiting) == 1 and not recorded(ALICE)
        waiting.write()
        assert recorded(ALICE)
        db.session.remove()


def test_a_late_record_does_not_write_over_the_claim_that_followed_it(
    database_url: str, _schema: None, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    """Were a record to wait past the lease, a worker takes the message for lost and sends it
    again; the record the worker writes is the one that stands."""
    web = web_app(database_url, smtp_server, delay=60)
    with web.app_context():
        submit(web.test_client(), "/subscribe/newsletter", {"email": ALICE}).close()
        later = utcnow() + outbox.LEASE + timedelta(seconds=1)
        assert outbox.deliver_due(now=later).sent == 1
        assert [m["To"] for m in smtp_server.messages] == [ALICE, ALICE]
        by_the_worker = message_to(ALICE).sent_at
        assert by_the_worker is not None
        outbox.sent_records().write()  # type: ignore[union-attr]
        # The web process's record, of the earlier send, matched no claim of its own any more.
        assert message_to(ALICE).sent_at == by_the_worker
        db.session.remove()


def test_a_record_the_database_refuses_waits_and_is_written_on_a_later_try(
    database_url: str,
    _schema: None,
    smtp_server: SmtpServer,
    newsletter: Resource,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    web = web_app(database_url, smtp_server, delay=0.05)
    refusals = [0]
    write_marks = outbox._write_marks

    def refuse_twice(*args: Any, **kwargs: Any) -> None:
        if refusals[0] < 2:
            refusals[0] += 1
            raise OperationalError("UPDATE outbox", {}, Exception("disk I/O error"))
        write_marks(*args, **kwargs)

    monkeypatch.setattr(outbox, "_write_marks", refuse_twice)
    with web.app_context():
        submit(web.test_client(), "/subscribe/newsletter", {"email": ALICE}).close()
        assert wait_for(lambda: recorded(ALICE), seconds=10)
        assert refusals == [2]
        assert [m["To"] for m in smtp_server.messages] == [ALICE]
        db.session.remove()
    # One line when the trouble began and one when it ended, not one per try.
    lines = [r.getMessage() for r in caplog.records if r.name == "app.outbox"]
    assert len(lines) == 2, lines
    assert "unreachable" in lines[0] and "disk I/O error" in lines[0]
    assert " back after " in lines[1]


def test_a_process_that_exits_writes_the_records_that_wait(
    database_url: str, _schema: None, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    smtp_server.messages.clear()
    script = textwrap.dedent(
        f"""
        from tests.conftest import mail_app
        from tests.helpers import submit
        web = mail_app({database_url!r}, {smtp_server.port}, OUTBOX_RECORD_DELAY_SECONDS=600)
        with web.app_context():
            submit(web.test_client(), "/subscribe/newsletter", {{"email": {ALICE!r}}}).close()
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True, timeout=60)
    with mail_app(database_url, smtp_server.port).app_context():
        assert recorded(ALICE)
        assert [m["To"] for m in smtp_server.messages] == [ALICE]
        db.session.remove()
