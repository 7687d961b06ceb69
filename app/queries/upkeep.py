"""The reads of ``flask upkeep``: suspensions that have ended and what rule 8 cleans away."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import exists, select

from app.extensions import db
from app.models import Profile, Subscription
from app.status import Status


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
