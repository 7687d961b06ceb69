"""The counts of the admin's dashboard and of ``/metrics``: both read the same series
(``DAILY_SERIES``), so they always agree.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.sql.elements import ColumnElement

from app.extensions import db
from app.models import Profile, Resource, StatusEvent, Subscription, Suppression
from app.queries._common import _on_postgres
from app.status import Status

# What each daily chart of the dashboard counts, as (series, condition on a status event). Each
# customer action is counted once: a signup or confirmation writes a global and a subscription
# event, and only the subscription's counts (its channel is kept when a resource is deleted); a
# bounce or complaint always changes the global status, which is what is counted. An admin's or
# an import's change is a correction, not a customer's unsubscribe.
DAILY_SERIES: tuple[tuple[str, ColumnElement[bool]], ...] = (
    ("signups", and_(StatusEvent.cause == "signup", StatusEvent.channel.is_not(None))),
    (
        "confirmations",
        and_(
            StatusEvent.cause == "confirm",
            StatusEvent.new_status == Status.SUBSCRIBED.value,
            StatusEvent.channel.is_not(None),
        ),
    ),
    (
        "unsubscribes",
        and_(
            StatusEvent.new_status == Status.UNSUBSCRIBED.value,
            StatusEvent.cause.not_in(["admin", "import"]),
        ),
    ),
    (
        "bounces",
        and_(
            StatusEvent.cause == "bounce",
            StatusEvent.new_status == Status.HARDBOUNCED.value,
            StatusEvent.channel.is_(None),
        ),
    ),
    (
        "complaints",
        and_(
            StatusEvent.cause == "complaint",
            StatusEvent.new_status == Status.COMPLAINER.value,
            StatusEvent.channel.is_(None),
        ),
    ),
)


def profiles_by_global_status() -> dict[str, int]:
    """How many profiles have each global status (the dashboard), from the status index alone."""
    query = select(Profile.status, func.count()).group_by(Profile.status)
    return {status: total for status, total in db.session.execute(query)}


def subscriptions_by_status() -> list[tuple[int, str, str, int]]:
    """(resource id, channel, status, count) for every subscription (the dashboard); the audience
    index holds these columns in this order, so no table row is read."""
    query = select(
        Subscription.resource_id, Subscription.channel, Subscription.status, func.count()
    ).group_by(Subscription.resource_id, Subscription.channel, Subscription.status)
    return [tuple(row) for row in db.session.execute(query)]  # type: ignore[misc]  # tuple(row) is typed tuple[object, ...]; the select gives these types


def suppression_count() -> int:
    """How many addresses the suppression list blocks (the dashboard, the list's page)."""
    return db.session.execute(select(func.count()).select_from(Suppression)).scalar_one()


def _utc_day(column: Any) -> ColumnElement[Any]:
    """The UTC calendar day of a timestamp, as text YYYY-MM-DD, on either database."""
    if _on_postgres():
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", column)  # SQLite stores UTC already


def daily_event_counts(since: datetime) -> dict[str, dict[str, int]]:
    """For each series of ``DAILY_SERIES``: events per UTC day since ``since`` (days with none
    are absent). One pass over the events of the period, found by their time index."""
    day = _utc_day(StatusEvent.occurred_at).label("day")
    counts: dict[str, dict[str, int]] = {name: {} for name, _ in DAILY_SERIES}
    columns = [func.count().filter(condition).label(name) for name, condition in DAILY_SERIES]
    query = select(day, *columns).where(StatusEvent.occurred_at >= since).group_by(day)
    for row in db.session.execute(query):
        for name, _ in DAILY_SERIES:
            if row._mapping[name]:
                counts[name][row.day] = row._mapping[name]
    return counts


def customer_event_totals() -> dict[tuple[str, str | None], int]:
    """Every series of ``DAILY_SERIES`` since the beginning, by resource slug (None: the global
    status, or a resource since deleted): {(series, slug): total}. One pass over the events."""
    columns = [func.count().filter(condition).label(name) for name, condition in DAILY_SERIES]
    query = (
        select(Resource.slug, *columns)
        .select_from(StatusEvent)
        .outerjoin(Resource, Resource.id == StatusEvent.resource_id)
        .group_by(Resource.slug)
    )
    totals: dict[tuple[str, str | None], int] = {}
    for row in db.session.execute(query):
        for name, _ in DAILY_SERIES:
            if row._mapping[name]:
                totals[(name, row.slug)] = row._mapping[name]
    return totals
