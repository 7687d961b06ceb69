"""The last step of sending an email: hand a rendered message to the configured backend.

``console`` (the default, for trying optin out) prints the message and writes it as an ``.eml``
file under ``instance/mail/``, so a person can open the confirmation link; ``smtp`` sends it with
Flask-Mail using the ``MAIL_*`` settings; ``discard`` builds the whole MIME message, as SMTP would,
and drops it (for benchmarks). Messages reach this module only through the outbox, which
decides what may be sent and retries what fails.
"""

from __future__ import annotations

import os
import smtplib
from datetime import UTC, datetime
from uuid import uuid4

from flask import current_app
from flask_mail import Message

from app.extensions import mail

BACKENDS = ("console", "smtp", "discard")


class MailerError(RuntimeError):
    """The backend could not take the message; the caller keeps it and tries again later."""


def deliver(message: Message) -> None:
    """Send one message through MAIL_BACKEND. Raises ``MailerError`` when it could not."""
    backend = current_app.config["MAIL_BACKEND"]
    if backend == "console":
        _write_to_console(message)
    elif backend == "discard":
        message.sender = message.sender or current_app.config["MAIL_DEFAULT_SENDER"]
        message.as_bytes()
    elif backend == "smtp":
        try:
            mail.send(message)
        except (OSError, smtplib.SMTPException) as error:
            raise MailerError(f"SMTP delivery failed: {error}") from error
    else:
        raise MailerError(f"MAIL_BACKEND must be one of {', '.join(BACKENDS)}, not {backend!r}")


def _write_to_console(message: Message) -> None:
    message.sender = message.sender or current_app.config["MAIL_DEFAULT_SENDER"]
    raw = message.as_string()
    folder = os.path.join(current_app.instance_path, "mail")
    os.makedirs(folder, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    path = os.path.join(folder, f"{stamp}-{uuid4().hex[:8]}.eml")
    with open(path, "w", encoding="utf-8") as file:
        file.write(raw)
    recipients = ", ".join(str(recipient) for recipient in message.recipients)
    print(f"\n----- email to {recipients} (saved as {path}) -----")
    print(message.body)
    print("----- end of email -----\n", flush=True)
