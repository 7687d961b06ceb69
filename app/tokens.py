"""Signed links: one itsdangerous serializer per purpose, so that a token minted for one purpose
never works for another, and a key list so that the secret can be rotated.

A token carries the profile, the resource (None: the link is about the profile as a whole, and an
unsubscribe through it is global, SPEC §1 rule 2) and the channel. Confirmation tokens also carry
what the signup form showed (its name and the consent text version), so the proof of consent
needs no state kept for people who never confirm.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer


class Purpose(StrEnum):
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"


class TokenInvalid(ValueError):
    """Tampered with, minted for another purpose, or signed by a key that was rotated out."""


class TokenExpired(TokenInvalid):
    """Genuine but too old. ``target`` is still trustworthy: the signature checked out."""

    def __init__(self, target: LinkTarget) -> None:
        super().__init__("this link has expired")
        self.target = target


@dataclass(frozen=True)
class LinkTarget:
    """What a link is about."""

    profile_id: int
    resource_id: int | None
    channel: str = "email"
    form: str | None = None
    consent_text_id: int | None = None


def _serializer(purpose: Purpose) -> URLSafeTimedSerializer:
    config = current_app.config
    # itsdangerous signs with the last key and accepts all of them.
    keys = [*config.get("SECRET_KEY_FALLBACKS", []), config["SECRET_KEY"]]
    return URLSafeTimedSerializer(keys, salt=f"optin.{purpose.value}")


def make_token(purpose: Purpose, target: LinkTarget) -> str:
    """A URL-safe signed token for ``target``."""
    payload: list[object] = [target.profile_id, target.resource_id, target.channel]
    if purpose is Purpose.CONFIRM:
        payload += [target.form, target.consent_text_id]
    return _serializer(purpose).dumps(payload)


def _target(payload: object) -> LinkTarget:
    if not isinstance(payload, list) or len(payload) not in (3, 5):
        raise TokenInvalid("this link is not valid")
    profile_id, resource_id, channel, *extra = payload
    form, consent_text_id = extra if extra else (None, None)
    if (
        not isinstance(profile_id, int)
        or not (resource_id is None or isinstance(resource_id, int))
        or not isinstance(channel, str)
        or not (form is None or isinstance(form, str))
        or not (consent_text_id is None or isinstance(consent_text_id, int))
    ):
        raise TokenInvalid("this link is not valid")
    return LinkTarget(profile_id, resource_id, channel, form, consent_text_id)


def read_token(purpose: Purpose, token: str) -> LinkTarget:
    """The target of a token of this purpose. Confirmation tokens expire after CONFIRM_MAX_AGE
    seconds; the others never do. Raises ``TokenExpired`` or ``TokenInvalid``."""
    max_age = current_app.config["CONFIRM_MAX_AGE"] if purpose is Purpose.CONFIRM else None
    serializer = _serializer(purpose)
    try:
        payload = serializer.loads(token, max_age=max_age)
    except SignatureExpired as expired:
        # The signature is good, so the payload can be trusted to offer a fresh link.
        raise TokenExpired(_target(serializer.load_payload(expired.payload))) from None
    except BadSignature:
        raise TokenInvalid("this link is not valid") from None
    return _target(payload)
