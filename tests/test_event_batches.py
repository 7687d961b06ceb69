"""Delivery-event batches (POST /api/v1/events, the provider webhooks) that arrive at the same
time: each applies whole, whatever order the batches name their people in."""

from __future__ import annotations

import contextlib
import threading
import uuid
from datetime import datetime

import pytest
from flask import Flask

from app.database import utcnow
from app.extensions import db
from app.models import DeliveryEvent, Resource
from app.services import events
from app.services.events import EventType, IncomingEvent, record_events
from app.services.statuses import Actor
from tests.conftest import on_postgres
from tests.helpers import ALICE, BOB, count, subscribed

API = Actor(name="api:test")


def unsubscribes(*addresses: str) -> list[IncomingEvent]:
    return [
        IncomingEvent(
            type=EventType.UNSUBSCRIBE,
            email=address,
            event_id=uuid.uuid4().hex,
            occurred_at=utcnow(),
        )
        for address in addresses
    ]


@pytest.mark.skipif(not on_postgres(), reason="row locks that wait: needs TEST_DATABASE_URL")
def test_two_batches_naming_the_same_people_in_opposite_orders_both_apply(
    app: Flask, newsletter: Resource, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batch one names Alice then Bob, batch two Bob then Alice. Each stops after its first
    event until the other has done its first too (or 3 s have passed): had each locked its
    first person only, each would now wait for the other's, and PostgreSQL would abort one
    batch as a deadlock, answering the provider an error."""
    subscribed(ALICE, "newsletter")
    subscribed(BOB, "newsletter")
    meet = threading.Barrier(2, timeout=3)
    first_done = threading.local()
    apply = events._apply

    def apply_then_wait_for_the_other(
        event: IncomingEvent, address: str, actor: Actor, now: datetime
    ) -> None:
        apply(event, address, actor, now)
        if not getattr(first_done, "value", False):
            first_done.value = True
            # Broken after 3 s when the other batch waits for this one's locks: as it should.
            with contextlib.suppress(threading.BrokenBarrierError):
                meet.wait()

    monkeypatch.setattr(events, "_apply", apply_then_wait_for_the_other)
    errors: list[BaseException] = []

    def send(batch: list[IncomingEvent]) -> None:
        with app.app_context():
            try:
                record_events(batch, source="api", actor=API)
            except BaseException as error:  # handed to the test's thread, which fails on it
                errors.append(error)
            finally:
                db.session.remove()

    batches = [unsubscribes(ALICE, BOB), unsubscribes(BOB, ALICE)]
    threads = [threading.Thread(target=send, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    db.session.expire_all()
    assert count(DeliveryEvent) == 4  # both batches recorded whole
    for address in (ALICE, BOB):
        profile = events.queries.profile_by_email(address)
        assert profile is not None and profile.status == "unsubscribed"
