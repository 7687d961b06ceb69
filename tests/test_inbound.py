"""Unsubscribe by mail (issue 12, item 1): ``flask inbound``'s receiver, a real aiosmtpd server on
127.0.0.1, and smtplib sending what a mail client sends when its user picks the mailto of the
``List-Unsubscribe`` header of a message optin really sent."""

from __future__ import annotations

import os
import re
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import make_url

from app import PROJECT_ROOT, queries
from app.extensions import db
from app.inbound_server import InboundServer
from app.models import Resource
from app.services import preferences
from app.services.eligibility import decide
from app.services.inbound import tokens_in_subject
from app.services.statuses import Actor
from app.services.subscriptions import confirm_signup
from app.status import Cause
from app.tokens import LinkSigner, Purpose
from tests import test_outages
from tests.conftest import TEST_DATABASE_URL, make_app
from tests.faults import TcpProxy
from tests.helpers import confirm_target, database_state, run_worker, submit, subscribed
from tests.smtp import SmtpServer, free_port

# A PostgreSQL server behind a proxy that a test cuts off and brings back (the outage tests').
database_proxy = test_outages.database_proxy
needs_postgres = test_outages.needs_postgres

ALICE = "alice@example.com"
MAILBOX = "unsubscribe@optin.test"


@pytest.fixture
def receiver(app: Flask) -> Iterator[InboundServer]:
    """``flask inbound`` on a free port, in process, on the test's app and database."""
    app.config["UNSUBSCRIBE_MAILTO"] = MAILBOX
    server = InboundServer(app, host="127.0.0.1", port=free_port(), max_bytes=64 * 1024)
    server.start()
    yield server
    server.stop()


def mailto_of_welcome(smtp_server: SmtpServer) -> tuple[str, str]:
    """The address and subject of the mailto in the List-Unsubscribe of the welcome email optin
    sent (and the test SMTP server received), as a mail client reads them."""
    run_worker()
    welcome = next(m for m in reversed(smtp_server.messages) if m["List-Unsubscribe"])
    found = re.search(r"<mailto:([^>]+)>", str(welcome["List-Unsubscribe"]))
    assert found, welcome["List-Unsubscribe"]
    url = urlsplit(found.group(1))
    return unquote(url.path), parse_qs(url.query)["subject"][0]


def subscriber(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource
) -> tuple[str, str]:
    """Alice, who signed up to the newsletter and confirmed, and the mailto of the welcome email
    that followed."""
    assert submit(client, "/subscribe/newsletter", {"email": ALICE}).status_code == 200
    confirm_signup(confirm_target(ALICE, newsletter), actor=Actor())
    return mailto_of_welcome(smtp_server)


def send(
    server: InboundServer, to: str, subject: str, body: str | None = None, **headers: str
) -> None:
    """Send what a mail client sends for a mailto: From, To, the subject, maybe a body."""
    message = EmailMessage()
    message["From"] = f"Alice <{ALICE}>"
    message["To"] = to
    message["Subject"] = subject
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    if body is not None:
        message.set_content(body)
    with smtplib.SMTP(server.hostname, server.port) as client:
        client.send_message(message)


def newsletter_status() -> str | None:
    db.session.rollback()  # see what the receiver's thread committed
    return decide(ALICE, "newsletter").subscription_status


def test_the_mailto_of_a_welcome_email_unsubscribes_from_that_resource_as_one_click_does(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource, receiver: InboundServer
) -> None:
    to, subject = subscriber(client, smtp_server, newsletter)
    assert to == MAILBOX
    assert subject.startswith("unsubscribe ")
    assert newsletter_status() == "subscribed"
    send(receiver, to, subject)  # no body at all, as Apple Mail sends it
    db.session.rollback()  # see what the receiver's thread committed
    result = decide(ALICE, "newsletter")
    assert not result.allowed
    assert result.subscription_status == "unsubscribed"
    assert result.global_status == "subscribed"  # the link named the newsletter only (rule 2)
    profile = queries.profile_by_email(ALICE)
    assert profile is not None
    last = queries.events_of_profile(profile.id)[-1]
    assert last.cause == Cause.MAILTO == "mailto"
    assert last.reason == f"mail from {ALICE}"
    assert smtp_server.messages[-1]["Subject"] != subject  # nothing was sent back


@pytest.mark.parametrize(
    "prefix", ["", "Re: ", "RE: ", "AW: ", "Fwd: ", "WG: Re: ", "[EXTERNAL] Fw: "]
)
def test_a_reply_or_forward_prefix_and_a_body_still_unsubscribe(
    client: FlaskClient,
    smtp_server: SmtpServer,
    newsletter: Resource,
    receiver: InboundServer,
    prefix: str,
) -> None:
    to, subject = subscriber(client, smtp_server, newsletter)
    send(receiver, to, prefix + subject, body="Please take me off this list.\n\nAlice")
    assert newsletter_status() == "unsubscribed"


def test_an_encoded_folded_subject_and_a_quoted_printable_body_unsubscribe(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource, receiver: InboundServer
) -> None:
    to, subject = subscriber(client, smtp_server, newsletter)
    token = subject.removeprefix("unsubscribe ")
    # As Outlook writes it: the subject in RFC 2047 encoded-words, folded over two lines, the
    # body quoted-printable.
    raw = (
        f"From: =?utf-8?q?J=C3=BCrgen_Alice?= <{ALICE}>\r\n"
        f"To: {to}\r\n"
        "Subject: =?utf-8?q?AW=3A_unsubscribe?=\r\n"
        f" =?utf-8?b?IA==?= {token}\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n"
        "\r\n"
        "Bitte keine E-Mails mehr, gr=C3=BC=C3=9Fe\r\n"
    ).encode("ascii")
    with smtplib.SMTP(receiver.hostname, receiver.port) as client:
        client.sendmail(ALICE, [to], raw)
    assert newsletter_status() == "unsubscribed"


def test_the_same_mail_twice_changes_and_records_nothing_the_second_time(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource, receiver: InboundServer
) -> None:
    to, subject = subscriber(client, smtp_server, newsletter)
    send(receiver, to, subject)
    before = database_state()
    send(receiver, to, subject)
    assert database_state() == before


def test_a_message_for_a_database_wide_send_unsubscribes_globally(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource, receiver: InboundServer
) -> None:
    from app.links import links_for

    profile = subscribed(ALICE, "newsletter")
    mailto = links_for(profile.id, profile.link_key, None).list_unsubscribe.split("<mailto:")[1]
    subject = unquote(mailto.split("?subject=")[1].rstrip(">"))
    send(receiver, MAILBOX, subject)
    db.session.rollback()
    assert decide(ALICE, None).global_status == "unsubscribed"
    assert decide(ALICE, "newsletter").subscription_status == "subscribed"  # rule 3


def test_mail_to_any_other_address_is_refused_at_rcpt(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource, receiver: InboundServer
) -> None:
    _, subject = subscriber(client, smtp_server, newsletter)
    for stranger in ("postmaster@optin.test", "unsubscribe@elsewhere.test", "alice@example.com"):
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            send(receiver, stranger, subject)
        code, answer = refused.value.recipients[stranger]
        assert code == 550 and answer.startswith(b"5.1.1"), (code, answer)
    assert newsletter_status() == "subscribed"


def test_the_address_is_matched_without_case(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource, receiver: InboundServer
) -> None:
    _, subject = subscriber(client, smtp_server, newsletter)
    send(receiver, "Unsubscribe@OPTIN.test", subject)
    assert newsletter_status() == "unsubscribed"


@pytest.mark.parametrize(
    "tamper",
    [
        lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),  # forged signature
        lambda token: token.replace("-email-", "-sms-"),  # another channel, same signature
        lambda token: "1" + token,  # another profile
        lambda token: "",  # no token at all
        lambda token: "please",  # words instead
    ],
)
def test_a_bad_or_missing_token_changes_nothing_and_is_accepted_silently(
    client: FlaskClient,
    smtp_server: SmtpServer,
    newsletter: Resource,
    receiver: InboundServer,
    tamper,
) -> None:
    to, subject = subscriber(client, smtp_server, newsletter)
    token = subject.removeprefix("unsubscribe ")
    sent_before = len(smtp_server.messages)
    before = database_state()
    send(receiver, to, f"unsubscribe {tamper(token)}", body="unsubscribe me")
    assert database_state() == before
    assert len(smtp_server.messages) == sent_before  # no auto-reply, no bounce of its own


def test_a_token_of_a_key_rotated_out_changes_nothing(
    app: Flask,
    client: FlaskClient,
    smtp_server: SmtpServer,
    newsletter: Resource,
    receiver: InboundServer,
) -> None:
    to, subject = subscriber(client, smtp_server, newsletter)
    app.config["SECRET_KEY"] = "a new key"
    app.config["SECRET_KEY_FALLBACKS"] = []
    before = database_state()
    send(receiver, to, subject)
    assert database_state() == before


def test_a_genuine_token_that_cannot_be_applied_is_accepted_not_deferred_for_days(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource, receiver: InboundServer
) -> None:
    to, _ = subscriber(client, smtp_server, newsletter)
    profile = queries.profile_by_email(ALICE)
    assert profile is not None
    # Signed with the real key, for a channel optin does not have.
    token = LinkSigner(Purpose.UNSUBSCRIBE).token(profile.id, profile.link_key, None, "fax")
    before = database_state()
    send(receiver, to, f"unsubscribe {token}")  # a 451 would raise here
    assert database_state() == before


def test_the_mail_of_an_erased_profile_changes_nothing(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource, receiver: InboundServer
) -> None:
    to, subject = subscriber(client, smtp_server, newsletter)
    profile = queries.profile_by_email(ALICE)
    assert profile is not None
    preferences.erase(profile.id, actor=Actor())
    before = database_state()
    send(receiver, to, subject)
    assert database_state() == before


def test_erasure_forgets_the_sending_address_recorded_with_the_unsubscribe(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource, receiver: InboundServer
) -> None:
    to, subject = subscriber(client, smtp_server, newsletter)
    message_from = "alice.private@elsewhere.example"
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = message_from, to, subject
    with smtplib.SMTP(receiver.hostname, receiver.port) as client:
        client.send_message(message)
    db.session.rollback()
    profile = queries.profile_by_email(ALICE)
    assert profile is not None
    events = queries.events_of_profile(profile.id)
    assert events[-1].reason == f"mail from {message_from}"
    preferences.erase(profile.id, actor=Actor())
    from sqlalchemy import select

    from app.models import StatusEvent

    reasons = db.session.scalars(select(StatusEvent.reason)).all()
    assert not any(message_from in (reason or "") for reason in reasons)


def test_a_legacy_keyless_token_unsubscribes_by_mail_as_its_one_click_does(
    client, newsletter: Resource, receiver: InboundServer
) -> None:
    from tests.test_legacy_links import confirmed, from_before_the_upgrade, old_unsubscribe_link

    alice = confirmed(client, ALICE, newsletter)
    from_before_the_upgrade(alice)
    token = old_unsubscribe_link(alice.id, newsletter.id).removeprefix("/unsubscribe/")
    send(receiver, MAILBOX, f"unsubscribe {token}")
    assert newsletter_status() == "unsubscribed"
    db.session.rollback()
    assert decide(ALICE, None).global_status == "subscribed"


def test_a_legacy_token_of_a_profile_made_after_the_upgrade_changes_nothing(
    client, newsletter: Resource, receiver: InboundServer
) -> None:
    from tests.test_legacy_links import confirmed, old_unsubscribe_link

    alice = confirmed(client, ALICE, newsletter)  # not marked legacy_links
    token = old_unsubscribe_link(alice.id, newsletter.id).removeprefix("/unsubscribe/")
    before = database_state()
    send(receiver, MAILBOX, f"unsubscribe {token}")
    assert database_state() == before


def test_a_message_over_the_size_limit_is_refused(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource, receiver: InboundServer
) -> None:
    to, subject = subscriber(client, smtp_server, newsletter)
    big = "x" * 70 + "\n"
    # A client that reads SIZE from EHLO is refused at MAIL FROM...
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        send(receiver, to, subject, body=big * 1000)
    assert refused.value.smtp_code == 552
    # ...and one that sends anyway, at the end of DATA.
    with smtplib.SMTP(receiver.hostname, receiver.port) as client:
        client.ehlo()
        assert client.has_extn("size") and int(client.esmtp_features["size"]) == 64 * 1024
        client.mail(ALICE)
        client.rcpt(to)
        code, _ = client.data(
            f"Subject: {subject}\r\n\r\n".encode() + big.encode().replace(b"\n", b"\r\n") * 1000
        )
    assert code == 552
    assert newsletter_status() == "subscribed"


def test_lmtp_for_a_local_mail_server_unsubscribes_and_refuses_strangers(
    app: Flask, client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    app.config["UNSUBSCRIBE_MAILTO"] = MAILBOX
    server = InboundServer(app, host="127.0.0.1", port=free_port(), protocol="lmtp")
    server.start()
    try:
        to, subject = subscriber(client, smtp_server, newsletter)
        with smtplib.LMTP(server.hostname, server.port) as client:
            assert client.helo()[0] == 500  # LMTP speaks LHLO only
        with smtplib.LMTP(server.hostname, server.port) as client:
            refused = client.sendmail(
                ALICE, [to, "root@optin.test"], f"Subject: Re: {subject}\r\n\r\nbye\r\n"
            )
        assert list(refused) == ["root@optin.test"]
        assert newsletter_status() == "unsubscribed"
    finally:
        server.stop()


def test_while_the_database_is_unreachable_mail_is_deferred_with_a_451() -> None:
    from tests.test_outages import unreachable_app

    app = unreachable_app(UNSUBSCRIBE_MAILTO=MAILBOX)
    with app.app_context():  # a genuine token: a forged one needs no database to be refused
        token = LinkSigner(Purpose.UNSUBSCRIBE).token(1, "0" * 32, None)
    server = InboundServer(app, host="127.0.0.1", port=free_port())
    server.start()
    try:
        with smtplib.SMTP(server.hostname, server.port) as client:
            client.ehlo()
            client.mail(ALICE)
            assert client.rcpt(MAILBOX)[0] == 250
            code, answer = client.data(f"Subject: unsubscribe {token}\r\n\r\n".encode())
        assert code == 451 and answer.startswith(b"4.3.0"), (code, answer)
    finally:
        server.stop()


def test_flask_inbound_says_clearly_what_is_wrong_with_its_settings(app: Flask, runner) -> None:
    app.config["INBOUND_PROTOCOL"] = "pop3"
    result = runner.invoke(args=["inbound"])
    assert result.exit_code == 2
    assert "INBOUND_PROTOCOL is smtp or lmtp" in result.output
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = runner.invoke(args=["inbound", "--protocol", "smtp", "--port", str(port)])
    assert result.exit_code == 1
    assert "cannot listen" in result.output


@pytest.mark.slow
def test_the_flask_inbound_command_unsubscribes_and_stops_cleanly_on_sigterm(
    app: Flask,
    client: FlaskClient,
    smtp_server: SmtpServer,
    newsletter: Resource,
    database_url: str,
    tmp_path,
) -> None:
    app.config["UNSUBSCRIBE_MAILTO"] = MAILBOX
    to, subject = subscriber(client, smtp_server, newsletter)
    port = free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "OPTIN_INSTANCE_PATH": str(tmp_path),
        "SECRET_KEY": "test-secret",  # the app fixture's: the welcome's token is signed with it
        "UNSUBSCRIBE_MAILTO": MAILBOX,
    }
    command = [sys.executable, "-m", "flask", "--app", "app", "inbound", "--port", str(port)]
    process = subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # a loaded machine takes seconds to start a Python process
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "did not start"
                time.sleep(0.2)
        with smtplib.SMTP("127.0.0.1", port) as sender:
            sender.sendmail(ALICE, [to], f"Subject: Re: {subject}\r\n\r\n".encode())
        assert newsletter_status() == "unsubscribed"
        process.terminate()
        log, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, log
    assert "Traceback" not in log
    assert "unsubscribe mail from 127.0.0.1: unsubscribed" in log


@pytest.mark.slow
@needs_postgres
def test_a_mail_deferred_during_a_database_restart_unsubscribes_when_the_sender_retries(
    app: Flask,
    client: FlaskClient,
    smtp_server: SmtpServer,
    newsletter: Resource,
    database_proxy: TcpProxy,
) -> None:
    app.config["UNSUBSCRIBE_MAILTO"] = MAILBOX
    to, subject = subscriber(client, smtp_server, newsletter)
    assert TEST_DATABASE_URL
    url = make_url(TEST_DATABASE_URL).set(host="127.0.0.1", port=database_proxy.port)
    proxied = make_app(url.render_as_string(hide_password=False), UNSUBSCRIBE_MAILTO=MAILBOX)
    database_proxy.up()
    with proxied.app_context():  # a pooled connection, which the restart will cut
        db.session.execute(text("SELECT 1"))
        db.session.remove()
    server = InboundServer(proxied, host="127.0.0.1", port=free_port())
    server.start()
    try:
        database_proxy.down()
        with pytest.raises(smtplib.SMTPDataError) as deferred:
            send(server, to, subject)
        assert deferred.value.smtp_code == 451
        assert newsletter_status() == "subscribed"
        database_proxy.up()
        send(server, to, subject)  # what the sending server does with a 451: it tries again
        assert newsletter_status() == "unsubscribed"
    finally:
        server.stop()
        with proxied.app_context():
            db.engine.dispose()


# --- Reading the subject: a rule, so property-tested -------------------------------------------

TOKEN = st.from_regex(
    r"[0-9]{1,6}-[0-9]{0,6}-email-[0-9a-f]{32}\.[A-Za-z0-9_-]{27}", fullmatch=True
)
PREFIX = st.sampled_from(
    ["Re:", "RE:", "AW:", "Aw:", "Fwd:", "FW:", "WG:", "SV:", "[EXT]", "Antw:"]
)


@given(
    token=TOKEN, prefixes=st.lists(PREFIX, max_size=4), spaces=st.sampled_from([" ", "  ", "\t"])
)
def test_the_token_is_read_behind_any_prefixes(
    token: str, prefixes: list[str], spaces: str
) -> None:
    subject = " ".join(prefixes) + (" " if prefixes else "") + f"Unsubscribe{spaces}{token}"
    assert tokens_in_subject(subject)[0] == token


@given(st.text())
def test_a_subject_without_the_word_unsubscribe_has_no_token(subject: str) -> None:
    if "unsubscribe" not in subject.casefold():
        assert tokens_in_subject(subject) == []
