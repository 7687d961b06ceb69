"""The mail backends: the console one that `make run` uses, and SMTP to a real server."""

from __future__ import annotations

import email
import email.policy
import io
from email.generator import BytesGenerator
from email.message import EmailMessage
from pathlib import Path

import pytest
from flask import Flask

from app.mailer import MailerError, compose, deliver, list_id
from tests.conftest import mail_app
from tests.smtp import SmtpServer, free_port


def a_message() -> EmailMessage:
    return compose(
        to="alice@example.com",
        subject="Please confirm",
        text="Click https://example.org/confirm/abc",
        html="<p>Click <a href='https://example.org/confirm/abc'>here</a></p>",
        message_id="<abc@example.org>",
    )


def test_the_console_backend_prints_and_saves_each_message(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    app.config["MAIL_BACKEND"] = "console"
    deliver(a_message())
    printed = capsys.readouterr().out
    assert "email to alice@example.com" in printed
    assert "Click https://example.org/confirm/abc" in printed
    saved = list((Path(app.instance_path) / "mail").glob("*.eml"))
    assert any("Subject: Please confirm" in path.read_text() for path in saved)


def test_the_smtp_backend_delivers_to_a_real_server(
    database_url: str, smtp_server: SmtpServer
) -> None:
    smtp_server.messages.clear()
    with mail_app(database_url, smtp_server.port).app_context():
        deliver(a_message())
    (received,) = smtp_server.messages
    assert received["To"] == "alice@example.com"
    assert received["Subject"] == "Please confirm"
    assert (
        received.get_body(("plain",)).get_content().strip()
        == "Click https://example.org/confirm/abc"
    )
    assert "<a href=" in received.get_body(("html",)).get_content()


def test_a_mail_server_that_is_down_is_a_mailer_error(database_url: str) -> None:
    with mail_app(database_url, free_port()).app_context(), pytest.raises(MailerError):
        deliver(a_message())


def test_an_unknown_backend_is_a_clear_error(app: Flask) -> None:
    app.config.update(MAIL_BACKEND="pigeon")
    with pytest.raises(MailerError, match="MAIL_BACKEND"):
        deliver(a_message())


def test_a_long_list_unsubscribe_reaches_the_mail_program_whole(app: Flask) -> None:
    """The standard library folds a word longer than a line into encoded-words, which no mail
    program reads as a URI: the header is folded between its URIs and nowhere else."""
    https = "<https://optin.test/unsubscribe/" + "a" * 150 + ">"
    mailto = "<mailto:unsubscribe@optin.test?subject=unsubscribe%20" + "b" * 150 + ">"
    message = compose(
        to="alice@example.com",
        subject="Welcome",
        text="Hello",
        html="<p>Hello</p>",
        message_id="<abc@example.org>",
        headers={"List-Unsubscribe": f"{https}, {mailto}"},
    )
    raw = message.as_bytes()
    assert f"List-Unsubscribe: {https},\r\n {mailto}\r\n".encode() in raw
    assert b"=?" not in raw


def test_a_subject_that_is_not_ascii_is_encoded_and_comes_back_whole(app: Flask) -> None:
    subject = "Bitte bestätigen Sie Ihre Anmeldung zu Grüße aus Köln und noch viel mehr Text"
    message = compose(
        to="alice@example.com",
        subject=subject,
        text="Hallo",
        html="<p>Hallo</p>",
        message_id="<a@b.c>",
    )
    raw = message.as_bytes()
    assert raw.isascii() and all(len(line) <= 78 for line in raw.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")  # SMTP's line ends only
    assert email.message_from_bytes(raw, policy=email.policy.default)["Subject"] == subject


def generated(message: EmailMessage) -> bytes:
    """What the standard library's generator writes for a message."""
    out = io.BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=message.policy).flatten(message)
    return out.getvalue()


@pytest.mark.parametrize(
    ("to", "subject", "text", "html"),
    [
        ("alice@example.com", "Please confirm", "Hello", "<p>Hello</p>"),
        (
            "jörg@example.com",  # SMTPUTF8: its headers go as UTF-8
            "Grüße aus Köln " * 8,
            "Zeile eins\r\nZeile zwei\rdrei\nFrom here\n" + "ü" * 200,
            "<p>" + "é" * 300 + "</p>\n",
        ),
        ("anna@bücher.de", "Hi", "", "<p>\tx =3D y</p>"),
    ],
)
def test_a_composed_message_writes_the_bytes_the_standard_librarys_generator_writes(
    app: Flask, to: str, subject: str, text: str, html: str
) -> None:
    app.config["MAIL_DEFAULT_SENDER"] = ("Jürgen von Bücher", "news@example.org")
    https = "<https://optin.test/unsubscribe/" + "a" * 150 + ">"
    message = compose(
        to=to,
        subject=subject,
        text=text,
        html=html,
        message_id="<abc@example.org>",
        headers={
            "List-Id": list_id("news", 'Grüße "Spezial"'),
            "List-Unsubscribe": f"{https}, <mailto:u@optin.test>",
        },
    )
    assert message.as_bytes() == generated(message)
    assert bytes(message) == generated(message)


def test_a_header_added_after_composing_is_written_by_the_generator(app: Flask) -> None:
    message = a_message()
    message["X-Campaign"] = "spring"  # stored as a header object, which the join does not write
    assert message.as_bytes() == generated(message)
    assert b"X-Campaign: spring\r\n" in message.as_bytes()


def test_a_line_break_in_a_header_is_refused(app: Flask) -> None:
    with pytest.raises(ValueError, match="line break"):
        compose(
            to="alice@example.com",
            subject="Hi\r\nBcc: everyone@example.com",
            text="x",
            html="<p>x</p>",
            message_id="<a@b.c>",
        )


def test_an_internationalised_domain_is_sent_as_idna(
    database_url: str, smtp_server: SmtpServer
) -> None:
    smtp_server.messages.clear()
    with mail_app(database_url, smtp_server.port).app_context():
        deliver(
            compose(
                to="anna@bücher.de", subject="Hi", text="x", html="<p>x</p>", message_id="<a@b.c>"
            )
        )
    (received,) = smtp_server.messages
    assert received["To"] == "anna@xn--bcher-kva.de"
    assert received["X-RcptTo"] == "anna@xn--bcher-kva.de"
