"""Standard Webhooks signatures (https://www.standardwebhooks.com): the three headers of a
delivery, and the secret they are made with.

Written by hand rather than with the ``standardwebhooks`` package: signing is the HMAC below,
and the package would bring an HTTP client and date parser that optin does not use. The tests
check these signatures with the package itself, so the two cannot drift apart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# What every Standard Webhooks secret starts with.
PREFIX = "whsec_"


def new_secret() -> str:
    """A secret as the specification writes it: ``whsec_`` and 32 random bytes in base64."""
    return PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """``v1,`` and the base64 HMAC-SHA256 of ``id.timestamp.body`` under the secret's key."""
    key = base64.b64decode(secret.removeprefix(PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one attempt: signed anew each time, with the time of that attempt, since a
    receiver refuses a timestamp more than a few minutes old."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
        "content-type": "application/json",
        "user-agent": "optin-webhooks",
    }
