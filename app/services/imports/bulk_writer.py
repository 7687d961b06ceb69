"""The bulk writer: one chunk's ``Plan`` written with a few bulk statements in the open
transaction. The one place in optin allowed to bypass the ORM, and why: an import writes
millions of rows, and going through ORM objects (or even SQLAlchemy's per-value processing of
Core statements) cost several times the database's own work. So the statements are compiled
by SQLAlchemy from the models' tables, and the values go to the driver as they are, with the
only conversion they need (UTC timestamps, ``db_time``) done here as ``UTCDateTime`` would.

So it must write every column the ORM would set by itself: a new profile's link key and search
keys, ids from the database's own counter (``_new_ids``), a changed subscription's cleared
confirmation nonce.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy import bindparam, column, func, insert, null, select, table, update

from app.addresses import InvalidEmail, email_hash, normalize_email, search_key
from app.database import UTCDateTime
from app.extensions import db
from app.models import (
    ConsentRecord,
    ImportRejection,
    Profile,
    StatusEvent,
    Subscription,
    Suppression,
    SuppressionEvent,
    WebhookDelivery,
)
from app.services.imports.planning import Plan, SubscriptionKey
from app.services.imports.rows import Rejection
from app.services.webhooks import queueing as webhooks
from app.status import Cause
from app.tokens import new_link_key


def db_time(dialect: Any) -> Callable[[datetime], Any] | None:
    """How a UTC time goes to the driver, as UTCDateTime sends it. On SQLite that is SQLAlchemy's
    text format, written here directly: its own processing costs 3 us a value (a test holds the
    two to the same text)."""
    if dialect.name == "sqlite":
        return _sqlite_time
    return UTCDateTime().dialect_impl(dialect).bind_processor(dialect)


def _sqlite_time(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _executemany(statement: Any, rows: list[dict[str, Any]], times: Sequence[str] = ()) -> None:
    """Run a Core statement once for each row, as the driver's executemany.

    The statement is compiled by SQLAlchemy from the table, but the values go to the driver as
    they are: SQLAlchemy's per-value processing cost three times the database's own work. The
    only values that need converting are the timestamps (``times``), done here as UTCDateTime
    would do them.
    """
    if not rows:
        return
    connection = db.session.connection()
    dialect = connection.dialect
    convert = db_time(dialect)
    if times and convert is not None:
        # A chunk's rows share a few times (its clock, the consent dates): convert each once.
        converted: dict[datetime, Any] = {}
        for row in rows:
            for key in times:
                value = row[key]
                if value is not None:
                    found = converted.get(value)
                    if found is None:
                        found = converted[value] = convert(value)
                    row[key] = found
    compiled = statement.compile(dialect=dialect, column_keys=list(rows[0]))
    if compiled.positional:
        values = itemgetter(*compiled.positiontup)
        connection.exec_driver_sql(compiled.string, [values(row) for row in rows])
    else:
        connection.exec_driver_sql(compiled.string, rows)


def _insert_many(table: Any, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """``_executemany`` for an INSERT whose rows are tuples in ``columns`` order with their times
    converted already (``db_time``): the import's hot path, with no dict made for a row."""
    if not rows:
        return
    connection = db.session.connection()
    compiled = insert(table).compile(dialect=connection.dialect, column_keys=list(columns))
    if compiled.positional and compiled.positiontup is not None:
        order = [columns.index(name) for name in compiled.positiontup]
        if order != list(range(len(columns))):
            pick = itemgetter(*order)
            rows = [pick(row) for row in rows]
        connection.exec_driver_sql(compiled.string, rows)
    else:
        named = [dict(zip(columns, row, strict=True)) for row in rows]
        connection.exec_driver_sql(compiled.string, named)


class _Times:
    """Times converted for the driver, each distinct one once (a chunk shares its clock)."""

    def __init__(self) -> None:
        self._convert = db_time(db.session.connection().dialect)
        self._done: dict[datetime, Any] = {}

    def __call__(self, value: datetime | None) -> Any:
        if value is None or self._convert is None:
            return value
        found = self._done.get(value)
        if found is None:
            found = self._done[value] = self._convert(value)
        return found


PROFILE_COLUMNS = (
    "id",
    "email",
    "email_hash",
    "name",
    "global_status",
    "suspended_until",
    "resume_status",
    "created_at",
    "updated_at",
    "link_key",
    "email_key",
    "name_key",
)
SUBSCRIPTION_COLUMNS = (
    "id",
    "profile_id",
    "resource_id",
    "channel",
    "status",
    "suspended_until",
    "resume_status",
    "created_at",
    "updated_at",
    "confirmed_at",
)
EVENT_COLUMNS = (
    "profile_id",
    "resource_id",
    "channel",
    "old_status",
    "new_status",
    "suspended_until",
    "cause",
    "actor",
    "reason",
    "ip",
    "user_agent",
    "occurred_at",
)
CONSENT_COLUMNS = ("subscription_id", "confirmed_at", "form")


def _new_ids(target: Any, count: int) -> list[int]:
    """Ids for rows about to be inserted, from the database's own allocator, so that no query
    has to find them afterwards. PostgreSQL's sequence hands out ``count`` at once. On SQLite
    it is AUTOINCREMENT's counter (``sqlite_sequence``): the largest id the table ever had,
    which, unlike ``max(id)``, does not go back when the newest row is deleted (an old link
    would then name the next person, tokens.py). The chunk's write transaction keeps every other
    writer out until these rows are in, and inserting them moves the counter past them."""
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        serial = func.pg_get_serial_sequence(target.name, "id")
        found = connection.execute(
            select(func.nextval(serial)).select_from(func.generate_series(1, count))
        )
        return [row[0] for row in found]
    sequence = table("sqlite_sequence", column("name"), column("seq"))
    counter = select(sequence.c.seq).where(sequence.c.name == target.name).scalar_subquery()
    largest = select(func.max(target.c.id)).scalar_subquery()
    top = connection.execute(
        select(func.max(func.coalesce(counter, 0), func.coalesce(largest, 0)))
    ).scalar()
    return list(range(int(top or 0) + 1, int(top or 0) + 1 + count))


def write_plan(plan: Plan, now: datetime) -> None:
    """Write one chunk's plan with bulk statements (executemany), in the open transaction."""
    profile_ids = dict(plan.profile_ids)
    at = _Times()
    stamp = at(now)
    if plan.new_profiles:
        ids = _new_ids(Profile.__table__, len(plan.new_profiles))
        rows = []
        for (email, v), new_id in zip(plan.new_profiles.items(), ids, strict=True):
            profile_ids[email] = new_id
            rows.append(
                (
                    new_id,
                    email,
                    v["email_hash"],
                    v["name"],
                    v["global_status"],
                    at(v["suspended_until"]),
                    v["resume_status"],
                    stamp,
                    stamp,
                    new_link_key(),
                    # The admin search's keys, which the ORM sets itself (models.Profile).
                    search_key(email),
                    search_key(v["name"]),
                )
            )
        _insert_many(Profile.__table__, PROFILE_COLUMNS, rows)
    if plan.profile_updates:
        table = Profile.__table__
        _executemany(
            update(table)
            .where(table.c.id == bindparam("profile_id"))
            .values(
                name=bindparam("new_name"),
                name_key=bindparam("new_name_key"),
                global_status=bindparam("new_status"),
                suspended_until=bindparam("new_until"),
                resume_status=bindparam("new_resume"),
                updated_at=bindparam("now"),
            ),
            [
                {
                    "profile_id": profile_ids[email],
                    "new_name": values["name"],
                    "new_name_key": search_key(values["name"]),
                    "new_status": values["global_status"],
                    "new_until": values["suspended_until"],
                    "new_resume": values["resume_status"],
                    "now": now,
                }
                for email, values in plan.profile_updates.items()
            ],
            ("new_until", "now"),
        )
    if plan.global_changed:
        table = Subscription.__table__
        _executemany(
            update(table)
            .where(table.c.profile_id == bindparam("of_profile"))
            .where(table.c.confirm_nonce.is_not(None))
            .values(confirm_nonce=null(), updated_at=bindparam("now")),
            [{"of_profile": profile_ids[email], "now": now} for email in plan.global_changed],
            ("now",),
        )
    subscription_ids: dict[SubscriptionKey, int] = dict(plan.subscription_ids)
    if plan.new_subscriptions:
        ids = _new_ids(Subscription.__table__, len(plan.new_subscriptions))
        subscription_rows: list[tuple[Any, ...]] = []
        for (key, v), new_id in zip(plan.new_subscriptions.items(), ids, strict=True):
            subscription_ids[key] = new_id
            subscription_rows.append(
                (
                    new_id,
                    profile_ids[key[0]],
                    v["resource_id"],
                    v["channel"],
                    v["status"],
                    at(v["suspended_until"]),
                    v["resume_status"],
                    stamp,
                    stamp,
                    at(v["confirmed_at"]),
                )
            )
        _insert_many(Subscription.__table__, SUBSCRIPTION_COLUMNS, subscription_rows)
    if plan.subscription_updates:
        _update_subscriptions(plan.subscription_updates, now)
    if plan.events:
        events = [
            (
                profile_ids[email],
                resource_id,
                channel,
                old,
                new,
                at(until),
                cause,
                actor.name,
                actor.reason,
                actor.ip,
                actor.user_agent,
                stamp,
            )
            for email, resource_id, channel, old, new, cause, actor, until in plan.events
        ]
        _write_events(events, stamp)
    if plan.suppressions:
        _write_suppressions(plan, stamp)
    if plan.consents:
        _insert_many(
            ConsentRecord.__table__,
            CONSENT_COLUMNS,
            [
                (subscription_ids[(email, resource_id, channel)], at(consent_at), "import")
                for email, resource_id, channel, consent_at in plan.consents
            ],
        )


def _write_events(events: list[tuple[Any, ...]], stamp: Any) -> None:
    """The chunk's status events (``EVENT_COLUMNS``), and their webhook deliveries, in bulk:
    an import fires webhooks like any other change, queued in its chunk's transaction. With no
    enabled endpoint that costs one small read a chunk; with some, the events take their ids
    from the database's counter first (``_new_ids``), so that their deliveries can name them."""
    targets = webhooks.bulk_targets()
    if not targets:
        _insert_many(StatusEvent.__table__, EVENT_COLUMNS, events)
        return
    ids = _new_ids(StatusEvent.__table__, len(events))
    _insert_many(
        StatusEvent.__table__,
        ("id", *EVENT_COLUMNS),
        [(event_id, *event) for event_id, event in zip(ids, events, strict=True)],
    )
    # (id, profile, resource, channel, new status) of each event, in the order written.
    about = ((i, e[0], e[1], e[2], e[4]) for i, e in zip(ids, events, strict=True))
    deliveries = webhooks.imported_deliveries(targets, about, stamp)
    _insert_many(WebhookDelivery.__table__, webhooks.DELIVERY_COLUMNS, deliveries)


def _write_suppressions(plan: Plan, stamp: Any) -> None:
    """The chunk's addresses on the suppression list, each with its history line, as
    ``statuses.change_status`` writes them for a bounce (cause ``import``, the import's
    actor)."""
    actor = plan.actor
    _insert_many(
        Suppression.__table__,
        ("email_hash", "email", "reason", "actor", "created_at"),
        [
            (hashed, email, Cause.IMPORT.value, actor.name, stamp)
            for email, hashed in plan.suppressions
        ],
    )
    _insert_many(
        SuppressionEvent.__table__,
        ("email_hash", "email", "action", "cause", "reason", "actor", "occurred_at"),
        [
            (hashed, email, "added", Cause.IMPORT.value, actor.reason, actor.name, stamp)
            for email, hashed in plan.suppressions
        ],
    )


def _update_subscriptions(updates: dict[int, dict[str, Any]], now: datetime) -> None:
    table = Subscription.__table__
    # Rows that became subscribed also get their confirmation time; the others keep theirs.
    for with_confirmation in (True, False):
        batch = [
            {
                "subscription_id": sub_id,
                "new_status": values["status"],
                "new_until": values["suspended_until"],
                "new_resume": values["resume_status"],
                "now": now,
                **({"new_confirmed": values["confirmed_at"]} if with_confirmation else {}),
            }
            for sub_id, values in updates.items()
            if ("confirmed_at" in values) is with_confirmation
        ]
        if not batch:
            continue
        columns: dict[str, Any] = {
            "status": bindparam("new_status"),
            "suspended_until": bindparam("new_until"),
            "resume_status": bindparam("new_resume"),
            "updated_at": bindparam("now"),
            # A changed subscription's pending confirmation link confirms nothing any more.
            "confirm_nonce": null(),
        }
        times = ["new_until", "now"]
        if with_confirmation:
            columns["confirmed_at"] = bindparam("new_confirmed")
            times.append("new_confirmed")
        _executemany(
            update(table).where(table.c.id == bindparam("subscription_id")).values(**columns),
            batch,
            times,
        )


def rejection_hash(raw: str | None) -> str | None:
    """The suppression hash of a rejected row's address as written, or None when it is no
    address: what erasure looks rejections up by (the raw spelling is not the profile's)."""
    if raw is None:
        return None
    try:
        return email_hash(normalize_email(raw))
    except InvalidEmail:
        return None


def write_rejections(job_id: int, rejections: Sequence[Rejection]) -> None:
    if rejections:
        _executemany(
            insert(ImportRejection.__table__),
            [
                {
                    "job_id": job_id,
                    "line": r.line,
                    "email": r.email,
                    "email_hash": rejection_hash(r.email),
                    "reason": r.reason[:300],
                }
                for r in rejections
            ],
        )
