"""Reads about the mail waiting in the outbox: the rate caps, the backlog ``/metrics`` shows, and
what the send-time check reads of a message's profile."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import and_, bindparam, exists, func, select
from sqlalchemy.engine import Connection

from app.extensions import db
from app.models import OutboxMessage, Profile, Resource, Subscription, Suppression
from app.status import State, stored_state

_outbox = OutboxMessage.__table__.c
# Built once: every signup asks (rule 4's cap), so it only binds its values.
_SENT_TO_SINCE = select(func.count()).where(
    _outbox.to_address == bindparam("address"),
    _outbox.template == bindparam("template"),
    _outbox.created_at >= bindparam("since"),
)


def emails_sent_to_since(address: str, template: str, since: datetime) -> int:
    """How many messages of one kind were queued for an address since a time (rate caps)."""
    params = {"address": address, "template": template, "since": since}
    count: int = db.session.execute(_SENT_TO_SINCE, params).scalar_one()
    return count


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


class Listed(NamedTuple):
    """What a message's List-Id and Feedback-ID name of the resource it is about."""

    slug: str
    name: str


class Recipient(NamedTuple):
    """What delivery reads of a message's profile at send time: the states ``can_send`` judges
    and the link key its unsubscribe links are minted with; and, in the same statement, the
    resource the message is about, as it is now."""

    link_key: str
    state: State | None  # as stored_state reads it (a profile's status column is never empty)
    # The profile's subscription to the message's resource on email (None: none, or no resource).
    subscription: State | None
    suppressed: bool
    resource: Listed | None  # None: a message about no one resource (or one since deleted)


_profiles, _subscriptions, _resources = (
    Profile.__table__,
    Subscription.__table__,
    Resource.__table__,
)
# One statement, built once: Core on the table columns, so the ORM compiles nothing per message.
# A message about no resource binds resource_id to NULL, which joins no subscription and no
# resource.
_RECIPIENT = (
    select(
        _profiles.c.link_key,
        _profiles.c.global_status,
        _profiles.c.suspended_until,
        _profiles.c.resume_status,
        exists()
        .where(Suppression.__table__.c.email_hash == _profiles.c.email_hash)
        .label("suppressed"),
        _subscriptions.c.status,
        _subscriptions.c.suspended_until,
        _subscriptions.c.resume_status,
        _resources.c.slug,
        _resources.c.name,
    )
    .select_from(
        _profiles.outerjoin(
            _subscriptions,
            and_(
                _subscriptions.c.profile_id == _profiles.c.id,
                _subscriptions.c.resource_id == bindparam("resource_id"),
                _subscriptions.c.channel == bindparam("channel"),
            ),
        ).outerjoin(_resources, _resources.c.id == bindparam("resource_id"))
    )
    .where(_profiles.c.id == bindparam("profile_id"))
)


def recipient_of(
    profile_id: int, resource_id: int | None, channel: str, connection: Connection | None = None
) -> Recipient | None:
    """A message's profile as it is now, with its subscription to the message's resource on
    ``channel``, whether its address is suppressed, and the resource's List-Id names; None once
    the profile is erased.
    ``connection``: the delivery's own (else the session's)."""
    params = {"profile_id": profile_id, "resource_id": resource_id, "channel": channel}
    on = db.session if connection is None else connection
    row = on.execute(_RECIPIENT, params).one_or_none()
    if row is None:
        return None
    link_key, status, until, resume, suppressed, sub_status, sub_until, sub_resume, slug, name = row
    return Recipient(
        link_key,
        stored_state(status, until, resume),
        stored_state(sub_status, sub_until, sub_resume),
        bool(suppressed),
        Listed(slug, name) if slug is not None else None,
    )
