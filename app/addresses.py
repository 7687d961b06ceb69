"""Email addresses as optin stores them: validated, normalised, and hashed for suppression."""

from __future__ import annotations

import hashlib
import re
import unicodedata

import email_validator
from email_validator import EmailNotValidError, validate_email

MAX_EMAIL_LENGTH = 254  # RFC 5321's limit on a forward path


# The plain addresses nearly everyone has, which email-validator accepts unchanged but for case:
# a dot-atom local part, LDH labels, an alphabetic top-level domain. Checking these with a regular
# expression costs a microsecond instead of email-validator's 30 or more, which matters when a
# batch of 10,000 addresses is checked. Anything else, and any label that might be IDNA ("xn--"
# and the like), goes through email-validator; a property test holds the two to the same answers.
_ATOM = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
PLAIN_ADDRESS = re.compile(
    rf"(?P<local>{_ATOM}(?:\.{_ATOM})*)@(?P<domain>(?:{_LABEL}\.)+(?P<tld>[a-z]{{1,63}}))"
)
# Labels with hyphens in the third and fourth place are reserved for IDNA (RFC 5891 4.2.3.1).
_RESERVED_HYPHENS = re.compile(r"(?:^|\.)..--")


def plain_address(candidate: str) -> str | None:
    """``candidate`` in lower case when it is a plain ASCII address that email-validator would
    accept as it is; None when only email-validator can tell."""
    if not candidate.isascii():
        return None
    lowered = candidate.lower()
    found = PLAIN_ADDRESS.fullmatch(lowered)
    if found is None or len(found["local"]) > 64 or len(found["domain"]) > 253:
        return None
    domain = found["domain"]
    if _RESERVED_HYPHENS.search(domain):
        return None
    for special in email_validator.SPECIAL_USE_DOMAIN_NAMES:
        if domain == special or domain.endswith("." + special):
            return None
    return lowered


class InvalidEmail(ValueError):
    """The address is not one optin can store or send to."""


def normalize_email(raw: str) -> str:
    """The one spelling of an address: syntax checked (no DNS), Unicode normalised, lower case.

    Lower-casing the local part too is what every large mailbox provider does in practice, and it
    keeps one customer from becoming two profiles.
    """
    if not isinstance(raw, str):
        raise InvalidEmail("an email address must be text")
    candidate = raw.strip()
    if not candidate:
        raise InvalidEmail("an email address is required")
    if len(candidate) > MAX_EMAIL_LENGTH or any(ch in candidate for ch in "\r\n\0"):
        raise InvalidEmail("this is not a valid email address")
    plain = plain_address(candidate)
    if plain is not None:
        return plain
    try:
        valid = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidEmail(str(error)) from None
    return valid.normalized.lower()


def email_hash(normalized: str) -> str:
    """SHA-256 of a normalised address: the suppression key that survives erasure."""
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def hash_address_in(text: str, normalized: str) -> str:
    """``text`` with the address, in any case, replaced by its hash: for an identifier that
    spells it (SES's per-recipient event ids do) and must not keep it after an erasure."""
    return re.sub(re.escape(normalized), email_hash(normalized), text, flags=re.IGNORECASE)


def search_key(text: str | None) -> str | None:
    """``text`` as the admin's search compares it: case folded by Python (``str.casefold``,
    accents kept) in one Unicode form. Stored beside the email and the name, so that SQLite
    (whose ``lower()`` folds ASCII only) and PostgreSQL find the same rows for "é", "ß" or "Σ"."""
    if text is None:
        return None
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).casefold())
