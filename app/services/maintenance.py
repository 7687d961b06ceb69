"""`statuses expire`: suspensions that have ended, and the retention of rule 8."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update

from app import queries
from app.database import utcnow, write_transaction
from app.models import StatusEvent
from app.services.statuses import settle_profile


@dataclass(frozen=True)
class ExpiryReport:
    suspensions_ended: int
    subscriptions_deleted: int
    profiles_deleted: int


def expire(retention_days: int, *, now: datetime | None = None) -> ExpiryReport:
    """End the suspensions whose time has come (recording `suspension_ended`), then delete
    unconfirmed subscriptions older than ``retention_days`` and the profiles left with nothing.

    Each profile's suspensions end in a transaction of their own, so a long run holds no lock for
    long and a crash half-way loses nothing that a second run would not redo.
    """
    now = now or utcnow()
    ended = 0
    for email in queries.emails_with_ended_suspensions(now):
        ended += len(settle_profile(email, now=now))

    cutoff = now - timedelta(days=retention_days)
    with write_transaction() as session:
        stale = queries.stale_unconfirmed_subscriptions(cutoff)
        for subscription in stale:
            session.delete(subscription)
        session.flush()
        abandoned = queries.abandoned_profiles(cutoff)
        if abandoned:
            # What stays of a profile that never confirmed is the anonymous count of its events.
            session.execute(
                update(StatusEvent)
                .where(StatusEvent.profile_id.in_([p.id for p in abandoned]))
                .values(profile_id=None, ip=None, user_agent=None)
            )
        for profile in abandoned:
            session.delete(profile)
    return ExpiryReport(ended, len(stale), len(abandoned))
