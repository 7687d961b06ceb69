"""Email addresses as optin stores them: validated, normalised, and hashed for suppression."""

from __future__ import annotations

import hashlib

from email_validator import EmailNotValidError, validate_email

MAX_EMAIL_LENGTH = 254  # RFC 5321's limit on a forward path


class InvalidEmail(ValueError):
    """The address is not one optin can store or send to."""


def normalize_email(raw: str) -> str:
    """The one spelling of an address: syntax checked (no DNS), domain in IDNA form, lower case.

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
    try:
        valid = validate_email(candidate, check_deliverability=False)
    except EmailNotValidError as error:
        raise InvalidEmail(str(error)) from None
    return valid.normalized.lower()


def email_hash(normalized: str) -> str:
    """SHA-256 of a normalised address: the suppression key that survives erasure."""
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()
