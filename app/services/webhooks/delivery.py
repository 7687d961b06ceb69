"""Sending queued deliveries: claimed with a lease like the outbox's mail (``FOR UPDATE SKIP
LOCKED`` on PostgreSQL, so any number of workers can run), the document built now from the
stored event, signed, POSTed, and the outcome written in a short transaction of its own.

In order per profile: a delivery is not claimed while an earlier one of the same endpoint and
profile is still pending (being tried, or waiting for its next try), so a receiver never sees
``subscribed`` after the ``unsubscribed`` that followed it.

Retries: 16 tries over about 31 hours (5 s doubling to 10 h, each wait stretched by up to a
quarter at random so that a crowd of deliveries that failed together does not come back
together). Then the delivery is ``failed``; if the endpoint has had no 2xx answer since that
delivery was queued, it has been failing for over a day and is paused, with the reason shown
in the admin. A 410 Gone pauses it at once: the receiver says the endpoint is gone.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.orm import aliased

from app import queries
from app.changes import erasure_document, status_change_document
from app.database import utcnow, write_transaction
from app.extensions import db
from app.models import WebhookDelivery, WebhookEndpoint
from app.services.webhooks import signing, transport
from app.services.webhooks.queueing import (
    DELIVERED,
    FAILED,
    PENDING,
    TEST_TYPE,
    lease,
)

log = logging.getLogger(__name__)

FIRST_RETRY = timedelta(seconds=5)
LONGEST_WAIT = timedelta(hours=10)
MAX_ATTEMPTS = 16
ERROR_LENGTH = 500


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed try: 5 s doubling up to 10 h, plus up to a
    quarter more at random (never less: the schedule must span a day)."""
    # A shift, not 2 ** n: the type checker cannot tell that a power with an int exponent is int.
    base = min(FIRST_RETRY * (1 << max(attempts - 1, 0)), LONGEST_WAIT)
    return base * (1 + secrets.randbelow(1001) / 4000)


@dataclass(frozen=True)
class Claimed:
    """What sending needs of a claimed delivery, copied out so that no reload follows."""

    id: int
    endpoint_id: int
    url: str
    secret: str
    type: str
    status_event_id: int | None
    profile_id: int | None
    erased_at: datetime | None
    actor: str | None
    attempts: int
    created_at: datetime


@dataclass
class Report:
    delivered: int = 0
    failed: int = 0
    waiting: int = 0  # released untried: its endpoint failed earlier in the same round

    @property
    def handled(self) -> int:
        return self.delivered + self.failed + self.waiting


def _claimable(now: datetime | None) -> Any:
    """Pending deliveries of enabled endpoints, oldest first; with ``now``, only those due and
    claimed by no one."""
    query = (
        select(WebhookDelivery, WebhookEndpoint.url, WebhookEndpoint.secret)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.state == PENDING, WebhookEndpoint.enabled.is_(True))
        .order_by(WebhookDelivery.id)
    )
    if now is not None:
        # Rows behind an earlier one that waits for its next try, or is in a worker's hands,
        # are left out here already: a batch full of them would starve every other endpoint.
        earlier = aliased(WebhookDelivery)
        stuck_before = exists().where(
            earlier.endpoint_id == WebhookDelivery.endpoint_id,
            earlier.profile_id == WebhookDelivery.profile_id,
            earlier.state == PENDING,
            earlier.id < WebhookDelivery.id,
            or_(earlier.next_attempt_at > now, earlier.claimed_until >= now),
        )
        query = query.where(
            WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until < now),
            ~stuck_before,
        )
    return query


def _in_order(rows: list[Any]) -> list[Any]:
    """The rows (in id order) that no pending delivery outside them precedes in their
    endpoint and profile: those are sent in this round, one after the other; the rest wait.
    A pending delivery outside the rows is waiting for its next try, or in another worker's
    hands, and must go first."""
    grouped = [row for row in rows if row[0].profile_id is not None]
    if not grouped:
        return rows
    first_outside = dict(
        ((endpoint_id, profile_id), first)
        for endpoint_id, profile_id, first in db.session.execute(
            select(
                WebhookDelivery.endpoint_id,
                WebhookDelivery.profile_id,
                func.min(WebhookDelivery.id),
            )
            .where(
                WebhookDelivery.state == PENDING,
                WebhookDelivery.endpoint_id.in_({row[0].endpoint_id for row in grouped}),
                WebhookDelivery.profile_id.in_({row[0].profile_id for row in grouped}),
                WebhookDelivery.id.not_in([row[0].id for row in rows]),
            )
            .group_by(WebhookDelivery.endpoint_id, WebhookDelivery.profile_id)
        )
    )
    return [
        row
        for row in rows
        if row[0].profile_id is None
        or row[0].id < first_outside.get((row[0].endpoint_id, row[0].profile_id), row[0].id + 1)
    ]


def _copy(row: WebhookDelivery, url: str, secret: str) -> Claimed:
    return Claimed(
        row.id,
        row.endpoint_id,
        url,
        secret,
        row.type,
        row.status_event_id,
        row.profile_id,
        row.erased_at,
        row.actor,
        row.attempts,
        row.created_at,
    )


def claim(limit: int, now: datetime) -> list[Claimed]:
    """Claim up to ``limit`` due deliveries for this process, each until its lease runs out."""
    until = now + lease()
    with write_transaction() as session:
        query = _claimable(now).limit(limit).with_for_update(skip_locked=True, of=WebhookDelivery)
        claimed = []
        for row, url, secret in _in_order(list(session.execute(query).all())):
            row.claimed_until = until
            claimed.append(_copy(row, url, secret))
        return claimed


def document(delivery: Claimed) -> dict[str, Any] | None:
    """The ``data`` of a delivery, built now: an address erased since the change was queued is
    not sent. None: its status event is gone (it cannot be, events are kept; said for safety)."""
    if delivery.type == TEST_TYPE:
        return {"kind": "test", "endpoint": delivery.endpoint_id, "at": _iso(delivery.created_at)}
    if delivery.status_event_id is None:
        return erasure_document(
            delivery.profile_id or 0,
            at=delivery.erased_at or delivery.created_at,
            actor=delivery.actor,
        )
    found = queries.status_event_with_subject(delivery.status_event_id)
    if found is None:
        return None
    return status_change_document(found.event, email=found.email, resource_slug=found.resource_slug)


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def body_of(delivery: Claimed, data: dict[str, Any]) -> bytes:
    """The Standard Webhooks body: the type, the time of the change, and its document."""
    payload = {"type": delivery.type, "timestamp": data.get("at"), "data": data}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def policy() -> transport.Policy:
    config = current_app.config
    return transport.Policy(
        allow_http=config["WEBHOOKS_ALLOW_HTTP"],
        allow_private=config["WEBHOOKS_ALLOW_PRIVATE"],
        connect_timeout=float(config["WEBHOOKS_CONNECT_TIMEOUT"]),
        read_timeout=float(config["WEBHOOKS_READ_TIMEOUT"]),
    )


@dataclass(frozen=True)
class Outcome:
    delivery: Claimed
    status: int | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def attempt(delivery: Claimed) -> Outcome:
    """One try: build, sign, POST. Never raises for what the endpoint or the network did."""
    data = document(delivery)
    db.session.rollback()  # end the read before the network wait: no transaction held open
    if data is None:
        return Outcome(delivery, error="the status event is gone")
    body = body_of(delivery, data)
    message_id = f"msg_{delivery.id}"
    headers = signing.headers(delivery.secret, message_id, int(utcnow().timestamp()), body)
    try:
        status = transport.post(delivery.url, body, headers, policy())
    except (transport.Refused, transport.Unreachable) as error:
        return Outcome(delivery, error=str(error)[:ERROR_LENGTH])
    if 200 <= status < 300:
        return Outcome(delivery, status=status)
    return Outcome(delivery, status=status, error=f"answered {status}")


def record(outcome: Outcome) -> None:
    """Write one try's outcome and release its claim, in a transaction of its own."""
    delivery = outcome.delivery
    now = utcnow()
    tries = delivery.attempts + 1
    values: dict[str, Any] = {
        "claimed_until": None,
        "attempts": tries,
        "last_status_code": outcome.status,
        "last_error": outcome.error,
    }
    pause: str | None = None
    with write_transaction() as session:
        endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
        if outcome.delivered:
            values |= {"state": DELIVERED, "delivered_at": now}
            if endpoint is not None:
                endpoint.last_delivered_at = now
        elif outcome.status == 410:
            values["state"] = FAILED
            pause = "the endpoint answered 410 Gone"
        elif tries >= MAX_ATTEMPTS:
            values["state"] = FAILED
            quiet = endpoint is not None and (
                endpoint.last_delivered_at is None
                or endpoint.last_delivered_at < delivery.created_at
            )
            if quiet:
                pause = (
                    f"no delivery succeeded since {delivery.created_at:%Y-%m-%d %H:%M} UTC: "
                    f"delivery {delivery.id} failed {tries} times ({outcome.error})"
                )
        else:
            values["next_attempt_at"] = now + backoff(tries)
        session.execute(
            update(WebhookDelivery).where(WebhookDelivery.id == delivery.id).values(values)
        )
        if pause is not None and endpoint is not None and endpoint.enabled:
            endpoint.enabled = False
            endpoint.paused_reason = pause[:ERROR_LENGTH]
            endpoint.paused_at = now
            log.warning("webhook endpoint %s paused: %s", endpoint.id, pause)


def _release(delivery: Claimed) -> None:
    with write_transaction() as session:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery.id)
            .values(claimed_until=None)
        )


def send_each(claimed: list[Claimed]) -> Report:
    """Try the claimed deliveries one by one. Once an endpoint has failed in this round, its
    other deliveries are released untried: no knocking again at an endpoint that is down (and
    no outliving their lease behind its timeouts)."""
    report = Report()
    down: set[int] = set()
    for delivery in claimed:
        if delivery.endpoint_id in down:
            _release(delivery)
            report.waiting += 1
            continue
        outcome = attempt(delivery)
        record(outcome)
        if outcome.delivered:
            report.delivered += 1
        else:
            report.failed += 1
            down.add(delivery.endpoint_id)
    return report


def deliver_due(limit: int = 100, *, now: datetime | None = None) -> Report:
    """Send the deliveries that are due, at most ``limit`` of them: the worker's round."""
    return send_each(claim(limit, now or utcnow()))


def _claimed_here(claims: Collection[tuple[int, datetime]]) -> list[Claimed]:
    """The deliveries this request queued and claimed, if its transaction committed (a row is
    ours only with our lease on it), and of them those that no earlier pending delivery of the
    same endpoint and profile holds back. The others are let go at once, for a worker to send
    in order."""
    leases = dict(claims)
    query = _claimable(None).where(WebhookDelivery.id.in_(list(leases)))
    ours = [
        row for row in db.session.execute(query).all() if row[0].claimed_until == leases[row[0].id]
    ]
    mine = [_copy(row, url, secret) for row, url, secret in _in_order(ours)]
    db.session.rollback()  # end the read, so that recording can take the write lock
    held = {row[0].id for row in ours} - {claimed.id for claimed in mine}
    if held:
        with write_transaction() as session:
            session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id.in_(held))
                .values(claimed_until=None)
            )
    return mine


def deliver_claimed(claims: Collection[tuple[int, datetime]]) -> Report:
    """Send what a request queued (OUTBOX_DELIVER_INLINE), after its response."""
    return send_each(_claimed_here(claims))
