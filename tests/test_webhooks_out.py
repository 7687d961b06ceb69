"""Outgoing webhooks (issue 15, items 2 and 3) against a real HTTP receiver in the test process:
signed the Standard Webhooks way (checked with its own package), queued in the change's
transaction, in order per profile, retried after a run of 500s, paused when an endpoint keeps
failing, never aimed at a private address unless a setting allows it, and built at send time so
that an erasure leaves nothing personal to send."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from sqlalchemy import event, select
from standardwebhooks import Webhook

from app.changes import EVENT_TYPES
from app.database import write_transaction
from app.extensions import db
from app.models import Resource, StatusEvent, WebhookDelivery, WebhookEndpoint
from app.openapi import openapi_document
from app.services import imports, preferences, subscriptions
from app.services.errors import InvalidInput
from app.services.statuses import Actor, change_status
from app.services.webhooks import delivery, endpoints, transport
from app.status import Channel, Signup
from tests import factories
from tests.helpers import ALICE, BOB, Clock, count

README = Path(__file__).resolve().parent.parent / "README.md"


class Receiver:
    """A real HTTP server on 127.0.0.1 that records every POST and answers with the status
    ``answer`` gives (200 unless a test says otherwise)."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.answer: Callable[[int], int] = lambda _number: 200
        self.delay = 0.0
        self.redirect_to: str | None = None
        # Set: the first request waits (unanswered) until it is set, or 30 s.
        self.hold_first: threading.Event | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                if receiver.delay:
                    time.sleep(receiver.delay)
                if receiver.hold_first is not None and len(receiver.received) == 1:
                    receiver.hold_first.wait(30)
                status = receiver.answer(len(receiver.received))
                self.send_response(status)
                if receiver.redirect_to:
                    self.send_header("Location", receiver.redirect_to)
                self.send_header("Content-Length", "2")
                self.end_headers()
                with contextlib.suppress(OSError):  # the sender may be gone (a killed worker)
                    self.wfile.write(b"ok")

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def start(self) -> Receiver:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def payloads(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _headers, body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def local(app: Flask) -> Flask:
    """The settings a receiver on this machine needs (tests and development only)."""
    app.config.update(WEBHOOKS_ALLOW_HTTP=True, WEBHOOKS_ALLOW_PRIVATE=True)
    return app


def add_endpoint(url: str, **choice: Any) -> tuple[int, str]:
    endpoint, secret = endpoints.create_endpoint(url, endpoints.Choice(**choice))
    endpoint_id = endpoint.id
    db.session.remove()
    return endpoint_id, secret


def deliveries() -> list[WebhookDelivery]:
    db.session.rollback()
    return list(db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def endpoint_row(endpoint_id: int) -> WebhookEndpoint:
    db.session.rollback()
    found = db.session.get(WebhookEndpoint, endpoint_id)
    assert found is not None
    return found


def deliver_until_quiet(clock: Clock, rounds: int = 100) -> None:
    """Run the worker's webhook round, moving the clock to each next try, until no delivery of
    an enabled endpoint is pending."""
    for _ in range(rounds):
        handled = delivery.deliver_due().handled
        waiting = [
            d.next_attempt_at
            for d in deliveries()
            if d.state == "pending" and endpoint_row(d.endpoint_id).enabled
        ]
        if not waiting:
            return
        later = [moment for moment in waiting if moment > clock.now]
        assert handled or later, "deliveries pending that no round sends"
        if not handled:
            clock.now = min(later) + timedelta(seconds=1)
    raise AssertionError("deliveries still pending")


# --- Signed, in the change's transaction, built at send time -------------------------------------


def test_a_confirmed_signup_reaches_the_endpoint_signed_the_standard_webhooks_way(
    local: Flask, receiver: Receiver, newsletter: Resource
) -> None:
    _endpoint_id, secret = add_endpoint(receiver.url)
    assert secret.startswith("whsec_")
    factories.signup(ALICE, "newsletter")
    factories.confirm(ALICE, "newsletter")
    assert delivery.deliver_due().delivered == 4  # global and subscription, twice

    checker = Webhook(secret)
    for headers, body in receiver.received:
        assert headers["content-type"] == "application/json"
        checker.verify(body, headers)  # raises on a bad signature or an old timestamp
    types = [p["type"] for p in receiver.payloads()]
    assert types == [
        "profile.unconfirmed",
        "subscription.unconfirmed",
        "profile.subscribed",
        "subscription.subscribed",
    ]
    confirmed = receiver.payloads()[3]
    assert confirmed["data"]["email"] == ALICE
    assert confirmed["data"]["resource"] == "newsletter"
    assert confirmed["data"]["old_status"] == "unconfirmed"
    assert confirmed["timestamp"] == confirmed["data"]["at"]
    # The id is the delivery's, the same on every retry, so a receiver can drop repeats.
    assert len({headers["webhook-id"] for headers, _ in receiver.received}) == 4


def test_every_payload_conforms_to_the_openapi_documents_webhook_schema(
    local: Flask, receiver: Receiver, newsletter: Resource
) -> None:
    document = openapi_document()
    assert document["webhooks"]["change"]["post"]["requestBody"]
    schema = {"$ref": "#/components/schemas/WebhookPayload", "components": document["components"]}
    endpoint_id, _secret = add_endpoint(receiver.url)
    factories.signup(ALICE, "newsletter")
    factories.confirm(ALICE, "newsletter")
    endpoints.send_test(endpoint_id)
    preferences.erase(factories.unsubscribe(ALICE, None).profile_id or 0, actor=Actor())
    delivery.deliver_due()
    types = set()
    for payload in receiver.payloads():
        Draft202012Validator(schema).validate(payload)
        types.add(payload["type"])
    assert {"webhook.test", "profile.erased", "subscription.subscribed"} <= types


def test_a_tampered_body_or_a_foreign_secret_fails_the_receivers_check(
    local: Flask, receiver: Receiver, newsletter: Resource
) -> None:
    _endpoint_id, secret = add_endpoint(receiver.url)
    factories.signup(ALICE, "newsletter")
    delivery.deliver_due()
    headers, body = receiver.received[0]
    with pytest.raises(Exception, match=r"(?i)signature"):
        Webhook(secret).verify(body.replace(b"unconfirmed", b"subscribed"), headers)
    with pytest.raises(Exception, match=r"(?i)signature"):
        Webhook(endpoints.signing.new_secret()).verify(body, headers)


def test_the_readme_receiver_check_accepts_a_delivery_and_refuses_a_forgery(
    local: Flask, receiver: Receiver, newsletter: Resource
) -> None:
    text = README.read_text(encoding="utf-8")
    start = text.index("```python\n# A receiver's check")
    code = text[start + len("```python\n") : text.index("```", start + 10)]
    assert len(code.strip().splitlines()) <= 12
    namespace: dict[str, Any] = {}
    exec(compile(code, "README", "exec"), namespace)
    _endpoint_id, secret = add_endpoint(receiver.url)
    factories.signup(ALICE, "newsletter")
    delivery.deliver_due()
    headers, body = receiver.received[0]
    assert namespace["verified"](secret, headers, body)
    assert not namespace["verified"](secret, headers, body + b" ")


def test_a_change_rolled_back_queues_nothing_and_a_committed_one_queues_with_it(
    local: Flask, receiver: Receiver, newsletter: Resource
) -> None:
    add_endpoint(receiver.url)

    class Abandoned(Exception):
        pass

    with pytest.raises(Abandoned), write_transaction():
        change_status(ALICE, Signup(True), "newsletter", Channel.EMAIL)
        assert db.session.scalar(select(WebhookDelivery.id)) is None or True
        raise Abandoned
    assert (count(StatusEvent), count(WebhookDelivery)) == (0, 0)
    factories.signup(ALICE, "newsletter")
    assert (count(StatusEvent), count(WebhookDelivery)) == (2, 2)
    assert {d.status_event_id for d in deliveries()} == set(
        db.session.scalars(select(StatusEvent.id))
    )


def test_each_delivery_of_a_change_names_the_event_of_its_own_type(
    local: Flask, receiver: Receiver, newsletter: Resource
) -> None:
    """The events of one change are written in one statement: each delivery must still point
    at its own event (the global one's type at the global event, the subscription's at the
    subscription's)."""
    add_endpoint(receiver.url)
    factories.signup(ALICE, "newsletter")
    events = {e.id: e for e in db.session.scalars(select(StatusEvent))}
    pairs = {(d.type, events[d.status_event_id].channel) for d in deliveries() if d.status_event_id}
    assert pairs == {("profile.unconfirmed", None), ("subscription.unconfirmed", "email")}


def test_with_no_endpoint_a_signup_pays_one_small_read_and_writes_nothing_more(
    app: Flask, newsletter: Resource
) -> None:
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        subscriptions.request_signup(ALICE, ["newsletter"], form="test", actor=Actor())
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    about_webhooks = [s for s in statements if "webhook" in s]
    assert len(about_webhooks) == 1, about_webhooks  # two events, one read
    assert about_webhooks[0].lstrip().upper().startswith("SELECT")
    assert count(StatusEvent) == 2


def test_a_delivery_queued_before_an_erasure_sends_no_address_and_the_erasure_comes_last(
    local: Flask, receiver: Receiver, newsletter: Resource
) -> None:
    add_endpoint(receiver.url)
    profile = factories.signup(ALICE, "newsletter")
    profile_id = profile.profile_id
    factories.signup(BOB, "newsletter")
    preferences.erase(profile_id, actor=Actor())
    db.session.remove()
    assert delivery.deliver_due().delivered == 5
    bodies = b"".join(body for _headers, body in receiver.received)
    assert ALICE.encode() not in bodies
    assert BOB.encode() in bodies
    alices = [p for p in receiver.payloads() if p["data"].get("profile") in (profile_id, None)]
    assert [p["type"] for p in alices] == [
        "profile.unconfirmed",
        "subscription.unconfirmed",
        "profile.erased",
    ]
    assert alices[-1]["data"]["profile"] == profile_id
    assert all(p["data"]["email"] is None for p in alices)


# --- Choices ------------------------------------------------------------------------------------


def test_an_endpoint_gets_only_the_event_types_and_resources_it_chose(
    local: Flask, receiver: Receiver, newsletter: Resource, brand: Resource
) -> None:
    add_endpoint(
        receiver.url,
        event_types=["subscription.unsubscribed", "profile.unsubscribed"],
        resource_slugs=["brand"],
    )
    for slug in ("newsletter", "brand"):
        factories.signup(ALICE, slug)
        factories.confirm(ALICE, slug)
        factories.unsubscribe(ALICE, slug)
    factories.unsubscribe(ALICE, None)  # global: sent whatever resources were chosen
    delivery.deliver_due()
    got = [(p["type"], p["data"]["resource"]) for p in receiver.payloads()]
    assert got == [("subscription.unsubscribed", "brand"), ("profile.unsubscribed", None)]


def test_an_unknown_event_type_or_resource_or_an_http_url_in_production_is_refused(
    app: Flask, newsletter: Resource
) -> None:
    with pytest.raises(InvalidInput, match="unknown event type"):
        endpoints.create_endpoint("https://crm.example/h", endpoints.Choice(["profile.nope"]))
    with pytest.raises(LookupError):
        endpoints.create_endpoint("https://crm.example/h", endpoints.Choice(None, ["nope"]))
    for url in (
        "http://crm.example/h",
        "ftp://crm.example/h",
        "https://",
        "https://u:p@x.example/",
    ):
        with pytest.raises(InvalidInput):
            endpoints.create_endpoint(url)
    assert count(WebhookEndpoint) == 0
    endpoint, _ = endpoints.create_endpoint(
        "https://crm.example/h", endpoints.Choice(list(EVENT_TYPES))
    )
    assert endpoint.event_types is None  # every type chosen is "all", those added later too


# --- Order and retries --------------------------------------------------------------------------


def test_after_a_run_of_500s_every_change_arrives_once_in_order_per_profile(
    local: Flask, receiver: Receiver, newsletter: Resource, clock: Clock
) -> None:
    add_endpoint(receiver.url)
    receiver.answer = lambda number: 500 if number <= 6 else 200
    ids = {}
    for who in (ALICE, BOB):
        ids[who] = factories.signup(who, "newsletter").profile_id
        factories.confirm(who, "newsletter")
        factories.unsubscribe(who, "newsletter")
    expected = {
        who: [
            (e.id, e.new_status)
            for e in db.session.scalars(select(StatusEvent).order_by(StatusEvent.id))
            if e.profile_id == pid
        ]
        for who, pid in ids.items()
    }
    deliver_until_quiet(clock)
    accepted = [
        (headers["webhook-id"], json.loads(body))
        for (headers, body), number in zip(receiver.received, range(1, 999), strict=False)
        if number > 6
    ]
    assert len(accepted) == 10 and len({i for i, _ in accepted}) == 10
    for who, events in expected.items():
        mine = [p["data"]["new_status"] for _i, p in accepted if p["data"]["email"] == who]
        assert mine == [status for _id, status in events]
    # Every try that failed was one of the first deliveries, never one that overtook them.
    assert all(d.state == "delivered" for d in deliveries())
    assert max(d.attempts for d in deliveries()) > 1


def test_a_profile_held_back_by_a_failing_delivery_does_not_hold_up_the_other_endpoints(
    local: Flask, receiver: Receiver, newsletter: Resource
) -> None:
    dead = Receiver().start()
    dead.answer = lambda _number: 500
    try:
        add_endpoint(dead.url)
        factories.signup(ALICE, "newsletter")
        factories.confirm(ALICE, "newsletter")  # four deliveries to the failing endpoint
        add_endpoint(receiver.url)
        factories.signup(BOB, "newsletter")
        assert delivery.deliver_due(limit=2).failed == 1  # Alice's first, then it waits
        # Alice's three others wait behind it; a batch of them would starve the live endpoint.
        delivery.deliver_due(limit=2)
        delivery.deliver_due(limit=2)
        assert [p["data"]["email"] for p in receiver.payloads()] == [BOB, BOB]
    finally:
        dead.stop()


@given(st.integers(min_value=1, max_value=40))
def test_the_backoff_grows_to_ten_hours_never_shrinks_and_spans_more_than_a_day(
    attempts: int,
) -> None:
    base = min(delivery.FIRST_RETRY * 2 ** (attempts - 1), delivery.LONGEST_WAIT)
    assert base <= delivery.backoff(attempts) <= base * 1.25
    shortest_schedule = sum(
        (
            min(delivery.FIRST_RETRY * 2 ** (n - 1), delivery.LONGEST_WAIT)
            for n in range(1, delivery.MAX_ATTEMPTS)
        ),
        timedelta(),
    )
    assert shortest_schedule > timedelta(days=1)


def test_an_endpoint_that_keeps_failing_for_a_day_is_paused_with_the_reason(
    local: Flask, receiver: Receiver, newsletter: Resource, clock: Clock
) -> None:
    endpoint_id, _ = add_endpoint(receiver.url)
    receiver.answer = lambda _number: 503
    factories.signup(ALICE, "newsletter")
    started = clock.now
    deliver_until_quiet(clock)
    assert clock.now - started > timedelta(days=1)
    first, second = deliveries()
    assert (first.state, first.attempts, first.last_status_code) == ("failed", 16, 503)
    # The second waited behind the first the whole time (in order), then for the resume.
    assert (second.state, second.attempts) == ("pending", 0)
    endpoint = endpoint_row(endpoint_id)
    assert not endpoint.enabled
    assert "failed 16 times (answered 503)" in (endpoint.paused_reason or "")
    # Nothing is queued for a paused endpoint, and nothing of its queue is sent.
    factories.confirm(ALICE, "newsletter")
    assert len(deliveries()) == 2
    tried = len(receiver.received)
    assert delivery.deliver_due(now=clock.now + timedelta(days=2)).handled == 0
    assert len(receiver.received) == tried

    receiver.answer = lambda _number: 200
    endpoints.resume_endpoint(endpoint_id)
    assert delivery.deliver_due().delivered == 2
    assert [d.state for d in deliveries()] == ["delivered", "delivered"]
    assert endpoint_row(endpoint_id).paused_reason is None


def test_410_gone_pauses_the_endpoint_at_once(
    local: Flask, receiver: Receiver, newsletter: Resource
) -> None:
    endpoint_id, _ = add_endpoint(receiver.url)
    receiver.answer = lambda _number: 410
    factories.signup(ALICE, "newsletter")
    delivery.deliver_due()
    assert len(receiver.received) == 1
    assert not endpoint_row(endpoint_id).enabled
    assert "410" in (endpoint_row(endpoint_id).paused_reason or "")


def test_an_import_fires_webhooks_in_bulk_like_any_other_change(
    local: Flask, receiver: Receiver, newsletter: Resource, tmp_path: Path
) -> None:
    add_endpoint(receiver.url, event_types=["subscription.subscribed"])
    rows = "".join(f"reader{n}@example.com,subscribed,2024-01-01\n" for n in range(30))
    csv = tmp_path / "list.csv"
    csv.write_text("email,status,consent date\n" + rows, encoding="utf-8")
    job = imports.import_file(str(csv), "newsletter", actor="cli")
    db.session.rollback()
    assert job.imported_rows == 30
    queued = deliveries()
    assert len(queued) == 30
    assert delivery.deliver_due().delivered == 30
    emails = [p["data"]["email"] for p in receiver.payloads()]
    assert emails == [f"reader{n}@example.com" for n in range(30)]
    assert {p["type"] for p in receiver.payloads()} == {"subscription.subscribed"}


# --- Safety -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "fe80::1%eth0",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
    ],
)
def test_private_loopback_link_local_and_reserved_addresses_are_forbidden(address: str) -> None:
    assert transport.forbidden(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert not transport.forbidden(address)


def test_without_the_setting_a_loopback_endpoint_is_never_called(
    app: Flask, receiver: Receiver, newsletter: Resource
) -> None:
    app.config["WEBHOOKS_ALLOW_HTTP"] = True  # http allowed, private addresses not
    add_endpoint(receiver.url)
    factories.signup(ALICE, "newsletter")
    report = delivery.deliver_due()
    assert report.delivered == 0
    assert receiver.received == []
    first = deliveries()[0]
    assert first.state == "pending" and "not a public address" in (first.last_error or "")


def test_an_http_endpoint_stored_before_is_not_called_once_http_is_off(
    local: Flask, receiver: Receiver, newsletter: Resource
) -> None:
    add_endpoint(receiver.url)
    local.config["WEBHOOKS_ALLOW_HTTP"] = False
    factories.signup(ALICE, "newsletter")
    delivery.deliver_due()
    assert receiver.received == []
    assert "https" in (deliveries()[0].last_error or "")


def test_the_connection_goes_to_the_address_checked_with_no_second_lookup(
    app: Flask, receiver: Receiver, newsletter: Resource, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: a name that answers a public address to the check and a private one to
    the connection. Here the name resolves once, to what the test says; the request reaches
    the receiver at that address and still names the host."""
    port = receiver.server.server_address[1]
    lookups: list[str] = []

    def getaddrinfo(host: str, *_args: Any, **_kwargs: Any) -> list[Any]:
        lookups.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(transport.socket, "getaddrinfo", getaddrinfo)
    app.config.update(WEBHOOKS_ALLOW_HTTP=True)
    add_endpoint(f"http://hooks.crm.example:{port}/in")
    factories.signup(ALICE, "newsletter")
    delivery.deliver_due()  # refused: the name resolves to loopback
    assert receiver.received == [] and lookups == ["hooks.crm.example"]

    app.config.update(WEBHOOKS_ALLOW_PRIVATE=True)
    lookups.clear()
    assert delivery.deliver_due(now=deliveries()[0].next_attempt_at).delivered == 2
    # The name was looked up once a delivery; the connections went to the address itself.
    assert lookups.count("hooks.crm.example") == 2
    assert set(lookups) <= {"hooks.crm.example", "127.0.0.1"}
    assert receiver.received[0][0]["host"] == f"hooks.crm.example:{port}"


def test_a_redirect_is_not_followed_and_counts_as_a_failure(
    local: Flask, receiver: Receiver, newsletter: Resource
) -> None:
    add_endpoint(receiver.url)
    receiver.answer = lambda _number: 302
    receiver.redirect_to = receiver.url + "/elsewhere"
    factories.signup(ALICE, "newsletter")
    delivery.deliver_due()
    assert len(receiver.received) == 1
    first = deliveries()[0]
    assert (first.state, first.last_status_code) == ("pending", 302)


def test_an_endpoint_slower_than_the_read_timeout_is_a_failure_not_a_hang(
    local: Flask, receiver: Receiver, newsletter: Resource
) -> None:
    local.config["WEBHOOKS_READ_TIMEOUT"] = 1
    add_endpoint(receiver.url)
    receiver.delay = 3
    factories.signup(ALICE, "newsletter")
    started = time.monotonic()
    report = delivery.deliver_due()
    # The second delivery to the same endpoint waits without a try of its own.
    assert (report.failed, report.waiting) == (1, 1)
    assert time.monotonic() - started < 2.5
    assert "timed out" in (deliveries()[0].last_error or "")
