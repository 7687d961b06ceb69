"""Delivery events from the sending platform and the mail providers: hard and soft bounces,
complaints, unsubscribes. Each event is applied through the rules of status.py once; the same
provider event id a second time changes nothing and records nothing (rule 9)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from flask import current_app
from sqlalchemy import func, select

from app import queries
from app.addresses import InvalidEmail, email_hash, hash_address_in, normalize_email
from app.database import transactional, utcnow
from app.extensions import db
from app.models import DeliveryEvent
from app.services import statuses
from app.services.errors import InvalidInput, UnknownChannel, UnknownResource
from app.services.statuses import Actor, parse_channel
from app.status import Cause, Channel, Complaint, HardBounce, Pause, Unsubscribe


class EventType(StrEnum):
    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE = "soft_bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"


@dataclass(frozen=True)
class IncomingEvent:
    """One event in the generic format of SPEC §3, as the API and the webhooks hand it over."""

    type: EventType
    email: str
    event_id: str
    occurred_at: datetime
    resource: str | None = None
    channel: str = Channel.EMAIL.value


@dataclass(frozen=True)
class EventsReport:
    accepted: int
    duplicates: int


class InvalidEvent(InvalidInput):
    """An event that cannot be applied; ``field`` names where, like ``events[2].email``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def _checked(events: Sequence[IncomingEvent]) -> list[tuple[IncomingEvent, str]]:
    """Every event with its normalised address, or InvalidEvent for the first bad one: a batch
    is applied whole or not at all."""
    checked = []
    for index, event in enumerate(events):
        where = f"events[{index}]"
        try:
            address = normalize_email(event.email)
        except InvalidEmail as error:
            raise InvalidEvent(f"{where}.email", str(error)) from None
        if not event.event_id or len(event.event_id) > 200 or "\x00" in event.event_id:
            raise InvalidEvent(f"{where}.event_id", "an event id of 1 to 200 characters is needed")
        if event.resource is not None and "\x00" in event.resource:
            raise UnknownResource(event.resource, f"{where}.resource")
        try:
            channel = parse_channel(event.channel)
            if event.resource is not None:
                statuses.resource_for(event.resource, channel)
        except UnknownResource:
            raise UnknownResource(event.resource or "", f"{where}.resource") from None
        except UnknownChannel as error:
            raise InvalidEvent(f"{where}.channel", str(error)) from None
        checked.append((event, address))
    return checked


@transactional
def record_events(
    events: Sequence[IncomingEvent], *, source: str, actor: Actor, now: datetime | None = None
) -> EventsReport:
    """Apply a batch of events in one transaction; ``source`` scopes the event ids (a provider's
    name, or ``api``)."""
    checked = _checked(events)
    # Each event locks its profile, in the batch's order; two batches naming the same people in
    # other orders would each hold a lock the other waits for. Taken first, in one order, the
    # second batch waits for the first instead.
    queries.lock_profiles_in_address_order([address for _event, address in checked])
    moment = now or utcnow()
    accepted = duplicates = 0
    seen: set[str] = set()
    for event, address in checked:
        # An id that spells the address keeps its hash instead: delivery events hold no
        # address (erasure keeps them), and a redelivery still finds its first copy.
        event_id = hash_address_in(event.event_id, address)[:200]
        if event_id in seen or _known(source, event_id):
            duplicates += 1
            continue
        seen.add(event_id)
        resource = queries.resource_by_slug(event.resource) if event.resource else None
        db.session.add(
            DeliveryEvent(
                source=source,
                event_id=event_id,
                type=event.type.value,
                email_hash=email_hash(address),
                resource_id=resource.id if resource else None,
                occurred_at=event.occurred_at,
                received_at=moment,
            )
        )
        db.session.flush()
        _apply(event, address, actor, moment)
        accepted += 1
    return EventsReport(accepted, duplicates)


def _known(source: str, event_id: str) -> bool:
    query = select(DeliveryEvent.id).where(
        DeliveryEvent.source == source, DeliveryEvent.event_id == event_id
    )
    return db.session.scalar(query) is not None


def _apply(event: IncomingEvent, address: str, actor: Actor, now: datetime) -> None:
    channel = Channel(event.channel)
    profile = queries.profile_by_email(address)
    if event.type is EventType.HARD_BOUNCE:
        statuses.change_status(address, HardBounce(), None, channel, actor=actor, now=now)
    elif event.type is EventType.COMPLAINT:
        resource = event.resource if profile is not None else None
        statuses.change_status(address, Complaint(), resource, channel, actor=actor, now=now)
    elif event.type is EventType.UNSUBSCRIBE:
        if profile is not None:
            statuses.change_status(
                address,
                Unsubscribe(Cause.UNSUBSCRIBE_LINK),
                event.resource,
                channel,
                actor=actor,
                now=now,
            )
    elif (
        event.type is EventType.SOFT_BOUNCE
        and profile is not None
        and _soft_bounces(address, now) >= current_app.config["SOFT_BOUNCE_LIMIT"]
    ):
        until = now + timedelta(days=current_app.config["SOFT_BOUNCE_SUSPEND_DAYS"])
        statuses.change_status(
            address, Pause(until, Cause.BOUNCE), None, channel, actor=actor, now=now
        )


def _soft_bounces(address: str, now: datetime) -> int:
    """Soft bounces of the address within SOFT_BOUNCE_WINDOW days."""
    since = now - timedelta(days=current_app.config["SOFT_BOUNCE_WINDOW"])
    query = select(func.count()).where(
        DeliveryEvent.email_hash == email_hash(address),
        DeliveryEvent.type == EventType.SOFT_BOUNCE.value,
        DeliveryEvent.occurred_at >= since,
    )
    return db.session.scalar(query) or 0
