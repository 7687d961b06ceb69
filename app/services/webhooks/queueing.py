"""Queueing deliveries in the transaction of the change they announce (issue 15).

``statuses.change_status``, the one door for status changes, hands each event it records to
``queue_status_event``; erasure calls ``queue_erasure``; the import's bulk writer asks
``bulk_targets`` and writes ``imported_deliveries`` itself. A delivery stores which event it is
about, never the document, so the document is built when it is sent (``delivery.py``).

Cheap when no endpoint exists: the enabled endpoints are read once per transaction (a signup
records two events and pays one small query), and nothing else happens; a status change asks
whether any is enabled in a statement it runs anyway (``note_no_endpoint``), and then not even
that query runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from flask import current_app, g
from sqlalchemy.orm import SessionTransaction

from app import queries
from app.changes import ChangeKind, event_type
from app.database import utcnow
from app.extensions import db
from app.models import WebhookDelivery
from app.queries import WebhookTarget

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
TEST_TYPE = "webhook.test"
ERASED_TYPE = "profile.erased"
_CACHE = "optin_webhook_targets"
# The requests' claims for delivery after the response (OUTBOX_DELIVER_INLINE).
CLAIMS = "webhook_claims"


def type_of(channel: str | None, new_status: str) -> str:
    """The event type of a status event, as ``changes.event_type`` names its document."""
    scope = "global" if channel is None else "resource"
    return event_type({"kind": ChangeKind.STATUS.value, "scope": scope, "new_status": new_status})


def wants(target: WebhookTarget, kind: str, resource_id: int | None) -> bool:
    """Whether an endpoint chose this type of change and, for a subscription's, its resource.
    A global change or an erasure goes to every endpoint that chose its type, whatever
    resources it named: the global status governs every resource (SPEC §1 rule 1)."""
    if target.event_types is not None and kind not in target.event_types:
        return False
    return resource_id is None or target.resource_ids is None or resource_id in target.resource_ids


def _targets() -> list[WebhookTarget]:
    """The enabled endpoints, read once per transaction."""
    session = db.session()
    transaction: SessionTransaction | None = session.get_transaction()
    cached = session.info.get(_CACHE)
    if cached is not None and transaction is not None and cached[0] is transaction:
        targets: list[WebhookTarget] = cached[1]
        return targets
    targets = queries.enabled_webhook_targets()
    session.info[_CACHE] = (transaction, targets)
    return targets


def note_no_endpoint() -> None:
    """What the caller read in this transaction: no endpoint is enabled (a status change asks
    with its suppression read), so the transaction's events queue nothing and read nothing."""
    session = db.session()
    session.info[_CACHE] = (session.get_transaction(), [])


def lease() -> timedelta:
    """How long a claim on a delivery holds, from WEBHOOKS_LEASE_SECONDS."""
    return timedelta(seconds=current_app.config["WEBHOOKS_LEASE_SECONDS"])


def _queue(deliveries: list[WebhookDelivery]) -> None:
    """Add the deliveries; in the embedded default also claim them for this request, which
    sends them once its response is out (``worker.send_after_responses``)."""
    if not deliveries:
        return
    inline = current_app.config["OUTBOX_DELIVER_INLINE"]
    now = utcnow()
    for delivery in deliveries:
        delivery.created_at = delivery.next_attempt_at = now
        delivery.state = PENDING
        delivery.attempts = 0
        if inline:
            delivery.claimed_until = now + lease()
        db.session.add(delivery)
    if inline:
        db.session.flush()  # the ids, to send exactly these after the commit
        claims = g.setdefault(CLAIMS, [])
        claims.extend((d.id, d.claimed_until) for d in deliveries)


def any_endpoint() -> bool:
    """Whether any endpoint is enabled: when none is, a status change queues nothing and needs
    no id of the events it writes."""
    return bool(_targets())


def queue_status_event(
    event_id: int,
    profile_id: int | None,
    resource_id: int | None,
    channel: str | None,
    new_status: str,
) -> None:
    """Queue the delivery of a status event (written in this transaction) to every enabled
    endpoint that wants it."""
    targets = _targets()
    if not targets:
        return
    kind = type_of(channel, new_status)
    _queue(
        [
            WebhookDelivery(
                endpoint_id=target.id, type=kind, status_event_id=event_id, profile_id=profile_id
            )
            for target in targets
            if wants(target, kind, resource_id)
        ]
    )


def queue_erasure(profile_id: int, *, actor: str | None, at: datetime | None = None) -> None:
    """Queue ``profile.erased``: the profile id to forget, and no address."""
    at = at or utcnow()
    _queue(
        [
            WebhookDelivery(
                endpoint_id=target.id,
                type=ERASED_TYPE,
                profile_id=profile_id,
                erased_at=at,
                actor=actor,
            )
            for target in _targets()
            if wants(target, ERASED_TYPE, None)
        ]
    )


def queue_test(endpoint_id: int) -> None:
    """Queue a ``webhook.test`` delivery to one endpoint, enabled or not (a paused endpoint's
    test waits for its resume, like every delivery)."""
    _queue([WebhookDelivery(endpoint_id=endpoint_id, type=TEST_TYPE)])


# --- The import's bulk writer -------------------------------------------------------------------

DELIVERY_COLUMNS = (
    "endpoint_id",
    "type",
    "status_event_id",
    "profile_id",
    "state",
    "attempts",
    "created_at",
    "next_attempt_at",
)


def bulk_targets() -> list[WebhookTarget]:
    """The enabled endpoints for an import's chunk: empty, the chunk queues nothing."""
    return queries.enabled_webhook_targets()


def imported_deliveries(
    targets: list[WebhookTarget],
    events: Iterable[tuple[int, int, int | None, str | None, str]],
    stamp: Any,
) -> list[tuple[Any, ...]]:
    """The delivery rows (``DELIVERY_COLUMNS``) of a chunk's events, each given as (event id,
    profile id, resource id, channel, new status), in their order; ``stamp`` is the chunk's
    time as the driver takes it. The import is not a second door: the same rule of ``wants``
    picks the endpoints, and the worker sends them like any other delivery."""
    rows: list[tuple[Any, ...]] = []
    for event_id, profile_id, resource_id, channel, new_status in events:
        kind = type_of(channel, new_status)
        rows.extend(
            (target.id, kind, event_id, profile_id, PENDING, 0, stamp, stamp)
            for target in targets
            if wants(target, kind, resource_id)
        )
    return rows
