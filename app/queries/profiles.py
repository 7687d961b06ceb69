"""Reads of one profile, resource or subscription and of their history and consent, as the
customer's pages and the services look them up.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import select

from app.extensions import db
from app.models import (
    ConsentRecord,
    ConsentText,
    Profile,
    Resource,
    StatusEvent,
    Subscription,
    Suppression,
)
from app.queries._common import IN_CLAUSE_CHUNK


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


def lock_profiles_in_address_order(addresses: Collection[str]) -> None:
    """Lock the profiles of these normalised addresses until the commit, one after the other in
    the order of their addresses, so that two transactions that both lock several profiles
    queue behind each other instead of each holding what the other waits for (a deadlock)."""
    ordered = sorted(set(addresses))
    for start in range(0, len(ordered), IN_CLAUSE_CHUNK):
        chunk = ordered[start : start + IN_CLAUSE_CHUNK]
        # PostgreSQL locks the rows in the order the sort hands them over.
        query = (
            select(Profile.id)
            .where(Profile.email.in_(chunk))
            .order_by(Profile.email)
            .with_for_update()
        )
        db.session.execute(query).all()


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


def profile_by_id(profile_id: int, *, for_update: bool = False) -> Profile | None:
    """A profile by id; ``for_update`` locks its row until the commit and reads it afresh, as
    ``profile_by_email`` does."""
    if for_update:
        return db.session.get(Profile, profile_id, with_for_update=True, populate_existing=True)
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
