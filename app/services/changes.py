"""The change feed (issue 15): pages of status changes and erasures in the order they became
final, with a cursor that stays valid forever; and the erasure's entry, written in the
erasure's transaction. How the order never skips a change is told in ``queries/changes.py``.

Suppression-list changes of addresses optin holds no profile for (a hard bounce of an unknown
address) are not in the feed: they change no status, and a platform mirrors statuses of the
people it knows by profile; the suppression list itself is answered by ``/eligibility``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.changes import erasure_document, status_change_document
from app.extensions import db
from app.models import Erasure
from app.queries.changes import (
    ERASURE,
    EVENT,
    START,
    FeedKey,
    erasure_feed_xid,
    erasures_after,
    events_after,
    feed_horizon,
    newest_event_id,
)

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# Four decimal numbers without leading zeros, so that a cursor reads back to the same string,
# of at most 18 digits, so that each fits a BIGINT (transaction ids and row ids stay far below).
_NUMBER = r"(0|[1-9][0-9]{0,17})"
CURSOR_PATTERN = rf"^{_NUMBER}\.{_NUMBER}\.([01])\.{_NUMBER}$"
CURSOR = re.compile(CURSOR_PATTERN)


class InvalidCursor(ValueError):
    """An ``after`` that no page of the feed ever answered."""


def parse_cursor(value: str | None) -> FeedKey:
    """The feed place a cursor names; no cursor is the beginning."""
    if value is None:
        return START
    match = CURSOR.fullmatch(value)
    if match is None:
        raise InvalidCursor("after must be a cursor this feed answered as `next`")
    # A well-formed cursor the feed never answered still names a place in its order (the
    # feed cannot tell every such cursor apart, and need not): pages read on from there.
    return FeedKey(*(int(part) for part in match.groups()))


def format_cursor(key: FeedKey) -> str:
    """The opaque text of a place: clients send it back as ``after`` and read nothing in it."""
    return ".".join(str(part) for part in key)


@dataclass(frozen=True)
class Page:
    """One answer of the feed: the change documents and the cursor to continue from."""

    changes: list[dict[str, Any]]
    next: str


def changes_after(after: FeedKey, limit: int) -> Page:
    """Up to ``limit`` changes after ``after``, and the cursor of the last one (``after``
    itself when nothing is new). Events and erasures are read apart, each from its index,
    below one horizon, and merged."""
    horizon = feed_horizon()
    entries: list[tuple[FeedKey, dict[str, Any]]] = []
    for found in events_after(after, horizon, limit):
        event, email, slug = found.event, found.email, found.resource_slug
        key = FeedKey(event.feed_xid, event.id, EVENT, event.id)
        entries.append((key, status_change_document(event, email=email, resource_slug=slug)))
    for erasure in erasures_after(after, horizon, limit):
        key = FeedKey(erasure.feed_xid, erasure.after_event, ERASURE, erasure.id)
        document = erasure_document(erasure.profile_id, at=erasure.occurred_at, actor=erasure.actor)
        entries.append((key, document))
    entries.sort(key=lambda entry: entry[0])
    del entries[limit:]
    last = entries[-1][0] if entries else after
    return Page([document for _, document in entries], format_cursor(last))


def record_erasure(profile_id: int, *, actor: str | None, now: datetime) -> None:
    """Write the feed's entry of an erasure, in the erasure's transaction, once the profile is
    locked: after every event of the profile, and before any the transaction cannot see yet."""
    db.session.add(
        Erasure(
            profile_id=profile_id,
            actor=actor,
            occurred_at=now,
            feed_xid=erasure_feed_xid(profile_id),
            after_event=newest_event_id(),
        )
    )
