"""Reads about outgoing webhooks: the endpoints a change is queued for, the admin's lists, and
the status event a delivery's document is built from at send time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from sqlalchemy import select

from app.extensions import db
from app.models import Profile, Resource, StatusEvent, WebhookDelivery, WebhookEndpoint


class WebhookTarget(NamedTuple):
    """What queueing needs of an enabled endpoint: its id and what it chose (None: all)."""

    id: int
    event_types: frozenset[str] | None
    resource_ids: frozenset[int] | None


def enabled_webhook_targets() -> list[WebhookTarget]:
    """The enabled endpoints, for queueing: one small read, none of the columns it need not."""
    rows = db.session.execute(
        select(WebhookEndpoint.id, WebhookEndpoint.event_types, WebhookEndpoint.resource_ids).where(
            WebhookEndpoint.enabled.is_(True)
        )
    )
    return [
        WebhookTarget(
            row.id,
            frozenset(row.event_types) if row.event_types is not None else None,
            frozenset(row.resource_ids) if row.resource_ids is not None else None,
        )
        for row in rows
    ]


def webhook_endpoints() -> Sequence[WebhookEndpoint]:
    """Every endpoint, oldest first: the admin's list and ``webhooks list``."""
    return db.session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)).all()


def webhook_endpoint(endpoint_id: int) -> WebhookEndpoint | None:
    return db.session.get(WebhookEndpoint, endpoint_id)


def webhook_deliveries_of(endpoint_id: int, limit: int = 100) -> Sequence[WebhookDelivery]:
    """An endpoint's newest deliveries first: its delivery log in the admin."""
    return db.session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    ).all()


class EventSubject(NamedTuple):
    event: StatusEvent
    email: str | None  # None once the profile is erased
    resource_slug: str | None


def status_event_with_subject(event_id: int) -> EventSubject | None:
    """A status event with its profile's address as it is now (gone after an erasure) and its
    resource's slug: what a delivery's document is built from when it is sent."""
    row = db.session.execute(
        select(StatusEvent, Profile.email, Resource.slug)
        .outerjoin(Profile, Profile.id == StatusEvent.profile_id)
        .outerjoin(Resource, Resource.id == StatusEvent.resource_id)
        .where(StatusEvent.id == event_id)
    ).first()
    return EventSubject(row[0], row[1], row[2]) if row is not None else None
