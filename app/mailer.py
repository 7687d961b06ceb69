"""The last step of sending an email: hand a rendered message to the configured backend.

``console`` (the default, for trying optin out) prints the message and writes it as an ``.eml``
file under ``instance/mail/``, so a person can open the confirmation link (named by the time and
the recipient's hash, so that erasure finds a person's files by name alone); ``smtp`` sends it
with Flask-Mail using the ``MAIL_*`` settings; ``discard`` builds the whole MIME message, as SMTP
would, and drops it (for benchmarks). Messages reach this module only through the outbox, which
decides what may be sent and retries what fails.
"""

from __future__ import annotations

import glob
import logging
import os
import smtplib
from datetime import UTC, datetime
from uuid import uuid4

from flask import current_app
from flask_mail import Message

from app.addresses import InvalidEmail, email_hash, normalize_email
from app.extensions import mail
from app.metrics import MAIL_DELIVERIES, MAIL_FAILURES

BACKENDS = ("console", "smtp", "discard")
log = logging.getLogger(__name__)


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
            MAIL_FAILURES.inc()
            raise MailerError(f"SMTP delivery failed: {error}") from error
    else:
        MAIL_FAILURES.inc()
        raise MailerError(f"MAIL_BACKEND must be one of {', '.join(BACKENDS)}, not {backend!r}")
    MAIL_DELIVERIES.inc()


def mail_folder() -> str:
    """Where the console backend saves each message."""
    return os.path.join(current_app.instance_path, "mail")


def _owner(message: Message) -> str:
    """The end of a saved message's file name: the hash of its (first) recipient, which is all
    erasure needs to find a person's files without opening any, or a random tag."""
    for recipient in message.recipients:
        try:
            return email_hash(normalize_email(str(recipient)))
        except InvalidEmail:
            break
    return uuid4().hex


def saved_mail_of(hashed: str) -> list[str]:
    """The files the console backend saved for the address with this suppression hash."""
    folder = mail_folder()
    return sorted(glob.glob(os.path.join(glob.escape(folder), f"*-{hashed}.eml")))


def forget_saved_mail(hashed: str) -> int:
    """Delete the saved messages to an erased address; returns how many went. A file that
    cannot be deleted is logged, not raised: the erasure in the database has already happened
    and must not look failed to the person who asked for it."""
    removed = 0
    for path in saved_mail_of(hashed):
        try:
            os.remove(path)
        except FileNotFoundError:
            continue
        except OSError as error:
            log.error("could not delete the saved mail %s of an erased address: %s", path, error)
            continue
        removed += 1
    return removed


def _write_to_console(message: Message) -> None:
    message.sender = message.sender or current_app.config["MAIL_DEFAULT_SENDER"]
    raw = message.as_string()
    folder = mail_folder()
    os.makedirs(folder, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    path = os.path.join(folder, f"{stamp}-{_owner(message)}.eml")
    with open(path, "w", encoding="utf-8") as file:
        file.write(raw)
    recipients = ", ".join(str(recipient) for recipient in message.recipients)
    print(f"\n----- email to {recipients} (saved as {path}) -----")
    print(message.body)
    print("----- end of email -----\n", flush=True)
