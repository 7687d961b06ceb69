"""Every read optin makes, each a named function, so that a reader can grep for it.

The audience query is the one place where the send rule of status.py is written as SQL; a table
test over every combination of statuses proves that the two agree.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    ARRAY,
    Row,
    Select,
    String,
    and_,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    tuple_,
)
from sqlalchemy.sql.elements import ColumnElement

from app.addresses import search_key
from app.extensions import db
from app.models import (
    ApiKey,
    ConsentRecord,
    ConsentText,
    ImportJob,
    ImportRejection,
    OutboxMessage,
    Profile,
    Resource,
    StatusEvent,
    Subscription,
    Suppression,
    SuppressionEvent,
)
from app.status import Cause, Status

# SQLite allows 32766 bound parameters, PostgreSQL 65535; batches stay well below both.
IN_CLAUSE_CHUNK = 5000


def resource_by_slug(slug: str) -> Resource | None:
    return db.session.execute(select(Resource).where(Resource.slug == slug)).scalar_one_or_none()


def all_resources() -> Sequence[Resource]:
    return db.session.execute(select(Resource).order_by(Resource.slug)).scalars().all()


def public_resources() -> Sequence[Resource]:
    query = select(Resource).where(Resource.public.is_(True)).order_by(Resource.name)
    return db.session.execute(query).scalars().all()


def profile_by_email(email: str, *, for_update: bool = False) -> Profile | None:
    """The profile of a normalised address; ``for_update`` locks its row until the commit, and
    reads it afresh even if this transaction read it before the lock (a change committed while
    we waited for the lock must not be hidden by the copy the session already holds)."""
    query = select(Profile).where(Profile.email == email)
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    return db.session.execute(query).scalar_one_or_none()


def subscription_of(profile_id: int, resource_id: int, channel: str) -> Subscription | None:
    query = select(Subscription).where(
        Subscription.profile_id == profile_id,
        Subscription.resource_id == resource_id,
        Subscription.channel == channel,
    )
    return db.session.execute(query).scalar_one_or_none()


def suppression_of(email_hash: str) -> Suppression | None:
    return db.session.get(Suppression, email_hash)


def events_of_profile(profile_id: int) -> Sequence[StatusEvent]:
    query = (
        select(StatusEvent)
        .where(StatusEvent.profile_id == profile_id)
        .order_by(StatusEvent.occurred_at, StatusEvent.id)
    )
    return db.session.execute(query).scalars().all()


def _sendable(columns: Any, now: datetime) -> ColumnElement[bool]:
    """SQL for "this status lets a message through at ``now``": `subscribed`, or a suspension that
    has ended and gave `subscribed` back (status.effective)."""
    return or_(
        columns.status == Status.SUBSCRIBED.value,
        and_(
            columns.status == Status.SUSPENDED.value,
            columns.suspended_until <= now,
            columns.resume_status == Status.SUBSCRIBED.value,
        ),
    )


def audience_query(resource_id: int, channel: str, now: datetime) -> Any:
    """Who may be sent a message of this resource on this channel (status.can_send, rule 1),
    with the link key their links are minted with (read here, not once a row)."""
    not_suppressed = ~exists().where(Suppression.email_hash == Profile.email_hash)
    return (
        select(Profile.id, Profile.email, Profile.name, Profile.link_key)
        .join(Subscription, Subscription.profile_id == Profile.id)
        .where(
            Subscription.resource_id == resource_id,
            Subscription.channel == channel,
            Subscription.status.in_([Status.SUBSCRIBED.value, Status.SUSPENDED.value]),
            _sendable(Subscription, now),
            _sendable(Profile, now),
            not_suppressed,
        )
        .order_by(Profile.id)
    )


def stream_audience(
    resource_id: int, channel: str, now: datetime, *, batch_size: int = 2000
) -> Iterator[Row[Any]]:
    """The audience row by row, in constant memory: a server-side cursor on PostgreSQL, the
    driver's lazy cursor on SQLite. The rows come from one statement, so one snapshot."""
    with db.engine.connect() as connection, connection.begin():
        if connection.dialect.name == "postgresql":
            # A cursor is planned for its first 10% of rows by default: here that plan looks the
            # suppression list up once a row instead of joining it, 12-29% slower to the end.
            connection.exec_driver_sql("SET LOCAL cursor_tuple_fraction = 1.0")
        result = connection.execution_options(yield_per=batch_size).execute(
            audience_query(resource_id, channel, now)
        )
        yield from result


def eligibility_rows(
    emails: Iterable[str], resource_id: int | None, channel: str
) -> dict[str, Row[Any]]:
    """For each known address: its global state, its suppression and (with a resource) its
    subscription's state. Unknown addresses are simply absent from the answer."""
    suppressed = exists().where(Suppression.email_hash == Profile.email_hash)
    columns: list[Any] = [
        Profile.email,
        Profile.status,
        Profile.suspended_until,
        Profile.resume_status,
        suppressed.label("suppressed"),
    ]
    if resource_id is not None:
        columns += [
            Subscription.status.label("sub_status"),
            Subscription.suspended_until.label("sub_suspended_until"),
            Subscription.resume_status.label("sub_resume_status"),
        ]
    found: dict[str, Row[Any]] = {}
    unique = list(dict.fromkeys(emails))
    for start in range(0, len(unique), IN_CLAUSE_CHUNK):
        chunk = unique[start : start + IN_CLAUSE_CHUNK]
        query = _matching(select(*columns), Profile, Profile.email, chunk)
        if resource_id is not None:
            query = query.outerjoin(
                Subscription,
                and_(
                    Subscription.profile_id == Profile.id,
                    Subscription.resource_id == resource_id,
                    Subscription.channel == channel,
                ),
            )
        for row in db.session.execute(query):
            found[row.email] = row
    return found


def _matching(query: Any, table: Any, column: Any, values: list[str]) -> Any:
    """``query`` restricted to rows of ``table`` whose ``column`` is one of ``values``. On
    PostgreSQL the values are joined as an unnest()ed array, so each is looked up in the index
    (``= ANY`` of 5,000 made it scan the whole table, 2.2x slower in the foundation benchmark)."""
    if db.session.get_bind().dialect.name == "postgresql":
        asked = func.unnest(literal(values, ARRAY(String))).table_valued("value").render_derived()
        return query.select_from(asked).join(table, column == asked.c.value)
    return query.where(column.in_(values))


def suppressed_hashes(hashes: Iterable[str]) -> set[str]:
    """Which of these address hashes are on the suppression list."""
    found: set[str] = set()
    unique = list(dict.fromkeys(hashes))
    for start in range(0, len(unique), IN_CLAUSE_CHUNK):
        chunk = unique[start : start + IN_CLAUSE_CHUNK]
        query = _matching(
            select(Suppression.email_hash), Suppression, Suppression.email_hash, chunk
        )
        found.update(db.session.execute(query).scalars())
    return found


def emails_with_ended_suspensions(now: datetime) -> list[str]:
    """Profiles whose global or subscription suspension has reached its end."""
    global_ended = select(Profile.email).where(
        Profile.status == Status.SUSPENDED.value, Profile.suspended_until <= now
    )
    subscription_ended = (
        select(Profile.email)
        .join(Subscription, Subscription.profile_id == Profile.id)
        .where(Subscription.status == Status.SUSPENDED.value, Subscription.suspended_until <= now)
    )
    query = global_ended.union(subscription_ended)
    return list(db.session.execute(query).scalars())


def stale_unconfirmed_subscriptions(cutoff: datetime) -> Sequence[Subscription]:
    """Unconfirmed subscriptions created before ``cutoff`` (rule 8)."""
    query = select(Subscription).where(
        Subscription.status == Status.UNCONFIRMED.value, Subscription.created_at < cutoff
    )
    return db.session.execute(query).scalars().all()


def abandoned_profiles(cutoff: datetime) -> Sequence[Profile]:
    """Profiles that never confirmed anything and have no subscription left (rule 8)."""
    has_subscription = exists().where(Subscription.profile_id == Profile.id)
    query = select(Profile).where(
        Profile.status == Status.UNCONFIRMED.value,
        Profile.created_at < cutoff,
        ~has_subscription,
    )
    return db.session.execute(query).scalars().all()


def profile_by_id(profile_id: int) -> Profile | None:
    return db.session.get(Profile, profile_id)


def resource_by_id(resource_id: int) -> Resource | None:
    return db.session.get(Resource, resource_id)


def subscriptions_of_profile(profile_id: int) -> Sequence[Subscription]:
    query = (
        select(Subscription)
        .where(Subscription.profile_id == profile_id)
        .order_by(Subscription.resource_id, Subscription.channel)
    )
    return db.session.execute(query).scalars().all()


def emails_sent_to_since(address: str, template: str, since: datetime) -> int:
    """How many messages of one kind were queued for an address since a time (rate caps)."""
    query = select(func.count()).where(
        OutboxMessage.to_address == address,
        OutboxMessage.template == template,
        OutboxMessage.created_at >= since,
    )
    return db.session.execute(query).scalar_one()


def current_consent_text(resource_id: int | None) -> ConsentText | None:
    """The newest version of a resource's consent text (None: that of the all-resources form)."""
    query = (
        select(ConsentText)
        .where(
            ConsentText.resource_id.is_(None)
            if resource_id is None
            else ConsentText.resource_id == resource_id
        )
        .order_by(ConsentText.version.desc())
        .limit(1)
    )
    return db.session.execute(query).scalar_one_or_none()


def consent_records_of_profile(profile_id: int) -> Sequence[ConsentRecord]:
    query = (
        select(ConsentRecord)
        .join(Subscription, Subscription.id == ConsentRecord.subscription_id)
        .where(Subscription.profile_id == profile_id)
        .order_by(ConsentRecord.confirmed_at)
    )
    return db.session.execute(query).scalars().all()


# --- The admin view -------------------------------------------------------------------------------

# A page of search results; the search asks for one more row to know whether a next page exists.
SEARCH_PAGE_SIZE = 50
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


def _on_postgres() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


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


# --- Imports and exports (the admin's CSV import and export, SPEC §4) ---------------------------


def _among(query: Any, table: Any, column: Any, values: list[Any]) -> Any:
    """Like ``_matching``, for the import's lookups of 5,000 values: on SQLite the values go as
    one JSON array read by json_each, instead of 5,000 bound parameters that SQLAlchemy renders
    one by one on every execution (a third of the import's time outside the database)."""
    if db.session.get_bind().dialect.name == "postgresql":
        if values and isinstance(values[0], int):
            return query.where(column.in_(values))
        return _matching(query, table, column, values)
    given: Select[Any] = select(literal_column("value")).select_from(
        func.json_each(json.dumps(values))
    )
    return query.where(column.in_(given))


def import_profiles(emails: Sequence[str], *, for_update: bool = False) -> list[Row[Any]]:
    """The profiles of one chunk of an import: id, address, name and global state. ``for_update``
    locks them on PostgreSQL (SQLite's write transaction holds the whole database already)."""
    found: list[Row[Any]] = []
    columns = (
        Profile.id,
        Profile.email,
        Profile.name,
        Profile.status.label("status"),
        Profile.suspended_until,
        Profile.resume_status,
    )
    for start in range(0, len(emails), IN_CLAUSE_CHUNK):
        chunk = list(emails[start : start + IN_CLAUSE_CHUNK])
        query = _among(select(*columns), Profile, Profile.email, chunk)
        if for_update and db.session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(of=Profile)
        found.extend(db.session.execute(query))
    return found


def import_subscriptions(profile_ids: Sequence[int], resource_ids: Sequence[int]) -> list[Row[Any]]:
    """The subscriptions of these profiles to these resources (every channel), with their state."""
    found: list[Row[Any]] = []
    if not profile_ids or not resource_ids:
        return found
    columns = (
        Subscription.id,
        Subscription.profile_id,
        Subscription.resource_id,
        Subscription.channel,
        Subscription.status,
        Subscription.suspended_until,
        Subscription.resume_status,
    )
    for start in range(0, len(profile_ids), IN_CLAUSE_CHUNK):
        chunk = list(profile_ids[start : start + IN_CLAUSE_CHUNK])
        query = _among(
            select(*columns).where(Subscription.resource_id.in_(list(resource_ids))),
            Subscription,
            Subscription.profile_id,
            chunk,
        )
        found.extend(db.session.execute(query))
    return found


def import_suppressed(hashes: Iterable[str]) -> set[str]:
    """``suppressed_hashes`` for an import's chunk (see ``_among``)."""
    found: set[str] = set()
    unique = list(dict.fromkeys(hashes))
    for start in range(0, len(unique), IN_CLAUSE_CHUNK):
        chunk = unique[start : start + IN_CLAUSE_CHUNK]
        query = _among(select(Suppression.email_hash), Suppression, Suppression.email_hash, chunk)
        found.update(db.session.execute(query).scalars())
    return found


def import_job(job_id: int) -> ImportJob | None:
    """One CSV import, with its counters."""
    return db.session.get(ImportJob, job_id)


def recent_import_jobs(limit: int = 50) -> Sequence[ImportJob]:
    """The newest imports first, for the admin's list."""
    query = select(ImportJob).order_by(ImportJob.id.desc()).limit(limit)
    return db.session.execute(query).scalars().all()


def import_rejections(
    job_id: int, *, offset: int = 0, limit: int = 50
) -> Sequence[ImportRejection]:
    """One page of an import's rejected rows, in the order of the file."""
    query = (
        select(ImportRejection)
        .where(ImportRejection.job_id == job_id)
        .order_by(ImportRejection.line, ImportRejection.id)
        .offset(offset)
        .limit(limit)
    )
    return db.session.execute(query).scalars().all()


def import_rejection_counts(job_id: int) -> list[tuple[str, int]]:
    """How many rows of an import were rejected for each reason, the most frequent first."""
    query = (
        select(ImportRejection.reason, func.count())
        .where(ImportRejection.job_id == job_id)
        .group_by(ImportRejection.reason)
        .order_by(func.count().desc(), ImportRejection.reason)
    )
    return [(reason, number) for reason, number in db.session.execute(query)]


def profiles_export_query(
    *,
    global_status: str | None = None,
    resource_id: int | None = None,
    channel: str | None = None,
    subscription_status: str | None = None,
    created_from: datetime | None = None,
    created_before: datetime | None = None,
) -> Any:
    """Profiles matching the admin's export filters, by id; with a resource, one row for each of
    their subscriptions to it (on ``channel``, or every channel) with its status."""
    columns: list[Any] = [
        Profile.id,
        Profile.email,
        Profile.name,
        Profile.status.label("status"),
        Profile.suspended_until,
        Profile.created_at,
    ]
    query = select(*columns)
    if resource_id is not None:
        query = query.add_columns(
            Subscription.channel, Subscription.status.label("subscription_status")
        ).join(Subscription, Subscription.profile_id == Profile.id)
        query = query.where(Subscription.resource_id == resource_id)
        if channel:
            query = query.where(Subscription.channel == channel)
        if subscription_status:
            query = query.where(Subscription.status == subscription_status)
    if global_status:
        query = query.where(Profile.status == global_status)
    if created_from is not None:
        query = query.where(Profile.created_at >= created_from)
    if created_before is not None:
        query = query.where(Profile.created_at < created_before)
    return query.order_by(Profile.id)


def stream_rows(query: Any, *, batch_size: int = 2000) -> Iterator[Row[Any]]:
    """Any export query row by row in constant memory (a server-side cursor on PostgreSQL),
    from one statement and so one snapshot."""
    with db.engine.connect() as connection, connection.begin():
        yield from connection.execution_options(yield_per=batch_size).execute(query)


# --- Metrics (app/metrics.py reads these at scrape time) ------------------------------------------


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


class OutboxBacklog(NamedTuple):
    unsent: int
    due: int
    retrying: int
    oldest_due_age: float


def outbox_backlog(now: datetime) -> OutboxBacklog:
    """How much mail waits, how much of it is due, and for how long the oldest due message has
    waited: read from the pending index (``sent_at``, ``next_attempt_at``)."""
    due = OutboxMessage.next_attempt_at <= now
    query = select(
        func.count(),
        func.count().filter(due),
        func.count().filter(OutboxMessage.attempts > 0),
        func.min(OutboxMessage.next_attempt_at).filter(due),
    ).where(OutboxMessage.sent_at.is_(None))
    unsent, due_count, retrying, oldest = db.session.execute(query).one()
    age = (now - oldest).total_seconds() if oldest is not None else 0.0
    return OutboxBacklog(unsent, due_count, retrying, max(age, 0.0))


def import_jobs_in_progress() -> int:
    """Imports queued or running (services/imports/jobs.py's states); one whose process died stays
    "running" until the next worker claims it and finishes it."""
    query = select(func.count()).where(ImportJob.state.in_(["queued", "running"]))
    return db.session.execute(query).scalar_one()
