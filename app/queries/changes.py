"""The reads of the change feed (issue 15, ``GET /api/v1/changes``): the status events and the
erasures after a cursor, in feed order, up to the horizon below which nothing can still appear.

Feed order is (feed_xid, position, kind, id): an event's position is its own id, an erasure's
the newest event id it could see, and at one place an event (kind 0) comes before an erasure
(kind 1). On SQLite feed_xid is 0 and writers are serialized, so id order is commit order. On
PostgreSQL ids are handed out before commit, and a transaction can commit after a younger one:
a reader paging by id would pass the younger one's events and never return for the older's.
So each row carries its transaction's id, and the feed serves only rows of transactions older
than the oldest one still running (``horizon``): those have all ended, and every transaction
yet to write gets a larger id. A row's place may be raised above its transaction's id (to the
place of the profile's previous change, models.FEED_XID_FUNCTION), never lowered, so the
horizon's promise holds for it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import (
    ColumnElement,
    Select,
    SQLColumnExpression,
    and_,
    func,
    literal_column,
    or_,
    select,
    text,
    tuple_,
)

from app.extensions import db
from app.models import Erasure, Profile, Resource, StatusEvent
from app.queries._common import _on_postgres


class FeedKey(NamedTuple):
    """A place in the feed; a cursor names the last one read."""

    feed_xid: int
    position: int
    kind: int  # EVENT or ERASURE
    id: int


EVENT, ERASURE = 0, 1
START = FeedKey(0, 0, EVENT, 0)


def feed_horizon() -> int | None:
    """The id of the oldest transaction still running (PostgreSQL): every row with a smaller
    ``feed_xid`` is committed or rolled back for good. Read before the rows, in a statement of
    its own, so both reads after it see at least everything below it. None on SQLite."""
    if not _on_postgres():
        return None
    horizon = db.session.execute(
        text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
    ).scalar_one()
    return int(horizon)


class FeedEvent(NamedTuple):
    event: StatusEvent
    email: str | None  # None once the profile is erased
    resource_slug: str | None


def events_after(after: FeedKey, horizon: int | None, limit: int) -> list[FeedEvent]:
    """Up to ``limit`` status events after ``after`` in feed order, each with its profile's
    address (None once erased) and its resource's slug."""
    query = (
        select(StatusEvent, Profile.email, Resource.slug)
        .outerjoin(Profile, Profile.id == StatusEvent.profile_id)
        .outerjoin(Resource, Resource.id == StatusEvent.resource_id)
        .order_by(StatusEvent.feed_xid, StatusEvent.id)
    )
    if horizon is not None:
        query = query.where(StatusEvent.feed_xid < horizon)
    if _on_postgres():
        after_cursor = tuple_(StatusEvent.feed_xid, StatusEvent.id) > (
            after.feed_xid,
            after.position,
        )
        return _feed_events(query.where(after_cursor), limit)
    # SQLite seeks an index on the first column of a row comparison only, and its feed_xid is
    # always 0: the rest of the cursor's place first (a range of ids), then any larger place.
    found = _feed_events(
        query.where(StatusEvent.feed_xid == after.feed_xid, StatusEvent.id > after.position),
        limit,
    )
    if len(found) < limit:
        found += _feed_events(
            query.where(StatusEvent.feed_xid > after.feed_xid), limit - len(found)
        )
    return found


def _feed_events(query: Select[StatusEvent, str, str], limit: int) -> list[FeedEvent]:
    return [FeedEvent(*row) for row in db.session.execute(query.limit(limit))]


def erasures_after(after: FeedKey, horizon: int | None, limit: int) -> Sequence[Erasure]:
    """Up to ``limit`` erasures after ``after`` in feed order."""
    # After an event at (x, p): every erasure placed at (x, p) or beyond; after an erasure:
    # beyond its (x, p, id).
    last_id = after.id if after.kind == ERASURE else 0
    query = (
        select(Erasure)
        .where(
            or_(
                _after(Erasure.feed_xid, Erasure.after_event, after.feed_xid, after.position),
                and_(
                    Erasure.feed_xid == after.feed_xid,
                    Erasure.after_event == after.position,
                    Erasure.id > last_id,
                ),
            )
        )
        .order_by(Erasure.feed_xid, Erasure.after_event, Erasure.id)
        .limit(limit)
    )
    if horizon is not None:
        query = query.where(Erasure.feed_xid < horizon)
    return db.session.scalars(query).all()


def _after(
    xid_column: SQLColumnExpression[int],
    id_column: SQLColumnExpression[int],
    xid: int,
    position: int,
) -> ColumnElement[bool]:
    """(xid_column, id_column) > (xid, position), in a form both databases read from the index:
    PostgreSQL's row comparison; on SQLite, where feed_xid is always 0, the plain pair."""
    if _on_postgres():
        return tuple_(xid_column, id_column) > tuple_(xid, position)
    return or_(xid_column > xid, and_(xid_column == xid, id_column > position))


def newest_event_id() -> int:
    """The largest status event id this transaction sees: where an erasure written now goes."""
    return int(db.session.scalar(select(func.coalesce(func.max(StatusEvent.id), 0))) or 0)


def erasure_feed_xid(profile_id: int) -> int:
    """The feed place of an erasure written now, in the profile's locked write transaction:
    on PostgreSQL this transaction's id, and never below the profile's own events (as the
    trigger does for events); 0 on SQLite."""
    if not _on_postgres():
        return 0
    latest = (
        select(func.coalesce(func.max(StatusEvent.feed_xid), 0))
        .where(StatusEvent.profile_id == profile_id)
        .scalar_subquery()
    )
    current: ColumnElement[int] = literal_column("pg_current_xact_id()::text::bigint")
    return int(db.session.scalar(select(func.greatest(current, latest))) or 0)


def lock_profile(profile_id: int) -> None:
    """Lock a profile's row until the commit, as every status change of it does first: an
    erasure's feed entry must see the profile's last event, and no later one may commit."""
    db.session.execute(select(Profile.id).where(Profile.id == profile_id).with_for_update())
