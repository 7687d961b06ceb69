"""Unsubscribe by mail (SPEC §5): the mailto half of every ``List-Unsubscribe`` header (RFC 2369)
is ``mailto:UNSUBSCRIBE_MAILTO?subject=unsubscribe%20TOKEN``. A mail client that uses it sends a
message with that subject; ``flask inbound`` (app/inbound_server.py) or a provider's inbound hook
hands it here, and it unsubscribes exactly as the one-click POST of the same token does
(``subscriptions.unsubscribe_by_link``: the link's resource, or the global status for a link
without one; a legacy keyless token as far as it goes there), with cause ``mailto``.

The token is the whole proof, as it is for the one-click POST: the sending address is not
compared with the profile's (forwarding and aliases make them differ), only recorded, as the
event's reason, which erasure blanks with the rest of the profile's personal data.

Nothing is ever sent back: a bad, forged or rotated-out token, a subject without one, or a profile
that is gone changes nothing, and the outcome says which for the log. An auto-reply to an
address anyone can forge would be backscatter.
"""

from __future__ import annotations

import logging
import re
from contextlib import suppress
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parseaddr
from enum import StrEnum

from app.services import subscriptions
from app.services.errors import NotFound
from app.services.statuses import Actor
from app.status import Cause
from app.tokens import Purpose, TokenInvalid, read_token

log = logging.getLogger(__name__)

# "unsubscribe TOKEN" anywhere in the subject, so that any prefix a client or a gateway adds
# ("Re:", "AW:", "Fwd:", "[EXT]") is skipped; "%20" for a client that did not decode the mailto.
# A token is letters, digits, "-", "_" and "." (tokens.py).
TOKEN_IN_SUBJECT = re.compile(r"\bunsubscribe(?:\s|%20)+([A-Za-z0-9_.\-]+)", re.IGNORECASE)
# Tokens tried per message: a subject stuffed with a thousand forged ones costs no more than this.
MOST_TOKENS = 5
# Longest sending address kept in the event's reason (RFC 5321's limit on a path).
LONGEST_ADDRESS = 256


@dataclass(frozen=True)
class InboundMail:
    """What optin reads of a received message: its subject and who sent it."""

    subject: str
    sender: str | None = None


class MailOutcome(StrEnum):
    """What a received message did, for the log and a provider hook's answer."""

    UNSUBSCRIBED = "unsubscribed"
    ALREADY = "already"  # a valid token whose unsubscribe was done before (rule 9)
    INVALID = "invalid"  # forged, tampered, rotated out, or its profile is gone
    # Bandit takes a name with "token" in it for a password.
    NO_TOKEN = "no_token"  # nosec B105


def tokens_in_subject(subject: str) -> list[str]:
    """The candidate tokens in a subject line, in order. Dots that end a token are punctuation
    (a sentence's full stop): no token ends with one."""
    found = TOKEN_IN_SUBJECT.findall(subject)[:MOST_TOKENS]
    return [token.rstrip(".") for token in found]


def _header(message: EmailMessage, name: str) -> object:
    """A header as the modern policy parses it (encoded-words decoded, folding undone), or None
    when it is missing or too broken to parse: a bad header of a stranger's mail is no error."""
    with suppress(ValueError, TypeError, IndexError, LookupError, AttributeError):
        return message[name]
    return None


def mail_of_message(raw: bytes, envelope_sender: str | None = None) -> InboundMail:
    """The subject and sender of an RFC 5322 message (headers only are read). The sender is the
    ``From:`` address, what the person sees as theirs; the envelope sender (often a bounce
    address) only when there is none."""
    message = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
    subject = _header(message, "Subject")
    return InboundMail(
        subject=str(subject) if subject is not None else "",
        sender=_address_of(_header(message, "From")) or envelope_sender or None,
    )


def address_in(text: str) -> str | None:
    """The address in a ``From:`` value as a provider passes it on ("Alice <alice@example.com>")."""
    return parseaddr(text)[1] or None


def _address_of(header: object) -> str | None:
    addresses = getattr(header, "addresses", ())
    with suppress(TypeError, ValueError, AttributeError):
        for address in addresses:
            if isinstance(address, Address) and address.addr_spec:
                return str(address.addr_spec)
    return None


def unsubscribe_by_mail(mail: InboundMail) -> MailOutcome:
    """Apply the first valid unsubscribe token in the subject, as the one-click POST applies it,
    with cause ``mailto`` and the sender recorded. A database error propagates: the receiver
    answers it with a temporary failure, so the message is sent again rather than lost."""
    candidates = tokens_in_subject(mail.subject)
    if not candidates:
        return MailOutcome.NO_TOKEN
    sender = (mail.sender or "")[:LONGEST_ADDRESS] or "unknown"
    actor = Actor(reason=f"mail from {sender}")
    for token in candidates:
        try:
            target = read_token(Purpose.UNSUBSCRIBE, token)
        except TokenInvalid:
            continue
        try:
            done = subscriptions.unsubscribe_by_link(
                target, everything=False, cause=Cause.MAILTO, actor=actor
            )
        except (NotFound, ValueError):
            # A profile that is gone (GoneProfile), or a genuine token that cannot be applied
            # (a channel or a change the rules refuse: RuleError and InvalidInput are
            # ValueErrors): a temporary failure would only have the sender retry it for days.
            return MailOutcome.INVALID
        return MailOutcome.UNSUBSCRIBED if done.result.events else MailOutcome.ALREADY
    return MailOutcome.INVALID


def unsubscribe_by_mails(mails: list[InboundMail]) -> dict[str, int]:
    """A provider hook's messages, each applied as ``unsubscribe_by_mail`` (each its own
    transaction: a retry of the request after a failure half-way changes nothing twice), counted
    by outcome for the hook's answer."""
    counts = {outcome.value: 0 for outcome in MailOutcome}
    for mail in mails:
        outcome = unsubscribe_by_mail(mail)
        log.info("unsubscribe mail through a provider: %s", outcome.value)
        counts[outcome.value] += 1
    return counts
