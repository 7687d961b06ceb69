"""Every process survives a database restart and a mail outage (issue 10, item 3): mail the server
accepted is never sent again, a killed worker re-sends at most the message in flight, the worker
waits out a database that is gone, and the web answers 503 meanwhile, never a 500."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, select, text, update
from sqlalchemy.engine import make_url

from app import outbox
from app.database import utcnow, write_transaction
from app.extensions import db
from app.models import OutboxMessage, Resource
from app.services import subscriptions
from app.services.statuses import Actor
from tests.conftest import TEST_DATABASE_URL, make_app, on_postgres
from tests.faults import TcpProxy
from tests.helpers import wait_for
from tests.smtp import SmtpServer, free_port

PROJECT = Path(__file__).resolve().parent.parent
ADDRESSES = [f"reader{number}@example.com" for number in range(5)]
needs_postgres = pytest.mark.skipif(
    not on_postgres(), reason="a database server to cut off: TEST_DATABASE_URL=postgresql://..."
)


class Killed(BaseException):
    """What SIGKILL does to a worker, as far as the database can tell: it stops mid-statement,
    recording nothing more (a BaseException, so no ``except Exception`` catches it)."""


def queue_signups(addresses: list[str]) -> None:
    for address in addresses:
        subscriptions.request_signup(address, ["newsletter"], form="test", actor=Actor())
    db.session.remove()


def after_each_accepted(
    monkeypatch: pytest.MonkeyPatch, count: int, then: Callable[[], None]
) -> list[str]:
    """Run ``then`` right after the mail server has accepted the ``count``-th message; the list
    returned fills with the recipient of every message handed to the mail server."""
    tried: list[str] = []
    real = outbox.deliver

    def deliver(message: Any) -> None:
        tried.append(str(message["To"]))
        real(message)
        if len(tried) == count:
            then()

    monkeypatch.setattr(outbox, "deliver", deliver)
    return tried


def outbox_worker_process(
    database_url: str, instance: Path, *, idle: float, **settings: str
) -> subprocess.Popen[str]:
    """`flask outbox work` in a process of its own, as an operator runs it; its log on stderr."""
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "OPTIN_INSTANCE_PATH": str(instance),
        "SECRET_KEY": "test-secret",
        "OUTBOX_DELIVER_INLINE": "false",
        **settings,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", "outbox", "work", "--idle", str(idle)],
        cwd=PROJECT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def received_by(server: SmtpServer) -> Counter[str]:
    return Counter(str(message["To"]) for message in server.messages)


def test_a_mail_server_that_goes_down_mid_batch_gets_nothing_it_accepted_again(
    app: Flask,
    smtp_server: SmtpServer,
    newsletter: Resource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue_signups(ADDRESSES)
    tried = after_each_accepted(monkeypatch, 2, smtp_server.stop)
    try:
        report = outbox.deliver_due()
    finally:
        smtp_server.start()
    assert (report.sent, report.failed) == (2, 3)
    assert len(tried) == 3  # the two accepted, and one refused
    # The rest of the batch waits its backoff without a knock on the dead server each.
    waiting = list(db.session.scalars(select(OutboxMessage).where(OutboxMessage.sent_at.is_(None))))
    assert [m.attempts for m in waiting] == [1, 1, 1]
    assert all("SMTP delivery failed" in (m.last_error or "") for m in waiting)

    assert outbox.deliver_due(now=utcnow() + timedelta(minutes=5)).sent == 3
    assert received_by(smtp_server) == Counter(ADDRESSES)


def test_a_worker_killed_mid_batch_sends_again_only_the_message_in_flight(
    app: Flask,
    smtp_server: SmtpServer,
    newsletter: Resource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue_signups(ADDRESSES)

    def kill() -> None:
        raise Killed

    # Killed after the server accepted the third message and before that was recorded.
    after_each_accepted(monkeypatch, 3, kill)
    with pytest.raises(Killed):
        outbox.deliver_due()
    db.session.remove()
    monkeypatch.undo()

    # Its claimed messages are nobody's until the lease runs out, then another worker's.
    assert outbox.deliver_due().handled == 0
    after_lease = utcnow() + outbox.lease() + timedelta(seconds=1)
    assert outbox.deliver_due(now=after_lease).sent == 3
    received = received_by(smtp_server)
    assert set(received) == set(ADDRESSES)
    assert [address for address, times in received.items() if times > 1] == [ADDRESSES[2]]


def unreachable_app(**config: object) -> Flask:
    """An app whose database is a PostgreSQL address nothing listens on: a server that is down."""
    return make_app(f"postgresql://optin@127.0.0.1:{free_port()}/optin", **config)


def test_while_the_database_is_unreachable_pages_answer_a_friendly_503() -> None:
    client = unreachable_app().test_client()
    for answer in (
        client.get("/subscribe/newsletter"),
        client.post("/subscribe/newsletter/embed", data={"email": "alice@example.com"}),
        client.get("/", headers={"Accept-Language": "de"}),
    ):
        assert answer.status_code == 503
        # At least our 30 s (the rate limiter may ask for longer, till its window ends).
        assert int(answer.headers["Retry-After"]) >= 30
        assert answer.mimetype == "text/html"
    assert "Back in a moment" in client.get("/subscribe/newsletter").get_data(as_text=True)
    assert "Gleich wieder da" in answer.get_data(as_text=True)


def test_while_the_database_is_unreachable_the_api_and_webhooks_answer_503_in_json() -> None:
    client = unreachable_app(
        POSTMARK_WEBHOOK_USERNAME="hook", POSTMARK_WEBHOOK_PASSWORD="secret"
    ).test_client()
    bounce = {"RecordType": "Bounce", "Type": "HardBounce", "Email": "a@example.com", "ID": 1}
    for answer in (
        client.get(
            "/api/v1/eligibility?email=a@example.com",
            headers={"Authorization": "Bearer optin_whatever"},
        ),
        client.post("/webhooks/postmark", json=bounce, auth=("hook", "secret")),
    ):
        assert answer.status_code == 503
        assert int(answer.headers["Retry-After"]) >= 30
        assert answer.json is not None and answer.json["error"]["code"] == "unavailable"


@pytest.mark.slow
@needs_postgres
def test_after_a_database_restart_no_request_meets_a_dead_pooled_connection(
    database_url: str, _schema: None, newsletter: Resource
) -> None:
    tagged = make_url(database_url).update_query_dict({"application_name": "optin-pool-test"})
    web = make_app(tagged.render_as_string(hide_password=False))
    client = web.test_client()
    with web.app_context():
        assert client.get("/subscribe/newsletter").status_code == 200  # a connection is pooled
        with db.engine.connect() as other:
            other.execute(text("SELECT 1"))  # a second one, so both are cut
            db.engine.pool.status()
        cut = db.session.scalar(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'optin-pool-test' AND pid <> pg_backend_pid()"
            )
        )
        db.session.remove()
        assert cut >= 1
        for _ in range(3):
            assert client.get("/subscribe/newsletter").status_code == 200
        db.engine.dispose()


@pytest.fixture
def database_proxy() -> Iterator[TcpProxy]:
    assert TEST_DATABASE_URL
    url = make_url(TEST_DATABASE_URL)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    yield proxy
    proxy.down()


@pytest.mark.slow
@needs_postgres
def test_a_worker_waits_out_a_database_that_is_gone_and_delivers_when_it_is_back(
    app: Flask,
    smtp_server: SmtpServer,
    newsletter: Resource,
    database_proxy: TcpProxy,
    tmp_path: Path,
) -> None:
    assert TEST_DATABASE_URL
    through_proxy = make_url(TEST_DATABASE_URL).set(host="127.0.0.1", port=database_proxy.port)
    # Started while the database is down: it must not give up before it ever connected.
    worker = outbox_worker_process(
        through_proxy.render_as_string(hide_password=False),
        tmp_path,
        idle=0.2,
        MAIL_BACKEND="smtp",
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=str(smtp_server.port),
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(worker.stderr.readline, "")))
    reader.start()

    def outages_seen() -> int:
        return sum("database unreachable" in line for line in list(lines))

    def recoveries_seen() -> int:
        return sum("database back after" in line for line in list(lines))

    try:
        # Waits for the worker's own word rather than a fixed time: on a loaded machine its start
        # alone can take longer than the outage was meant to last.
        assert wait_for(lambda: outages_seen() == 1), "no outage seen before the database came"
        assert worker.poll() is None, "the worker exited while the database was down"
        queue_signups(ADDRESSES[:1])
        database_proxy.up()
        assert wait_for(lambda: len(smtp_server.messages) == 1), "nothing sent after the restart"
        # The worker counts itself back once its whole round has run, which is after the mail
        # server took the message: a cut before that would be the same outage to the worker.
        assert wait_for(lambda: recoveries_seen() == 1), "the worker never said it was back"

        database_proxy.down()  # a restart: every connection cut, the port closed for a while
        queue_signups(ADDRESSES[1:2])
        assert wait_for(lambda: outages_seen() == 2), "the cut went unnoticed"
        assert worker.poll() is None, "the worker exited when its connections were cut"
        database_proxy.up()
        assert wait_for(lambda: len(smtp_server.messages) == 2), "nothing sent after the restart"
        assert worker.poll() is None
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        reader.join(timeout=30)
    log = "".join(lines)
    assert received_by(smtp_server) == Counter(ADDRESSES[:2])
    # One line when each outage began and one when it ended, not one per try.
    assert log.count("database unreachable") == 2, log
    assert log.count("database back after") == 2, log


@pytest.mark.slow
def test_sigterm_ends_an_idle_worker_at_once_and_cleanly(
    app: Flask, smtp_server: SmtpServer, newsletter: Resource, database_url: str, tmp_path: Path
) -> None:
    queue_signups(ADDRESSES[:1])  # its delivery shows that the worker is in its loop
    worker = outbox_worker_process(
        database_url,
        tmp_path,
        idle=5,
        MAIL_BACKEND="smtp",
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=str(smtp_server.port),
    )
    try:
        # Started (however long that takes on a loaded machine), a round done, waiting for mail.
        assert wait_for(lambda: len(smtp_server.messages) == 1), "the worker sent nothing"
        assert worker.poll() is None
        worker.terminate()
        _out, log = worker.communicate(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, log  # a deploy's SIGTERM is a stop, not a crash
    assert "Traceback" not in log


def test_sigterm_during_a_round_lets_the_round_finish_and_starts_no_other(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app import worker

    rounds: list[int] = []

    def a_round_interrupted_by_a_deploy(batch: int) -> outbox.DeliveryReport:
        rounds.append(batch)
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the message is with the server
        rounds.append(-batch)  # the round was not cut short
        return outbox.DeliveryReport(sent=1)

    monkeypatch.setattr(outbox, "deliver_due", a_round_interrupted_by_a_deploy)
    previous = signal.getsignal(signal.SIGTERM)
    worker.work(10, 0.01, echo=lambda _line: None)  # returns instead of looping forever
    assert rounds == [10, -10]
    assert signal.getsignal(signal.SIGTERM) == previous  # the test process's own handler is back


def test_a_database_restart_right_after_the_server_accepted_a_message_does_not_send_it_again(
    app: Flask, smtp_server: SmtpServer, newsletter: Resource, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The moment between the mail server's yes and the row marked sent: a database restart
    there used to leave the message claimed, to be sent again once its lease ran out. The
    restart is the driver's own error on the mark's UPDATE, whatever connection carries it."""
    queue_signups(ADDRESSES[:2])
    driver_error = db.engine.dialect.loaded_dbapi.OperationalError
    restarts: list[Exception] = []
    after_each_accepted(
        monkeypatch,
        1,
        lambda: restarts.append(driver_error("server closed the connection unexpectedly")),
    )

    def restart_before_the_mark(_connection: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if restarts and statement.lstrip().upper().startswith("UPDATE OUTBOX"):
            raise restarts.pop()

    event.listen(db.engine, "before_cursor_execute", restart_before_the_mark)
    try:
        report = outbox.deliver_due(10)
    finally:
        event.remove(db.engine, "before_cursor_execute", restart_before_the_mark)
    assert report.sent == 2
    assert received_by(smtp_server) == Counter(ADDRESSES[:2])
    # Every lease long over: nothing is left to send again.
    with write_transaction() as session:
        session.execute(update(OutboxMessage).values(claimed_until=utcnow() - timedelta(hours=1)))
    assert outbox.deliver_due(10).handled == 0
    assert received_by(smtp_server) == Counter(ADDRESSES[:2])


@needs_postgres
def test_a_connection_the_database_dropped_after_the_answer_was_made_is_not_a_500(
    app: Flask, database_url: str
) -> None:
    """A restart between a page's last read and the end of its request: ending the request's
    session rolls back over a dead connection, which used to turn a finished answer into a 500."""
    import psycopg

    server = make_app(database_url)  # its requests push their own app context, as in gunicorn

    @server.get("/test-read-then-restart")
    def read_then_restart() -> str:
        pid = db.session.execute(text("SELECT pg_backend_pid()")).scalar()
        admin = make_url(database_url).set(drivername="postgresql")
        with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", (pid,))
        return "read"

    answer = server.test_client().get("/test-read-then-restart")
    assert answer.status_code == 200
    assert answer.get_data(as_text=True) == "read"
