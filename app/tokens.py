"""Signed links, with itsdangerous: one salt per purpose, so that a token minted for one purpose
never works for another, and a key list so that the secret can be rotated
(SECRET_KEY_FALLBACKS: old keys still accepted; a key taken out of the list kills its links).

A token carries the profile, the profile's link key, the resource (None: the link is about the
profile as a whole, and an unsubscribe through it is global, SPEC §1 rule 2) and the channel.

The link key is a random value made with the profile and deleted with it. Ids are not enough: a
deleted row's id can come back (SQLite reused the highest one; an id is also easy to guess), and an
old link would then open the next person's data. A token opens a profile only when its key equals
the profile's (``opens``, compared in constant time).

- Confirmation tokens expire (CONFIRM_MAX_AGE), so they are timestamped; they also carry what the
  signup form showed (its name and the consent text version), so the proof of consent needs no
  state kept for people who never confirm, and the signup's nonce, so that a link confirms only the
  signup request it was sent for (services/subscriptions.py).
- Data tokens ("download or erase my data") expire after DATA_LINK_MAX_AGE: they are only ever sent
  to the address on request, as proof that whoever uses one holds the mailbox now.

- Unsubscribe and preference tokens never expire. They are a plain signature over
  ``profile-resource-channel-key``: deterministic (a recipient's links are the same in every
  message) and cheap enough to mint for an audience of a million.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import KW_ONLY, dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any, cast

from flask import current_app
from itsdangerous import (
    BadData,
    BadSignature,
    SignatureExpired,
    Signer,
    TimestampSigner,
    URLSafeTimedSerializer,
)
from itsdangerous.encoding import base64_decode, base64_encode, want_bytes
from itsdangerous.signer import HMACAlgorithm

from app.database import utcnow


class Purpose(StrEnum):
    CONFIRM = "confirm"
    UNSUBSCRIBE = "unsubscribe"
    PREFERENCES = "preferences"
    DATA = "data"


# Timestamped purposes, whose tokens are JSON lists and expire; the others are plain signatures.
TIMED = frozenset({Purpose.CONFIRM, Purpose.DATA})
# 128 random bits as lower-case hex: URL-safe, no "." or "-" (the plain payload's separators).
KEY = re.compile(r"[0-9a-f]{32}")


class TokenInvalid(ValueError):
    """Tampered with, minted for another purpose, or signed by a key that was rotated out."""


class TokenExpired(TokenInvalid):
    """Genuine but too old. ``target`` is still trustworthy: the signature checked out."""

    def __init__(self, target: LinkTarget, purpose: Purpose) -> None:
        super().__init__("this link has expired")
        self.target = target
        self.purpose = purpose


# SpamAssassin reads a word of 30 to 35 base58 characters that starts with 1 or 3 as a Bitcoin
# address (__BITCOIN_ID, scored by PDS_BTC_ID): a key of hex digits that starts so and has no 0
# is one, and it stands alone between the "-" and the "." of every unsubscribe and preference
# link. One key in fifty would score every email with its links up; such a key is drawn again.
_BITCOIN_LIKE = re.compile(r"[13][1-9a-f]+")


def new_link_key() -> str:
    """A profile's link key, made once with the profile (see the module's docstring)."""
    while True:
        key = secrets.token_hex(16)
        if not _BITCOIN_LIKE.fullmatch(key):
            return key


def new_nonce() -> str:
    """A signup request's nonce, put into its confirmation link and stored on its subscriptions."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class LinkTarget:
    """What a link is about: the profile (by id and link key) and, after them, by name only,
    the resource, channel and what a confirmation link needs."""

    profile_id: int
    key: str
    _: KW_ONLY
    resource_id: int | None = None
    channel: str = "email"
    form: str | None = None
    consent_text_id: int | None = None
    nonce: str | None = None

    @property
    def legacy(self) -> bool:
        """An unsubscribe link minted before link keys existed (LEGACY_PAYLOAD)."""
        return self.key == LEGACY_KEY


def opens(target: LinkTarget, link_key: str | None) -> bool:
    """Whether a link minted with ``target.key`` opens the profile whose key is ``link_key``
    (None: the profile is gone). Constant time, so that the comparison leaks nothing."""
    return link_key is not None and hmac.compare_digest(
        link_key.encode("ascii", "replace"), target.key.encode("ascii", "replace")
    )


PLAIN_PAYLOAD = re.compile(r"(\d+)-(\d*)-([a-z]+)-([0-9a-f]{32})")
# Unsubscribe links in mail sent before link keys (migration 0008) are signed over the id alone.
# They must keep unsubscribing (RFC 8058, and the law gives an opt-out link in sent mail a life of
# weeks), so they are read with the empty key, which opens no profile (``opens``) but one marked
# ``legacy_links``, and only for an unsubscribe.
LEGACY_PAYLOAD = re.compile(r"(\d+)-(\d*)-([a-z]+)")
LEGACY_KEY = ""


class _KeyedHMAC(HMACAlgorithm):
    """itsdangerous's HMAC-SHA1, with the standard library's keyed state made once per key and
    copied for each message: ``hmac.new`` sets a keyed context up at every call, which counts
    when the links of a large audience are signed; ``copy()`` skips that work and nothing else
    (a test checks it against ``hmac.new`` for random keys and messages)."""

    def __init__(self) -> None:
        super().__init__(hashlib.sha1)
        self._keyed: dict[bytes, hmac.HMAC] = {}

    def get_signature(self, key: bytes, value: bytes) -> bytes:
        keyed = self._keyed.get(key)
        if keyed is None:
            # HMAC-SHA1 is itsdangerous's signature; SHA-1's collisions do not weaken HMAC.
            keyed = self._keyed[key] = hmac.new(key, digestmod=hashlib.sha1)
        mac = keyed.copy()
        mac.update(value)
        return mac.digest()


class _Canonical(Signer):
    """Refuses a signature that is not in canonical base64. Base64 leaves the last character's low
    bits unused, so without this check some one-character changes to a token still verify."""

    def verify_signature(self, value: str | bytes, sig: str | bytes) -> bool:
        try:
            canonical = base64_encode(base64_decode(sig)) == want_bytes(sig)
        except BadData:
            return False
        return canonical and super().verify_signature(value, sig)


class _TimestampSigner(_Canonical, TimestampSigner):
    """The confirmation tokens' signer: timestamped, canonical, and on the app's clock, so that
    a test moves past a link's age instead of sleeping through it."""

    def get_timestamp(self) -> int:
        return int(utcnow().timestamp())


class _Signer(_Canonical):
    """itsdangerous's Signer, deriving each key once instead of at every signature."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.algorithm = _KeyedHMAC()

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        cache: dict[object, bytes] = self.__dict__.setdefault("_derived", {})
        if secret_key not in cache:
            cache[secret_key] = super().derive_key(secret_key)
        return cache[secret_key]


def _keys() -> tuple[str, ...]:
    config = current_app.config
    # itsdangerous signs with the last key and accepts all of them.
    return (*config.get("SECRET_KEY_FALLBACKS", []), config["SECRET_KEY"])


@lru_cache(maxsize=32)
def _signer(purpose: Purpose, keys: tuple[str, ...]) -> _Signer:
    return _Signer(list(keys), salt=f"optin.{purpose.value}")


@lru_cache(maxsize=8)
def _timed_serializer(purpose: Purpose, keys: tuple[str, ...]) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        list(keys), salt=f"optin.{purpose.value}", signer=_TimestampSigner
    )


def _check_key(key: str) -> str:
    if not isinstance(key, str) or KEY.fullmatch(key) is None:
        raise ValueError("a link key is 32 lower-case hex digits")
    return key


class LinkSigner:
    """Mints unsubscribe or preference tokens for many recipients with the key derived once (the
    audience export calls it twice for every row). The tokens are exactly ``Signer.sign``'s."""

    def __init__(self, purpose: Purpose) -> None:
        if purpose in TIMED:
            raise ValueError(f"{purpose.value} tokens are made with make_token")
        signer = _signer(purpose, _keys())
        self._algorithm = signer.algorithm
        self._key = signer.derive_key()
        self._separator = signer.sep.decode("ascii")

    def token(
        self, profile_id: int, key: str, resource_id: int | None, channel: str = "email"
    ) -> str:
        """The token for the profile ``profile_id`` whose link key is ``key``."""
        payload = f"{profile_id}-{'' if resource_id is None else resource_id}-{channel}-{key}"
        mac = self._algorithm.get_signature(self._key, payload.encode("ascii"))
        return payload + self._separator + base64_encode(mac).decode("ascii")


def make_token(purpose: Purpose, target: LinkTarget) -> str:
    """A URL-safe signed token for ``target``."""
    key = _check_key(target.key)
    if purpose is Purpose.CONFIRM:
        payload: list[object] = [
            target.profile_id,
            target.resource_id,
            target.channel,
            target.form,
            target.consent_text_id,
            key,
            target.nonce,
        ]
        return _timed_serializer(purpose, _keys()).dumps(payload)
    if purpose is Purpose.DATA:
        return _timed_serializer(purpose, _keys()).dumps([target.profile_id, key])
    return LinkSigner(purpose).token(target.profile_id, key, target.resource_id, target.channel)


def _optional(value: object, kind: type) -> bool:
    return value is None or (isinstance(value, kind) and not isinstance(value, bool))


def _is_key(value: object) -> bool:
    return isinstance(value, str) and KEY.fullmatch(value) is not None


def _confirm_target(payload: object) -> LinkTarget:
    if not isinstance(payload, list) or len(payload) != 7:
        raise TokenInvalid("this link is not valid")
    profile_id, resource_id, channel, form, consent_text_id, key, nonce = payload
    if (
        not isinstance(profile_id, int)
        or not _optional(resource_id, int)
        or not isinstance(channel, str)
        or not _optional(form, str)
        or not _optional(consent_text_id, int)
        or not _is_key(key)
        or not (nonce is None or _is_key(nonce))
    ):
        raise TokenInvalid("this link is not valid")
    return LinkTarget(
        profile_id,
        key,
        resource_id=resource_id,
        channel=channel,
        form=form,
        consent_text_id=consent_text_id,
        nonce=nonce,
    )


def _data_target(payload: object) -> LinkTarget:
    if not isinstance(payload, list) or len(payload) != 2:
        raise TokenInvalid("this link is not valid")
    profile_id, key = payload
    if not isinstance(profile_id, int) or isinstance(profile_id, bool) or not _is_key(key):
        raise TokenInvalid("this link is not valid")
    return LinkTarget(profile_id, key)


def _read_timed(purpose: Purpose, token: str) -> LinkTarget:
    serializer = _timed_serializer(purpose, _keys())
    config = current_app.config
    confirm = purpose is Purpose.CONFIRM
    max_age = config["CONFIRM_MAX_AGE"] if confirm else config["DATA_LINK_MAX_AGE"]
    target_of = _confirm_target if purpose is Purpose.CONFIRM else _data_target
    try:
        payload = serializer.loads(token, max_age=max_age)
    except SignatureExpired as expired:
        # The signature is good, so the payload can be trusted to offer a fresh link.
        # itsdangerous always sets the payload of a SignatureExpired it raises (typed Optional).
        payload = cast(bytes, expired.payload)
        raise TokenExpired(target_of(serializer.load_payload(payload)), purpose) from None
    except BadSignature:
        raise TokenInvalid("this link is not valid") from None
    return target_of(payload)


def read_token(purpose: Purpose, token: str) -> LinkTarget:
    """The target of a token of this purpose. Confirmation tokens expire after CONFIRM_MAX_AGE
    seconds and data tokens after DATA_LINK_MAX_AGE; the others never do. Raises
    ``TokenExpired`` or ``TokenInvalid``. The caller still checks the key (``opens``)."""
    if purpose in TIMED:
        return _read_timed(purpose, token)
    try:
        value = _signer(purpose, _keys()).unsign(token).decode("ascii")
    except (BadSignature, UnicodeError):
        raise TokenInvalid("this link is not valid") from None
    found = PLAIN_PAYLOAD.fullmatch(value)
    if found is None:
        legacy = LEGACY_PAYLOAD.fullmatch(value) if purpose is Purpose.UNSUBSCRIBE else None
        if legacy is None:
            raise TokenInvalid("this link is not valid")
        found_id, found_resource, found_channel = legacy.groups()
        return LinkTarget(
            int(found_id),
            LEGACY_KEY,
            resource_id=int(found_resource) if found_resource else None,
            channel=found_channel,
        )
    profile_id, resource_id, channel, key = found.groups()
    return LinkTarget(
        int(profile_id), key, resource_id=int(resource_id) if resource_id else None, channel=channel
    )
