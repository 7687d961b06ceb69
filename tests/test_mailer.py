"""The mail backends: the console one that `make run` uses, and SMTP to a real server."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest
from flask import Flask

from app.mailer import MailerError, compose, deliver
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
