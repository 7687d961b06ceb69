"""Webhook endpoints, as the admin view and ``flask webhooks`` manage them: the URL, the event
types and resources it chose (None: all, the ones added later too), its secret (made here and
shown once), and whether it is enabled or paused, with the reason."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from flask import current_app
from sqlalchemy import update

from app import queries
from app.changes import EVENT_TYPES
from app.database import transactional, utcnow
from app.extensions import db
from app.models import WebhookDelivery, WebhookEndpoint
from app.services.errors import InvalidInput, NotFound, UnknownResource
from app.services.webhooks import signing
from app.services.webhooks.queueing import FAILED, PENDING, queue_test
from app.services.webhooks.transport import url_problem


@dataclass(frozen=True)
class Choice:
    """What an endpoint receives: None means every event type, or every resource."""

    event_types: list[str] | None = None
    resource_slugs: list[str] | None = None


def _url(url: str) -> str:
    url = url.strip()
    problem = url_problem(url, allow_http=current_app.config["WEBHOOKS_ALLOW_HTTP"])
    if problem is not None or len(url) > 2000:
        raise InvalidInput(problem or "the URL is longer than 2,000 characters")
    return url


def _event_types(chosen: Iterable[str] | None) -> list[str] | None:
    if chosen is None:
        return None
    types = list(dict.fromkeys(chosen))
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        raise InvalidInput(
            f"unknown event type {unknown[0]!r}; choose from {', '.join(EVENT_TYPES)}"
        )
    if not types:
        raise InvalidInput("choose at least one event type")
    return None if set(types) == set(EVENT_TYPES) else types


def _resource_ids(slugs: Iterable[str] | None) -> list[int] | None:
    if slugs is None:
        return None
    ids = []
    for slug in dict.fromkeys(slugs):
        resource = queries.resource_by_slug(slug)
        if resource is None:
            raise UnknownResource(slug)
        ids.append(resource.id)
    if not ids:
        raise InvalidInput("choose at least one resource, or all")
    return ids


@transactional
def create_endpoint(url: str, choice: Choice = Choice()) -> tuple[WebhookEndpoint, str]:
    """A new, enabled endpoint; returns it and its secret, shown this once."""
    secret = signing.new_secret()
    endpoint = WebhookEndpoint(
        url=_url(url),
        event_types=_event_types(choice.event_types),
        resource_ids=_resource_ids(choice.resource_slugs),
        secret=secret,
        enabled=True,
        created_at=utcnow(),
    )
    db.session.add(endpoint)
    db.session.flush()
    return endpoint, secret


def _endpoint(endpoint_id: int) -> WebhookEndpoint:
    endpoint = queries.webhook_endpoint(endpoint_id)
    if endpoint is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint


@transactional
def update_endpoint(endpoint_id: int, url: str, choice: Choice) -> WebhookEndpoint:
    """Change what an endpoint receives and where; its secret and its queue stay."""
    endpoint = _endpoint(endpoint_id)
    endpoint.url = _url(url)
    endpoint.event_types = _event_types(choice.event_types)
    endpoint.resource_ids = _resource_ids(choice.resource_slugs)
    return endpoint


@transactional
def pause_endpoint(endpoint_id: int, reason: str) -> WebhookEndpoint:
    """Stop sending to it: nothing new is queued for it, its pending deliveries wait."""
    endpoint = _endpoint(endpoint_id)
    if endpoint.enabled:
        endpoint.enabled = False
        endpoint.paused_reason = reason.strip()[:500] or "paused by an admin"
        endpoint.paused_at = utcnow()
    return endpoint


@transactional
def resume_endpoint(endpoint_id: int) -> WebhookEndpoint:
    """Send to it again: its pending deliveries are due at once, and the ones that had run out
    of tries while it was failing are tried afresh (what made it pause is presumably fixed).
    Changes made while it was paused were not queued for it: the change feed has them."""
    endpoint = _endpoint(endpoint_id)
    now = utcnow()
    db.session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint.id,
            WebhookDelivery.state.in_([PENDING, FAILED]),
        )
        .values(state=PENDING, attempts=0, next_attempt_at=now, claimed_until=None)
    )
    endpoint.enabled = True
    endpoint.paused_reason = None
    endpoint.paused_at = None
    return endpoint


@transactional
def delete_endpoint(endpoint_id: int) -> None:
    """Remove it and its delivery log."""
    db.session.delete(_endpoint(endpoint_id))


@transactional
def send_test(endpoint_id: int) -> None:
    """Queue a ``webhook.test`` delivery, to check the URL and the receiver's signature check."""
    queue_test(_endpoint(endpoint_id).id)
