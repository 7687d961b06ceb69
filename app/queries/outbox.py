"""Reads about the mail waiting in the outbox: the rate caps and the backlog ``/metrics`` shows."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import bindparam, func, select

from app.extensions import db
from app.models import OutboxMessage

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
