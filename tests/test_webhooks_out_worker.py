"""Webhook deliveries sent by the worker process and by the web process (issue 15, item 3): a
worker killed in the middle of a delivery loses nothing (the next worker sends it again after the
claim's lease, with the same ``webhook-id``), and the embedded default sends a request's
deliveries right after its response."""

from __future__ import annotations

import json
import signal
import threading
from collections import Counter
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from app.database import utcnow
from app.extensions import db
from app.models import Resource, WebhookDelivery
from app.services import subscriptions
from app.services.resources import create_resource
from app.services.statuses import Actor
from app.services.webhooks import delivery, endpoints
from tests import test_webhooks_out
from tests.conftest import make_app, on_postgres
from tests.test_outages import outbox_worker_process, wait_for
from tests.test_webhooks_out import Receiver

needs_postgres = pytest.mark.skipif(
    not on_postgres(), reason="row locks to skip (SQLite lets one writer in): TEST_DATABASE_URL"
)
receiver = test_webhooks_out.receiver
local = test_webhooks_out.local
PEOPLE = [f"reader{number}@example.com" for number in range(3)]


def states() -> Counter[str]:
    db.session.rollback()
    return Counter(db.session.scalars(select(WebhookDelivery.state)))


@pytest.mark.slow
def test_a_worker_killed_mid_delivery_loses_nothing_and_the_next_one_sends_it_again(
    local: Flask, receiver: Receiver, newsletter: Resource, database_url: str, tmp_path: Path
) -> None:
    endpoints.create_endpoint(receiver.url)
    for person in PEOPLE:
        subscriptions.request_signup(person, ["newsletter"], form="test", actor=Actor())
    db.session.remove()
    assert states() == Counter({"pending": 6})
    receiver.hold_first = threading.Event()
    settings = {
        "WEBHOOKS_ALLOW_HTTP": "true",
        "WEBHOOKS_ALLOW_PRIVATE": "true",
        "WEBHOOKS_LEASE_SECONDS": "3",
    }
    first = outbox_worker_process(database_url, tmp_path, idle=0.2, **settings)
    try:
        assert wait_for(lambda: len(receiver.received) == 1), "the first worker sent nothing"
        first.send_signal(signal.SIGKILL)  # in the middle of the first delivery
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
        receiver.hold_first.set()
    assert states() == Counter({"pending": 6})  # nothing recorded, nothing lost

    second = outbox_worker_process(database_url, tmp_path, idle=0.2, **settings)
    try:
        assert wait_for(lambda: states() == Counter({"delivered": 6})), states()
    finally:
        second.terminate()
        second.wait(timeout=30)
    ids = Counter(headers["webhook-id"] for headers, _body in receiver.received)
    # The one in flight came twice, under the same id for the receiver to drop; the rest once.
    assert len(ids) == 6 and sorted(ids.values()) == [1, 1, 1, 1, 1, 2]
    first_id = json.loads(receiver.received[0][1])["data"]
    assert first_id["email"] == PEOPLE[0] and first_id["scope"] == "global"


def embedded_app(database_url: str) -> Flask:
    """The embedded default (``make run``): deliveries sent by the web process."""
    return make_app(
        database_url,
        OUTBOX_DELIVER_INLINE=True,
        MAIL_BACKEND="console",
        WEBHOOKS_ALLOW_HTTP=True,
        WEBHOOKS_ALLOW_PRIVATE=True,
        RATELIMIT_ENABLED=False,
        WTF_CSRF_ENABLED=False,
    )


def emptied() -> None:
    db.session.remove()
    with db.engine.begin() as connection:
        for table in reversed(db.metadata.sorted_tables):
            connection.execute(table.delete())
    db.engine.dispose()


def test_the_embedded_default_sends_a_requests_deliveries_after_its_response(
    database_url: str, _schema: None, receiver: Receiver
) -> None:
    web = embedded_app(database_url)
    with web.app_context():
        try:
            create_resource("newsletter", "The Newsletter")
            endpoints.create_endpoint(receiver.url)
            db.session.remove()
            answer = web.test_client().post(
                "/subscribe/newsletter", data={"email": PEOPLE[0], "consent": "y"}
            )
            assert answer.status_code == 200
            answer.close()  # the response is out: its deliveries go now, in order
            assert [json.loads(body)["type"] for _h, body in receiver.received] == [
                "profile.unconfirmed",
                "subscription.unconfirmed",
            ]
            assert states() == Counter({"delivered": 2})
        finally:
            emptied()


def test_the_embedded_default_never_overtakes_a_delivery_waiting_for_its_next_try(
    database_url: str, _schema: None, receiver: Receiver
) -> None:
    receiver.answer = lambda _number: 500
    web = embedded_app(database_url)
    with web.app_context():
        try:
            create_resource("newsletter", "The Newsletter")
            create_resource("offers", "Offers")
            endpoints.create_endpoint(receiver.url)
            db.session.remove()
            client = web.test_client()
            for slug in ("newsletter", "offers"):
                answer = client.post(
                    f"/subscribe/{slug}", data={"email": PEOPLE[0], "consent": "y"}
                )
                assert answer.status_code == 200
                answer.close()
            # One try, refused; the rest wait behind it, unclaimed, for the worker.
            assert len(receiver.received) == 1
            waiting = db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)).all()
            assert [d.attempts for d in waiting] == [1, 0, 0]
            assert all(d.state == "pending" and d.claimed_until is None for d in waiting)
        finally:
            emptied()


@needs_postgres
def test_two_workers_claiming_at_once_share_nothing_and_keep_each_profiles_order(
    local: Flask, newsletter: Resource
) -> None:
    endpoints.create_endpoint("https://crm.example/hooks")
    for number in range(10):
        subscriptions.request_signup(
            f"reader{number}@example.com", ["newsletter"], form="test", actor=Actor()
        )
    db.session.remove()
    start = threading.Barrier(2)
    claimed: dict[str, set[int]] = {}

    def claim(name: str) -> None:
        with local.app_context():
            start.wait()
            claimed[name] = {d.id for d in delivery.claim(5, utcnow())}
            db.session.remove()

    workers = [threading.Thread(target=claim, args=(name,)) for name in ("a", "b")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert not claimed["a"] & claimed["b"]
    assert claimed["a"] and claimed["b"]
    rows = db.session.execute(select(WebhookDelivery.id, WebhookDelivery.profile_id)).all()
    for mine in claimed.values():
        for delivery_id, profile_id in rows:
            if delivery_id in mine:
                earlier = {i for i, p in rows if p == profile_id and i < delivery_id}
                assert earlier <= mine, "a claim overtook an earlier delivery in other hands"
