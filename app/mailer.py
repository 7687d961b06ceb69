"""The last steps of sending an email: build the MIME message, and hand it to the backend.

``compose`` builds the message with the standard library's ``email`` package: one
``multipart/alternative`` of a text and an HTML part, no ``multipart/mixed`` around it, and the
headers that mailbox providers and filters read (``List-Id``, ``Message-ID`` on the sender's
domain, ``Feedback-ID``; the outbox decides their values). Flask-Mail stays the transport: its
connection reads the ``MAIL_*`` settings (server, port, TLS, login).

``console`` (the default, for trying optin out) prints the message and writes it as an ``.eml``
file under ``instance/mail/``, so a person can open the confirmation link (named by the time and
the recipient's hash, so that erasure finds a person's files by name alone); ``smtp`` sends it
through Flask-Mail's connection; ``discard`` serialises the whole message, as SMTP would, and
drops it (for benchmarks). Messages reach this module only through the outbox, which decides
what may be sent and retries what fails.
"""

from __future__ import annotations

import binascii
import functools
import glob
import hashlib
import hmac
import logging
import os
import re
import secrets
import smtplib
from collections.abc import Mapping
from datetime import UTC, datetime
from email.header import Header
from email.message import EmailMessage, Message
from email.policy import SMTP, Policy
from email.utils import format_datetime, formataddr, parseaddr
from urllib.parse import urlsplit
from uuid import uuid4

from email_validator import EmailNotValidError, validate_email
from flask import current_app

from app.addresses import InvalidEmail, email_hash, normalize_email
from app.extensions import mail
from app.metrics import MAIL_DELIVERIES, MAIL_FAILURES

BACKENDS = ("console", "smtp", "discard")
log = logging.getLogger(__name__)

# RFC 5322 wants header lines of at most 78 characters and RFC 2045 quoted-printable lines of at
# most 76; 76 serves both. Headers are folded by ``_folded`` below and stored raw, so the policy
# must not fold them again: the standard library turns a word longer than a line (a URI in
# List-Unsubscribe) into encoded-words, which no mail program reads as a URI.
POLICY = SMTP.clone(max_line_length=76, refold_source="none")
# For a recipient whose local part is not ASCII: the headers go as UTF-8, under SMTPUTF8.
POLICY_UTF8 = POLICY.clone(utf8=True)
LINE = 78


class MailerError(RuntimeError):
    """The backend could not take the message; the caller keeps it and tries again later."""


def sender() -> str:
    """The From header: MAIL_DEFAULT_SENDER (a string, or Flask-Mail's (name, address) pair),
    its display name encoded for a header when it is not ASCII."""
    return _sender_of(_configured_sender())


def sender_domain() -> str:
    """The domain that names optin's messages (``Message-ID``, ``List-Id``, ``Feedback-ID``):
    the sender's, which its owner controls. A sender on a name without a dot (the demo's
    ``noreply@localhost``) names nothing unique to this installation, so optin's public host
    (BASE_URL) names them then."""
    return _domain_of(_configured_sender(), current_app.config["BASE_URL"])


# Each message asks for the sender four times: parsed once per setting, not once per message
# (read from the settings each time, so a changed setting, as tests make, is seen at once).
def _configured_sender() -> str | tuple[str, str]:
    configured = current_app.config["MAIL_DEFAULT_SENDER"]
    if isinstance(configured, tuple | list):
        return str(configured[0]), str(configured[1])
    return str(configured)


@functools.lru_cache(maxsize=16)
def _sender_of(configured: str | tuple[str, str]) -> str:
    name, address = configured if isinstance(configured, tuple) else parseaddr(configured)
    return formataddr((name, address))


@functools.lru_cache(maxsize=16)
def _domain_of(configured: str | tuple[str, str], base_url: str) -> str:
    domain = parseaddr(_sender_of(configured))[1].rpartition("@")[2].lower()
    if "." not in domain:
        domain = urlsplit(base_url).hostname or domain
    return domain


def message_id(key: str) -> str:
    """A Message-ID on the sender's domain that is the same each time it is made from ``key``:
    a delivery retried after an unknown outcome (a timeout after the mail server took the
    message) carries the id of the first try, and receivers drop the duplicate. Keyed with
    SECRET_KEY, so no other installation makes the same ids and none of ``key`` can be read
    from it."""
    secret = current_app.config["SECRET_KEY"]
    secret_bytes = secret if isinstance(secret, bytes) else str(secret).encode()
    digest = hmac.new(secret_bytes, key.encode(), hashlib.sha256).hexdigest()[:32]
    return f"<{digest}@{sender_domain()}>"


def list_id(label: str, name: str) -> str:
    """An RFC 2919 List-Id: the list's name as a phrase, and ``<label.domain>``, a name under the
    sender's domain that stays the same for as long as the list does."""
    return f"{_phrase(name)} <{label}.{sender_domain()}>"


def _phrase(words: str) -> str:
    """``words`` as an RFC 5322 phrase: a quoted string, or encoded-words (RFC 2047) when they
    are not ASCII."""
    words = " ".join(words.split())
    if words.isascii():
        return '"' + words.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return _encoded_words(None, words)


def compose(
    *,
    to: str,
    subject: str,
    text: str,
    html: str,
    message_id: str,
    headers: Mapping[str, str] | None = None,
) -> EmailMessage:
    """The MIME message: multipart/alternative of ``text`` and ``html``, From the configured
    sender, and ``headers`` (ASCII, or encoded here) after the usual ones."""
    recipient, needs_utf8 = envelope_address(to)
    message = ComposedMessage(policy=POLICY_UTF8 if needs_utf8 else POLICY)
    _set(message, "From", sender())
    _set(message, "To", recipient)
    _set(message, "Subject", subject)
    _set(message, "Date", format_datetime(datetime.now(UTC)))
    _set(message, "Message-ID", message_id)
    for name, value in (headers or {}).items():
        _set(message, name, value)
    _set(message, "MIME-Version", "1.0")
    # Written out rather than left to make_alternative/set_content, which parse each header they
    # set and re-encode in Python: that was two thirds of the cost of a message. "=_" never
    # occurs in quoted-printable text, so the boundary needs no search through the parts.
    message.boundary = f"=_{secrets.token_hex(12)}"
    message.set_raw("Content-Type", f'multipart/alternative;\n boundary="{message.boundary}"')
    message.set_alternatives(text, html)
    return message


class ComposedMessage(EmailMessage):
    """The message ``compose`` builds, which writes its own bytes.

    Every header of it is stored as it is sent (``set_raw``, folded and encoded by ``_set``) and
    its parts are text in quoted-printable, so its bytes are its lines joined by CRLF: the
    standard library's generator writes the same bytes (a test compares the two, byte for
    byte), but it reads each part's Content-Type through the header registry's parser to learn
    what it already holds, which cost more than all the rest of the message. Anything the join
    does not know (a header set as an object, parts set by someone else) goes to the
    generator."""

    boundary = ""

    def __init__(self, policy: Policy) -> None:
        super().__init__(policy=policy)
        # Each text part's bytes, in the order of the parts.
        self._part_bytes: list[bytes] = []

    def set_alternatives(self, text: str, html: str) -> None:
        """The two parts: ``text`` and ``html``, each in UTF-8, quoted-printable."""
        parts: list[Message | str] = []
        self._part_bytes = []
        for content, subtype in ((text, "plain"), (html, "html")):
            part, wire = _text_part(content, subtype, self.policy)
            parts.append(part)
            self._part_bytes.append(wire)
        self.set_payload(parts)

    def as_bytes(self, unixfrom: bool = False, policy: Policy | None = None) -> bytes:
        """The message as SMTP carries it: what ``BytesGenerator`` writes, by a join."""
        headers = list(self.raw_items())
        parts = self.get_payload()
        if (
            unixfrom
            or policy not in (None, self.policy)
            or not all(isinstance(value, str) for _name, value in headers)
            or not self.boundary
            or not isinstance(parts, list)
            or len(parts) != len(self._part_bytes)
        ):
            return super().as_bytes(unixfrom, policy)
        delimiter = f"--{self.boundary}\r\n".encode("ascii")
        return b"".join(
            (
                _header_section(headers, self.policy),
                delimiter,
                (b"\r\n" + delimiter).join(self._part_bytes),
                f"\r\n--{self.boundary}--\r\n".encode("ascii"),
            )
        )


def _text_part(content: str, subtype: str, policy: Policy) -> tuple[EmailMessage, bytes]:
    """One text part in UTF-8, quoted-printable (lines of at most 76 characters, RFC 2045), and
    its bytes as sent."""
    if not content.endswith("\n"):
        content += "\n"  # a text ends its last line, before the boundary's own line break
    headers = [
        ("Content-Type", f'text/{subtype}; charset="utf-8"'),
        ("Content-Transfer-Encoding", "quoted-printable"),
    ]
    encoded = binascii.b2a_qp(content.encode("utf-8"), istext=True).decode("ascii")
    part = EmailMessage(policy=policy)
    for name, value in headers:
        part.set_raw(name, value)
    part.set_payload(encoded)
    # The generator writes each line end of a text part as CRLF.
    body = "\r\n".join(_LINE_END.split(encoded)).encode("ascii")
    return part, _header_section(headers, policy) + body


# The line ends the generator reads in a text part.
_LINE_END = re.compile(r"\r\n|\r|\n")


def _header_section(headers: list[tuple[str, str]], policy: Policy) -> bytes:
    """Headers stored raw as the generator writes them (``EmailPolicy.fold_binary`` with
    ``refold_source="none"``: each line of a value ended by CRLF), and the blank line after."""
    lines = [f"{name}: " + "\r\n".join(value.splitlines()) + "\r\n" for name, value in headers]
    lines.append("\r\n")
    charset = "utf-8" if getattr(policy, "utf8", False) else "ascii"
    return "".join(lines).encode(charset, "surrogateescape")


def envelope_address(address: str) -> tuple[str, bool]:
    """``address`` as SMTP and the To header carry it, and whether that needs SMTPUTF8: an
    internationalised domain goes as IDNA (A-labels), which every server takes; only a local
    part that is not ASCII needs a server that speaks SMTPUTF8 (RFC 6531)."""
    if address.isascii():
        return address, False
    try:
        ascii_email = validate_email(address, check_deliverability=False).ascii_email
    except EmailNotValidError:
        return address, True
    return (ascii_email, False) if ascii_email else (address, True)


def _set(message: EmailMessage, name: str, value: str) -> None:
    """Store a header as it will be sent: folded at spaces, encoded when it is not ASCII (but the
    To of an SMTPUTF8 message, which goes as UTF-8). A line break in a value would start a header
    of its own, so it is refused."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"a line break in the {name} header")
    if value.isascii() or message.policy is POLICY_UTF8:
        message.set_raw(name, _folded(name, value))
    else:
        message.set_raw(name, _encoded_words(name, value))


# The values encoded here are a sender's name, subjects and list names: the same few, message
# after message (a resource's name in a template), and none holds anything a customer typed.
# The standard library's encoder tries both encodings, a character at a time, for each.
@functools.lru_cache(maxsize=256)
def _encoded_words(name: str | None, value: str) -> str:
    """``value`` as RFC 2047 encoded-words in UTF-8, folded to lines of at most 78 characters
    (the first one after ``name``, the header's name, when there is one)."""
    return Header(value, "utf-8", header_name=name).encode(maxlinelen=LINE)


def _folded(name: str, value: str) -> str:
    """``value`` folded at its spaces into lines of at most 78 characters where its words allow,
    never inside a word: a URI reaches the mail program whole."""
    lines: list[str] = []
    current = ""
    room = LINE - len(name) - 2  # the first line starts with the name
    for word in value.split(" "):
        if current and len(current) + 1 + len(word) > room:
            lines.append(current)
            current, room = word, LINE - 1  # a continuation line starts with a space
        else:
            current = f"{current} {word}" if current else word
    lines.append(current)
    return "\n ".join(lines)


def deliver(message: EmailMessage) -> None:
    """Send one message through MAIL_BACKEND. Raises ``MailerError`` when it could not."""
    backend = current_app.config["MAIL_BACKEND"]
    if backend == "console":
        _write_to_console(message)
    elif backend == "discard":
        message.as_bytes()
    elif backend == "smtp":
        try:
            _send_over_smtp(message)
        except (OSError, smtplib.SMTPException) as error:
            MAIL_FAILURES.inc()
            raise MailerError(f"SMTP delivery failed: {error}") from error
    else:
        MAIL_FAILURES.inc()
        raise MailerError(f"MAIL_BACKEND must be one of {', '.join(BACKENDS)}, not {backend!r}")
    MAIL_DELIVERIES.inc()


def _send_over_smtp(message: EmailMessage) -> None:
    """Hand the finished bytes to Flask-Mail's connection (server, TLS and login from the
    ``MAIL_*`` settings). With MAIL_SUPPRESS_SEND Flask-Mail opens no connection: nothing goes."""
    raw = message.as_bytes()
    envelope_from = parseaddr(sender())[1]
    recipient = str(message["To"])
    options = ["SMTPUTF8"] if message.policy is POLICY_UTF8 else []
    with mail.connect() as connection:
        if connection.host is not None:
            connection.host.sendmail(envelope_from, [recipient], raw, mail_options=options)


def mail_folder() -> str:
    """Where the console backend saves each message."""
    return os.path.join(current_app.instance_path, "mail")


def _owner(message: EmailMessage) -> str:
    """The end of a saved message's file name: the hash of its recipient, which is all erasure
    needs to find a person's files without opening any, or a random tag."""
    try:
        return email_hash(normalize_email(parseaddr(str(message["To"]))[1]))
    except InvalidEmail:
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


def _write_to_console(message: EmailMessage) -> None:
    raw = message.as_bytes()
    folder = mail_folder()
    os.makedirs(folder, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    path = os.path.join(folder, f"{stamp}-{_owner(message)}.eml")
    with open(path, "wb") as file:
        file.write(raw)
    body = message.get_body(("plain",))
    text = body.get_content() if body is not None else ""
    print(f"\n----- email to {message['To']} (saved as {path}) -----")
    print(text)
    print("----- end of email -----\n", flush=True)
