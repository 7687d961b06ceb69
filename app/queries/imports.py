"""The admin's CSV import and export (SPEC §4): the lookups of an import's chunk, its job and
rejections, and the export's query and stream.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, func, literal_column, select

from app.extensions import db
from app.models import ImportJob, ImportRejection, Profile, Subscription, Suppression
from app.queries._common import IN_CLAUSE_CHUNK, _matching


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


def import_jobs_in_progress() -> int:
    """Imports queued or running (services/imports/jobs.py's states); one whose process died stays
    "running" until the next worker claims it and finishes it."""
    query = select(func.count()).where(ImportJob.state.in_(["queued", "running"]))
    return db.session.execute(query).scalar_one()
