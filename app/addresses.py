"""Email addresses as optin stores them: validated, normalised, and hashed for suppression."""

from __future__ import annotations

import hashlib
import re

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


# A plain ASCII address: a dot-atom local part (RFC 5322's atext) of at most 64 characters and an
# ASCII host name. email_validator accepts every such local part as it is, so for these only the
# domain needs its verdict, which AddressNormalizer asks for once per domain.
_PLAIN_ADDRESS = re.compile(
    r"(?P<local>[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
    r"@(?P<domain>[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+)"
)
_MAX_LOCAL_LENGTH = 64


class AddressNormalizer:
    """``normalize_email`` for many addresses at once, as an import reads them.

    Full validation costs 25 to 60 us an address, more than everything else an import does with a
    row. Addresses in a file share a few thousand domains: a plain ASCII address is checked with a
    regular expression and its domain with the full validator once, and gives exactly what
    ``normalize_email`` gives (a property test holds it to that). Anything else takes the full path.
    """

    def __init__(self) -> None:
        self._domains: dict[str, bool] = {}

    def normalize(self, raw: str) -> str:
        """The normalised address, or ``InvalidEmail``, exactly as ``normalize_email`` answers."""
        candidate = raw.strip() if isinstance(raw, str) else raw
        if isinstance(candidate, str) and len(candidate) <= MAX_EMAIL_LENGTH:
            match = _PLAIN_ADDRESS.fullmatch(candidate)
            if match is not None and len(match["local"]) <= _MAX_LOCAL_LENGTH:
                domain = match["domain"].lower()
                known = self._domains.get(domain)
                if known is None:
                    known = self._domains[domain] = _plain_domain(domain)
                if known:
                    return candidate.lower()
        return normalize_email(raw)


def _plain_domain(domain: str) -> bool:
    """Whether the validator takes ``domain`` as it is written (lower case, no IDNA change)."""
    try:
        return normalize_email("a@" + domain) == "a@" + domain
    except InvalidEmail:
        return False
