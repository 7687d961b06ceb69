"""API keys for the sending platform: created once and shown once, stored as a hash, revocable."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from app.database import transactional, utcnow
from app.extensions import db
from app.models import ApiKey
from app.services.errors import InvalidInput, NotFound

KEY_PREFIX = "optin_"
# How exactly the admin sees when a key was last used.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(name: str) -> tuple[ApiKey, str]:
    """A new key named ``name``; returns the row and the key itself, which is never seen again."""
    name = name.strip()
    if not name or len(name) > 100 or any(ch.isspace() for ch in name):
        raise InvalidInput("a key name is 1 to 100 characters without spaces, like 'sender-prod'")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return _store_key(name, key), key


@transactional
def _store_key(name: str, key: str) -> ApiKey:
    if db.session.scalar(select(ApiKey).where(ApiKey.name == name)) is not None:
        raise InvalidInput(f"a key named {name!r} exists already")
    row = ApiKey(name=name, key_hash=_hash(key), prefix=key[: len(KEY_PREFIX) + 4])
    db.session.add(row)
    return row


@transactional
def revoke_key(name: str) -> ApiKey:
    """Stop a key from working; its name stays in the history of what it changed."""
    row = db.session.scalar(select(ApiKey).where(ApiKey.name == name))
    if row is None:
        raise NotFound(f"no key named {name!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def authenticate(key: str) -> ApiKey | None:
    """The live key that ``key`` is, or None. Comparing hashes in the database leaks no timing
    about the key itself."""
    if not key.startswith(KEY_PREFIX):
        return None
    row = db.session.scalar(select(ApiKey).where(ApiKey.key_hash == _hash(key)))
    if row is None or row.revoked_at is not None:
        return None
    return row


def note_use(row: ApiKey, now: datetime | None = None) -> None:
    """Keep ``last_used_at`` for the admin's list, to the minute: a write on every API request
    would cost the hot path a transaction (and on SQLite the write lock), so the row is written
    only when the time it has is a minute old. The condition is repeated in the UPDATE, so
    workers that race for the same minute write once."""
    now = now or utcnow()
    stale = now - LAST_USED_RESOLUTION
    if row.last_used_at is not None and row.last_used_at > stale:
        return
    _touch(row.id, stale, now)


@transactional
def _touch(key_id: int, stale: datetime, now: datetime) -> None:
    db.session.execute(
        update(ApiKey)
        .where(
            ApiKey.id == key_id,
            or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at <= stale),
        )
        .values(last_used_at=now)
    )


def all_keys() -> list[ApiKey]:
    return list(db.session.scalars(select(ApiKey).order_by(ApiKey.name)))
