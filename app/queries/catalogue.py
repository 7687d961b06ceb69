"""Resources and their current consent texts as the customer's pages read them: kept per process,
so that rendering a signup form or taking a signup needs no query for them.

Every request of the public pages names a resource, and resources change only when an admin edits
one. The process that writes a resource or a consent text drops its copy when that transaction
commits (a SQLAlchemy event, so every way of writing them counts); the other processes read
theirs afresh after ``CATALOGUE_CACHE_SECONDS``, the longest an edit made elsewhere takes to
show. A transaction that has written one of them reads them from the database until it ends, so
it sees its own change (and no other request sees it before the commit).

The copies are detached from every session and never refreshed: they carry ids, slugs, names and
flags to pages and services, never a change. Whoever edits a resource reads it with
``queries.resource_by_id``.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import current_app
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, make_transient_to_detached

from app.extensions import db
from app.models import ConsentText, Resource
from app.queries.profiles import (
    current_consent_text,
    public_resources,
    resource_by_id,
    resource_by_slug,
)

EXTENSION = "optin_catalogue"
# Set on a session that flushed a resource or a consent text, until its transaction ends.
_WROTE = "optin_catalogue_written"
# Bumped when a transaction that wrote one commits: every app of this process drops its copy.
_generation = [0]
M = TypeVar("M", Resource, ConsentText)


@dataclass
class Catalogue:
    """One process's copy of the resources and the newest consent text of each."""

    generation: int
    loaded_at: float
    by_slug: dict[str, Resource] = field(default_factory=dict)
    by_id: dict[int, Resource] = field(default_factory=dict)
    # resource id (None: the all-resources form's) -> its newest consent text
    consent: dict[int | None, ConsentText] = field(default_factory=dict)
    # Pages rendered from this copy (app/views/page_cache.py): they go when it goes.
    pages: dict[Hashable, str] = field(default_factory=dict)


def _copy(row: M) -> M:
    """A detached copy of a loaded row with its columns, for any session to read, none to change."""
    columns = {attr.key: getattr(row, attr.key) for attr in row.__mapper__.column_attrs}
    copy = type(row)(**columns)
    make_transient_to_detached(copy)
    return copy


def _load(generation: int) -> Catalogue:
    catalogue = Catalogue(generation, time.monotonic())
    for resource in db.session.execute(select(Resource)).scalars():
        copy = _copy(resource)
        catalogue.by_slug[copy.slug] = copy
        catalogue.by_id[copy.id] = copy
    newest = (
        select(ConsentText.resource_id, func.max(ConsentText.version).label("version"))
        .group_by(ConsentText.resource_id)
        .subquery()
    )
    query = select(ConsentText).join(
        newest,
        (ConsentText.version == newest.c.version)
        & (
            (ConsentText.resource_id == newest.c.resource_id)
            | (ConsentText.resource_id.is_(None) & newest.c.resource_id.is_(None))
        ),
    )
    for text in db.session.execute(query).scalars():
        catalogue.consent[text.resource_id] = _copy(text)
    return catalogue


def catalogue() -> Catalogue | None:
    """This app's copy, loaded if it is missing or stale; None while this request's transaction
    has written a resource or a consent text (then the callers read the database)."""
    if db.session().info.get(_WROTE):
        return None
    extensions: dict[str, Any] = current_app.extensions
    held: Catalogue | None = extensions.get(EXTENSION)
    generation = _generation[0]
    ttl: float = current_app.config["CATALOGUE_CACHE_SECONDS"]
    if held is None or held.generation != generation or time.monotonic() - held.loaded_at >= ttl:
        held = extensions[EXTENSION] = _load(generation)
    return held


def cached_resource_by_slug(slug: str) -> Resource | None:
    """``resource_by_slug`` for the public pages and the services they call (a detached copy)."""
    held = catalogue()
    if held is None:
        return resource_by_slug(slug)
    return held.by_slug.get(slug)


def cached_resource_by_id(resource_id: int) -> Resource | None:
    """``resource_by_id`` for the public pages and the services they call (a detached copy)."""
    held = catalogue()
    if held is None:
        return resource_by_id(resource_id)
    return held.by_id.get(resource_id)


def cached_public_resources() -> Sequence[Resource]:
    """``public_resources``, by name, for the landing page and the all-resources form."""
    held = catalogue()
    if held is None:
        return public_resources()
    return sorted((r for r in held.by_id.values() if r.public), key=lambda r: r.name)


def cached_consent_text(resource_id: int | None) -> ConsentText | None:
    """``current_consent_text``: what a signup form shows now, and its version."""
    held = catalogue()
    if held is None:
        return current_consent_text(resource_id)
    return held.consent.get(resource_id)


@event.listens_for(Session, "after_flush")
def _note_catalogue_writes(session: Session, _context: Any) -> None:
    written = (*session.new, *session.dirty, *session.deleted)
    if any(isinstance(row, Resource | ConsentText) for row in written):
        session.info[_WROTE] = True


@event.listens_for(Session, "after_commit")
def _drop_stale_copies(session: Session) -> None:
    if session.info.pop(_WROTE, False):
        _generation[0] += 1


@event.listens_for(Session, "after_transaction_end")
def _forget_uncommitted_writes(session: Session, transaction: Any) -> None:
    if transaction.parent is None:
        session.info.pop(_WROTE, None)
