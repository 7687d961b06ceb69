"""The admin's lists: profiles newest first with filters, the search, a profile's history and
consent, the suppression list, and what a form names by its id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, literal, select, tuple_
from sqlalchemy.sql.elements import ColumnElement

from app.addresses import search_key
from app.extensions import db
from app.models import (
    ApiKey,
    ConsentRecord,
    ConsentText,
    Profile,
    Resource,
    StatusEvent,
    Subscription,
    Suppression,
    SuppressionEvent,
)
from app.queries._common import _on_postgres
from app.status import Cause, Status

# A page of search results; the search asks for one more row to know whether a next page exists.
SEARCH_PAGE_SIZE = 50


def _next_prefix(prefix: str) -> str:
    """The first string after every string that starts with ``prefix``, in code point order."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _byte_order(expression: Any) -> Any:
    """``expression`` compared and sorted in code point order: SQLite's own order for text,
    the "C" collation on PostgreSQL (whose natural-language collations would break a prefix
    range). The search indexes in models.py are built in the same order."""
    return expression.collate("C") if _on_postgres() else expression


def _starts_with(key: Any, prefix: str) -> ColumnElement[bool]:
    """``key`` (in byte order) starts with the non-empty ``prefix``: a range an index reads."""
    return and_(key >= prefix, _below_next_prefix(key, prefix))


def _below_next_prefix(key: ColumnElement[str], prefix: str) -> ColumnElement[bool]:
    """The upper end of a prefix range; a prefix ending in the last code point has none."""
    if prefix[-1] == chr(0x10FFFF):
        return literal(True)
    return key < _next_prefix(prefix)


def search_keys() -> tuple[Any, Any]:
    """The two things the profile search matches, as the indexes hold them: the search keys of
    the email and of the name (``addresses.search_key``), in byte order."""
    return _byte_order(Profile.email_key), _byte_order(Profile.name_key)


@dataclass(frozen=True)
class ProfileFilter:
    """The admin's profile list filters; None is "any". A subscription status is the status of
    the subscription to ``resource_id`` (on any of its channels), so it needs one."""

    global_status: Status | None = None
    resource_id: int | None = None
    subscription_status: Status | None = None
    # Created at or after this moment.
    since: datetime | None = None

    def condition(self) -> ColumnElement[bool]:
        """The filters as one condition on a profile (the search applies it to what it
        matched; the list reads the filters' own indexes instead, see ``profile_list``)."""
        conditions: list[ColumnElement[bool]] = []
        if self.global_status is not None:
            conditions.append(Profile.status == self.global_status.value)
        if self.since is not None:
            conditions.append(Profile.created_at >= self.since)
        if self.resource_id is not None:
            subscribed = select(Subscription.id).where(
                Subscription.profile_id == Profile.id,
                Subscription.resource_id == self.resource_id,
            )
            if self.subscription_status is not None:
                subscribed = subscribed.where(Subscription.status == self.subscription_status.value)
            conditions.append(exists(subscribed))
        return and_(literal(True), *conditions)


NO_FILTER = ProfileFilter()


def profile_list(filters: ProfileFilter, *, before: int | None = None, limit: int) -> Any:
    """The ids of the profiles that pass ``filters``, newest first: ``limit`` of them below the
    id ``before`` (the previous page's last), a keyset page.

    Newest is the highest id: ids are handed out as profiles are made and never again
    (``NEVER_REUSED``), so each filter is a range of one index read in id order, backwards, and
    stops after ``limit`` entries: the primary key; the global status index; a resource's
    subscriptions, with or without their status (a profile subscribed on two channels is listed
    once). Together with a resource the global status is checked on each profile the range
    yields. "Since" starts the range at the lowest id among the profiles created since then,
    read from the creation time index alone (a range as long as the period's signups, not the
    table), and compares ``created_at`` as well: exact even where ids and creation times
    disagree (a profile made with an earlier ``now``).
    """
    query: Any
    if filters.resource_id is not None:
        key: Any = Subscription.profile_id
        query = select(key.label("id")).where(Subscription.resource_id == filters.resource_id)
        if filters.subscription_status is not None:
            query = query.where(Subscription.status == filters.subscription_status.value)
        if filters.global_status is not None or filters.since is not None:
            query = query.join(Profile, Profile.id == key)
        # GROUP BY, not DISTINCT: both databases then read the index in order to group.
        query = query.group_by(key)
    else:
        key = Profile.id
        query = select(key.label("id"))
    if filters.global_status is not None:
        query = query.where(Profile.status == filters.global_status.value)
    if filters.since is not None:
        # min(id + 0), not min(id): given min(id) both databases walk the primary key from the
        # oldest profile until one is recent enough, which on a big table is nearly all of it.
        first = (
            select(func.min(Profile.id + 0)).where(Profile.created_at >= filters.since)
        ).scalar_subquery()
        query = query.where(key >= first, Profile.created_at >= filters.since)
    if before is not None:
        query = query.where(key < before)
    return query.order_by(key.desc()).limit(limit)


def list_profiles(
    filters: ProfileFilter = NO_FILTER, *, before: int | None = None, limit: int = SEARCH_PAGE_SIZE
) -> list[Profile]:
    """The admin's profiles page before anything is typed: a page of the profiles that pass
    ``filters``, newest first (see ``profile_list``)."""
    ids = list(db.session.execute(profile_list(filters, before=before, limit=limit)).scalars())
    profiles = {
        profile.id: profile
        for profile in db.session.execute(select(Profile).where(Profile.id.in_(ids))).scalars()
    }
    return [profiles[profile_id] for profile_id in ids if profile_id in profiles]


def search_profiles(
    term: str,
    *,
    after: tuple[str, int] | None = None,
    limit: int = SEARCH_PAGE_SIZE,
    filters: ProfileFilter = NO_FILTER,
) -> list[tuple[str, Profile]]:
    """Profiles whose email or name starts with ``term``, case-insensitive (folded by Python,
    the same on both databases), as (the search key that matched, the profile), ordered by that
    key: ``limit`` rows after the (key, id) ``after`` of the previous page's last row, a keyset
    page as fast on page 1,000 as on page 1.

    Each half is its own index range read in index order, so a page reads at most ``limit``
    entries of each, however many profiles share a prefix ("user1" matches 111,111 of a
    million); an OR of the two would be planned as a scan of the whole table. A profile whose
    email and name both match is listed once, under its email. ``filters`` are checked on each
    profile a range yields, in the same order.
    """
    prefix = search_key(term.strip()) or ""
    if not prefix:
        return []
    email_key, name_key = search_keys()
    halves = []
    for key, extra in (
        (email_key, None),
        (name_key, ~_starts_with(email_key, prefix)),
    ):
        # A later page enters the index at the previous page's last key, which has the
        # prefix, rather than at the prefix's start; its id is checked as a row value, which
        # PostgreSQL seeks in the index too (SQLite reads past the profiles that share that
        # key, a few thousand at most for a common name).
        lowest = max(after[0], prefix) if after is not None else prefix
        half = select(key.label("key"), Profile.id.label("id")).where(
            key >= lowest, _below_next_prefix(key, prefix)
        )
        if after is not None:
            half = half.where(tuple_(key, Profile.id) > tuple_(literal(after[0]), after[1]))
        if extra is not None:
            half = half.where(extra)
        if filters != NO_FILTER:
            half = half.where(filters.condition())
        halves.append(half.order_by(key, Profile.id).limit(limit))
    rows = sorted((row.key, row.id) for half in halves for row in db.session.execute(half))[:limit]
    profiles = {
        profile.id: profile
        for profile in db.session.execute(
            select(Profile).where(Profile.id.in_([profile_id for _, profile_id in rows]))
        ).scalars()
    }
    return [(key, profiles[profile_id]) for key, profile_id in rows if profile_id in profiles]


def events_with_scope_of_profile(profile_id: int) -> list[tuple[StatusEvent, str | None]]:
    """A profile's whole history, oldest first, each event with its resource's slug (None: the
    global status, or a resource deleted since)."""
    query = (
        select(StatusEvent, Resource.slug)
        .outerjoin(Resource, Resource.id == StatusEvent.resource_id)
        .where(StatusEvent.profile_id == profile_id)
        .order_by(StatusEvent.occurred_at, StatusEvent.id)
    )
    return [tuple(row) for row in db.session.execute(query)]  # type: ignore[misc]  # tuple(row) is typed tuple[object, ...]; the select gives these types


def consent_proof_of_profile(
    profile_id: int,
) -> list[tuple[ConsentRecord, Subscription, ConsentText | None]]:
    """Each proof of consent of a profile with the subscription it is for and the consent text
    version the customer saw."""
    query = (
        select(ConsentRecord, Subscription, ConsentText)
        .join(Subscription, Subscription.id == ConsentRecord.subscription_id)
        .outerjoin(ConsentText, ConsentText.id == ConsentRecord.consent_text_id)
        .where(Subscription.profile_id == profile_id)
        .order_by(ConsentRecord.confirmed_at, ConsentRecord.id)
    )
    return [tuple(row) for row in db.session.execute(query)]  # type: ignore[misc]  # tuple(row) is typed tuple[object, ...]; the select gives these types


def consent_texts_of_resource(resource_id: int) -> Sequence[ConsentText]:
    """Every version of a resource's consent text, newest first."""
    query = (
        select(ConsentText)
        .where(ConsentText.resource_id == resource_id)
        .order_by(ConsentText.version.desc())
    )
    return db.session.execute(query).scalars().all()


def search_suppressions(
    prefix: str, *, offset: int = 0, limit: int = SEARCH_PAGE_SIZE
) -> Sequence[Suppression]:
    """Suppressed addresses starting with ``prefix`` (all of them for an empty one), newest
    first; erased addresses (only their hash is kept) show up in the unfiltered list only."""
    query = select(Suppression)
    prefix = prefix.strip().lower()
    if prefix:
        query = query.where(_starts_with(_byte_order(Suppression.email), prefix))
    query = query.order_by(Suppression.created_at.desc(), Suppression.email_hash)
    return db.session.execute(query.offset(offset).limit(limit)).scalars().all()


def suppression_events_of(email_hash: str) -> Sequence[SuppressionEvent]:
    """The changes to one address's suppression (by hand, by bounces, imports and confirmed
    opt-ins), oldest first."""
    query = (
        select(SuppressionEvent)
        .where(SuppressionEvent.email_hash == email_hash)
        .order_by(SuppressionEvent.occurred_at, SuppressionEvent.id)
    )
    return db.session.execute(query).scalars().all()


def recent_suppression_events(limit: int = 20) -> Sequence[SuppressionEvent]:
    """The latest hand-made changes to the suppression list, newest first (a wave of bounces
    must not push them off the admin's page)."""
    query = (
        select(SuppressionEvent)
        .where(SuppressionEvent.cause == Cause.ADMIN.value)
        .order_by(SuppressionEvent.occurred_at.desc(), SuppressionEvent.id.desc())
        .limit(limit)
    )
    return db.session.execute(query).scalars().all()


def api_key_by_id(key_id: int) -> ApiKey | None:
    """The key a revoke button names by its id."""
    return db.session.get(ApiKey, key_id)


def subscription_by_id(subscription_id: int) -> Subscription | None:
    """The subscription an admin's status form names by its id."""
    return db.session.get(Subscription, subscription_id)
