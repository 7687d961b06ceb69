"""The JSON API (SPEC §3) through the test client; every answer is checked against the OpenAPI
document's schema for it."""

from __future__ import annotations

import csv
import io
import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jsonschema
import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner

from app import queries
from app.addresses import email_hash
from app.extensions import db
from app.models import Profile, Resource, Subscription, Suppression
from app.openapi import openapi_document
from app.services import api_keys
from app.services.statuses import Actor
from app.status import State, Status, can_send
from tests import factories
from tests.helpers import ALICE, database_state, run_worker, subscribed, text_of
from tests.smtp import SmtpServer


def conforms(body: Any, schema_name: str) -> None:
    """Validate ``body`` against a schema of the OpenAPI document, $refs and all."""
    document = openapi_document()
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": document["components"]}
    jsonschema.Draft202012Validator(schema).validate(body)


class Api:
    """A client of the API with a key, as the sending platform would use it."""

    def __init__(self, client: FlaskClient, key: str) -> None:
        self.client, self.key = client, key

    def __call__(self, method: str, path: str, **kwargs: Any):  # type: ignore[no-untyped-def]
        headers = {"Authorization": f"Bearer {self.key}", **kwargs.pop("headers", {})}
        return getattr(self.client, method)(f"/api/v1{path}", headers=headers, **kwargs)


@pytest.fixture
def api(client: FlaskClient, app: Flask) -> Api:
    _row, key = api_keys.create_key("sender")
    return Api(client, key)


# --- Authentication ----------------------------------------------------------------------------


def test_the_cli_creates_a_key_that_works_until_it_is_revoked(
    runner: FlaskCliRunner, client: FlaskClient, newsletter: Resource
) -> None:
    created = runner.invoke(args=["api-keys", "create", "sender-prod"])
    assert created.exit_code == 0
    key = created.output.strip()
    assert key.startswith("optin_") and len(key) > 40
    assert "sender-prod" in runner.invoke(args=["api-keys", "list"]).output
    assert key not in runner.invoke(args=["api-keys", "list"]).output  # shown once only
    authorized = {"Authorization": f"Bearer {key}"}
    assert client.get(f"/api/v1/eligibility?email={ALICE}", headers=authorized).status_code == 200
    assert runner.invoke(args=["api-keys", "revoke", "sender-prod"]).exit_code == 0
    refused = client.get(f"/api/v1/eligibility?email={ALICE}", headers=authorized)
    assert refused.status_code == 401
    assert runner.invoke(args=["api-keys", "create", "sender-prod"]).exit_code != 0
    assert runner.invoke(args=["api-keys", "revoke", "nobody"]).exit_code != 0


@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer wrong", "Basic b3B0aW46b3B0aW4=", "bearer optin_not-a-real-key"],
)
def test_a_missing_or_wrong_key_gets_401_with_the_json_error(
    client: FlaskClient, api: Api, header: str | None
) -> None:
    headers = {"Authorization": header} if header else {}
    before = database_state()
    for method, path in [("get", "/eligibility?email=a@b.co"), ("post", "/events")]:
        answer = getattr(client, method)(f"/api/v1{path}", headers=headers, json={"events": []})
        assert answer.status_code == 401
        conforms(answer.get_json(), "Error")
        assert answer.get_json()["error"]["code"] == "unauthorized"
    assert database_state() == before


def test_the_openapi_document_is_served_and_valid(client: FlaskClient) -> None:
    from jsonschema.validators import Draft202012Validator

    document = client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"] == "3.1.0"
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    assert set(document["paths"]) == {
        "/eligibility",
        "/resources/{slug}/audience",
        "/links",
        "/profiles/{email}",
        "/profiles/{email}/status",
        "/profiles/{email}/subscriptions/{slug}",
        "/events",
        "/changes",
    }


# --- Eligibility --------------------------------------------------------------------------------

STATES: list[State | None] = [
    None,
    *(State(s) for s in Status if s is not Status.SUSPENDED),
    State(Status.SUSPENDED, datetime.now(UTC) + timedelta(days=2), Status.SUBSCRIBED),
]


def test_the_api_decision_agrees_with_the_rules_for_every_combination(
    api: Api, newsletter: Resource
) -> None:
    now = datetime.now(UTC)
    cases = list(itertools.product(STATES[1:], STATES, [False, True]))
    for number, (global_state, subscription_state, suppressed) in enumerate(cases):
        email = f"p{number}@example.com"
        profile = Profile(email=email, email_hash=email_hash(email))
        profile.state = global_state
        db.session.add(profile)
        db.session.flush()
        if subscription_state is not None:
            row = Subscription(profile_id=profile.id, resource_id=newsletter.id, channel="email")
            row.state = subscription_state
            db.session.add(row)
        if suppressed:
            db.session.add(Suppression(email_hash=profile.email_hash, email=email, reason="bounce"))
    db.session.commit()

    emails = [f"p{n}@example.com" for n in range(len(cases))]
    batch = api("post", "/eligibility", json={"emails": emails, "resource": "newsletter"})
    assert batch.status_code == 200
    conforms(batch.get_json(), "EligibilityResults")
    results = batch.get_json()["results"]
    for (global_state, subscription_state, suppressed), email, result in zip(
        cases, emails, results, strict=True
    ):
        for resource_named in (True, False):
            expected = can_send(
                global_state,
                subscription_state,
                suppressed=suppressed,
                resource_named=resource_named,
                now=now,
            )
            single = api(
                "get", f"/eligibility?email={email}" + ("&resource=newsletter" * resource_named)
            )
            body = single.get_json()
            conforms(body, "Eligibility")
            assert (body["allowed"], body["reason"]) == (expected.allowed, expected.reason)
            if resource_named:
                assert (result["allowed"], result["reason"]) == (expected.allowed, expected.reason)


def test_a_batch_over_ten_thousand_addresses_gets_413(api: Api, newsletter: Resource) -> None:
    answer = api("post", "/eligibility", json={"emails": ["a@example.com"] * 10_001})
    assert answer.status_code == 413
    assert "10000" in answer.get_json()["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("get", "/eligibility", None, 400, "email"),
        ("get", "/eligibility?email=not-an-address", None, 400, "email"),
        ("get", "/eligibility?email=a@b.co&resource=nope", None, 404, "resource"),
        ("get", "/eligibility?email=a@b.co&resource=newsletter&channel=fax", None, 400, "channel"),
        ("get", "/eligibility?email=a@b.co&resource=newsletter&channel=sms", None, 400, "channel"),
        ("post", "/eligibility", {"emails": "a@b.co"}, 400, "emails"),
        ("post", "/eligibility", {"emails": [1, 2]}, 400, "emails"),
        ("post", "/eligibility", {"emails": [], "resource": 3}, 400, "resource"),
        ("put", "/profiles/alice@example.com/status", {"status": "paused"}, 400, "status"),
        ("put", "/profiles/alice@example.com/status", {"status": 9}, 400, "status"),
        ("put", "/profiles/alice@example.com/status", {"status": True}, 400, "status"),
        ("put", "/profiles/alice@example.com/status", {}, 400, "status"),
        ("put", "/profiles/alice@example.com/status", {"status": "suspended"}, 409, "status"),
        (
            "put",
            "/profiles/alice@example.com/status",
            {"status": "suspended", "suspended_until": "next tuesday"},
            400,
            "suspended_until",
        ),
        ("put", "/profiles/alice@example.com/subscriptions/nope", {"status": 1}, 404, "resource"),
        (
            "put",
            "/profiles/alice@example.com/subscriptions/newsletter",
            {"status": 1, "channel": "fax"},
            400,
            "channel",
        ),
        ("get", "/profiles/nobody@example.com", None, 404, "email"),
        ("get", "/links?email=nobody@example.com", None, 404, "email"),
        ("get", "/resources/nope/audience", None, 404, "resource"),
        ("post", "/events", {"events": [{"type": "bounce"}]}, 400, "events[0].type"),
        ("post", "/events", {"events": [{"type": "hard_bounce", "email": "x"}]}, 400, None),
        (
            "post",
            "/events",
            {
                "events": [
                    {"type": "complaint", "email": "a@b.co", "event_id": "1", "occurred_at": 5}
                ]
            },
            400,
            "events[0].occurred_at",
        ),
        ("post", "/events", {"events": {}}, 400, "events"),
        ("get", "/eligibility?email=a@b.co&resource=%00", None, 400, None),
        ("post", "/eligibility", {"emails": ["a@b.co"], "resource": "news\x00"}, 400, None),
        (
            "post",
            "/events",
            {"events": [{"type": "complaint", "email": "a@b.co", "event_id": "x\x00"}]},
            400,
            None,
        ),
        ("get", "/profiles/alice%00@example.com", None, 400, None),
    ],
)
def test_bad_input_gets_a_clear_json_error_and_changes_nothing(
    api: Api,
    newsletter: Resource,
    method: str,
    path: str,
    body: Any,
    status: int,
    field: str | None,
) -> None:
    subscribed(ALICE, "newsletter")
    before = database_state()
    answer = api(method, path, json=body) if body is not None else api(method, path)
    assert answer.status_code == status, answer.get_data(as_text=True)
    conforms(answer.get_json(), "Error")
    if field:
        assert answer.get_json()["error"].get("field") == field
    assert database_state() == before


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"a string"', b"", b"\xff\xfe"])
def test_malformed_json_is_refused(api: Api, newsletter: Resource, raw: bytes) -> None:
    answer = api("post", "/events", data=raw, content_type="application/json")
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "invalid_json"


def test_unknown_api_paths_and_methods_answer_json(api: Api) -> None:
    missing = api("get", "/nothing-here")
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "not_found"
    wrong = api("delete", "/eligibility")
    assert wrong.status_code == 405 and wrong.get_json()["error"]["code"] == "method_not_allowed"


# --- Links and audience --------------------------------------------------------------------------


def test_links_for_one_recipient_work_as_the_headers_say(
    api: Api, client: FlaskClient, newsletter: Resource
) -> None:
    subscribed(ALICE, "newsletter")
    answer = api("get", f"/links?email={ALICE}&resource=newsletter")
    links = answer.get_json()
    conforms(links, "Links")
    assert links["list_unsubscribe"].startswith(f"<{links['unsubscribe_url']}>, <mailto:")
    assert links["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"
    path = links["unsubscribe_url"].removeprefix("https://optin.test")
    assert client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert api("get", f"/eligibility?email={ALICE}&resource=newsletter").get_json()["reason"] == (
        "subscription_unsubscribed"
    )


def test_the_audience_streams_everyone_who_may_be_sent_to_with_their_links(
    api: Api, newsletter: Resource
) -> None:
    for number in range(5):
        subscribed(f"user{number}@example.com", "newsletter")
    factories.unsubscribe("user1@example.com", "newsletter")
    factories.hard_bounce("user2@example.com")
    factories.signup("waiting@example.com", "newsletter")

    ndjson = api("get", "/resources/newsletter/audience")
    assert ndjson.status_code == 200
    assert ndjson.mimetype == "application/x-ndjson"
    rows = [json.loads(line) for line in ndjson.get_data(as_text=True).splitlines()]
    for row in rows:
        conforms(row, "AudienceRow")
    assert [r["email"] for r in rows] == [
        "user0@example.com",
        "user3@example.com",
        "user4@example.com",
    ]

    as_csv = api("get", "/resources/newsletter/audience", headers={"Accept": "text/csv"})
    assert as_csv.mimetype == "text/csv"
    table = list(csv.DictReader(io.StringIO(as_csv.get_data(as_text=True))))
    assert [r["email"] for r in table] == [r["email"] for r in rows]
    assert table[0]["list_unsubscribe_post"] == "List-Unsubscribe=One-Click"


# --- Profiles and status changes ----------------------------------------------------------------


def test_a_profile_with_its_subscriptions_and_history(api: Api, newsletter: Resource) -> None:
    subscribed(ALICE, "newsletter")
    answer = api("get", "/profiles/Alice@Example.com")
    body = answer.get_json()
    conforms(body, "Profile")
    assert body["email"] == ALICE and body["global_status"] == "subscribed"
    assert [s["resource"] for s in body["subscriptions"]] == ["newsletter"]
    assert [(e["scope"], e["new_status"], e["cause"]) for e in body["events"]] == [
        ("global", "unconfirmed", "signup"),
        ("newsletter", "unconfirmed", "signup"),
        ("global", "subscribed", "confirm"),
        ("newsletter", "subscribed", "confirm"),
    ]


def test_changing_the_global_status_records_the_key_and_the_reason(
    api: Api, newsletter: Resource
) -> None:
    subscribed(ALICE, "newsletter")
    until = (datetime.now(UTC) + timedelta(days=10)).isoformat()
    answer = api(
        "put",
        f"/profiles/{ALICE}/status",
        json={"status": 5, "suspended_until": until, "reason": "holiday"},
    )
    body = answer.get_json()
    conforms(body, "Profile")
    assert body["global_status"] == "suspended"
    assert body["suspended_until"].startswith(until[:16])
    last = body["events"][-1]
    assert (last["cause"], last["actor"], last["reason"]) == ("api", "api:sender", "holiday")
    assert api("put", f"/profiles/{ALICE}/status", json={"status": "complained"}).status_code == 200
    # The API cannot lift what the customer stopped (rule 5): only a confirmation or an admin.
    lifted = api("put", f"/profiles/{ALICE}/status", json={"status": "subscribed"})
    assert lifted.status_code == 409


def test_an_altcraft_status_number_written_as_a_json_float_is_the_same_number(
    api: Api, newsletter: Resource
) -> None:
    """JSON has one number type, and the document's integer admits 1.0: a client (or its JSON
    library) sending 1.0 means 1. A fraction is no status."""
    subscribed(ALICE, "newsletter")
    answer = api("put", f"/profiles/{ALICE}/status", json={"status": 1.0})
    assert answer.status_code == 200
    assert answer.get_json()["global_status"] == "unsubscribed"
    refused = api("put", f"/profiles/{ALICE}/status", json={"status": 2.5})
    assert refused.status_code == 400
    assert refused.get_json()["error"]["field"] == "status"


def test_a_signup_through_the_api_sends_the_confirmation_email(
    api: Api, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    answer = api(
        "put", f"/profiles/{ALICE}/subscriptions/newsletter", json={"status": "subscribed"}
    )
    assert answer.status_code == 202
    body = answer.get_json()
    conforms(body, "Profile")
    assert body["confirmation_sent"] is True
    assert body["subscriptions"][0]["status"] == "unconfirmed"
    run_worker()
    (message,) = smtp_server.messages
    assert "/confirm/" in text_of(message)


def test_a_subscription_with_consent_proof_is_subscribed_at_once(
    api: Api, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    consent = {
        "confirmed_at": "2026-01-02T03:04:05Z",
        "ip": "198.51.100.7",
        "user_agent": "Shop checkout",
        "form": "shop/checkout",
    }
    answer = api(
        "put",
        f"/profiles/{ALICE}/subscriptions/newsletter",
        json={"status": "subscribed", "consent": consent},
    )
    assert answer.status_code == 200
    assert answer.get_json()["global_status"] == "subscribed"
    profile = queries.profile_by_email(ALICE)
    assert profile is not None
    (proof,) = queries.consent_records_of_profile(profile.id)
    assert (proof.ip, proof.form) == ("198.51.100.7", "shop/checkout")
    run_worker()
    assert [m["Subject"] for m in smtp_server.messages] == ["Welcome to The Newsletter"]
    unsubscribed = api(
        "put", f"/profiles/{ALICE}/subscriptions/newsletter", json={"status": "unsubscribed"}
    )
    assert unsubscribed.get_json()["subscriptions"][0]["status"] == "unsubscribed"


@pytest.mark.parametrize("stop", ["hard_bounce", "complaint", "unsubscribe"])
def test_a_subscription_with_consent_proof_lifts_a_stop_and_the_suppression(
    api: Api, newsletter: Resource, stop: str
) -> None:
    """SPEC §1 rule 5: consent the platform proves is a confirmed opt-in. Before, the API said
    `subscribed` while the send check said `suppressed`; now the two agree."""
    subscribed(ALICE, "newsletter")
    stopped = api("post", "/events", json={"events": [event(stop, ALICE, f"{stop}-1")]})
    assert stopped.status_code == 200
    before = api("get", f"/eligibility?email={ALICE}&resource=newsletter").get_json()
    assert not before["allowed"]
    consent = {"confirmed_at": "2026-01-02T03:04:05Z", "ip": "198.51.100.7", "form": "checkout"}
    answer = api(
        "put",
        f"/profiles/{ALICE}/subscriptions/newsletter",
        json={"status": "subscribed", "consent": consent, "reason": "new checkout consent"},
    )
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["global_status"] == "subscribed"
    assert answer.get_json()["subscriptions"][0]["status"] == "subscribed"
    after = api("get", f"/eligibility?email={ALICE}&resource=newsletter").get_json()
    assert (after["allowed"], after["reason"]) == (True, "subscribed")
    assert db.session.get(Suppression, email_hash(ALICE)) is None
    history = queries.suppression_events_of(email_hash(ALICE))
    if stop != "hard_bounce":  # a known address's complaint or unsubscribe: never suppressed
        assert history == []
    else:
        assert [(e.action, e.cause, e.actor) for e in history][-1] == (
            "lifted",
            "api",
            "api:sender",
        )
        assert history[-1].reason == "new checkout consent"
    profile = queries.profile_by_email(ALICE)
    assert profile is not None
    proofs = queries.consent_records_of_profile(profile.id)
    assert [(p.ip, p.form) for p in proofs][-1] == ("198.51.100.7", "checkout")
    audience = api("get", "/resources/newsletter/audience").get_data(as_text=True)
    assert ALICE in audience


@pytest.mark.parametrize("held", ["invalid", "suspended"])
def test_consent_proof_through_the_api_lifts_neither_invalid_nor_a_suspension(
    api: Api, newsletter: Resource, held: str
) -> None:
    subscribed(ALICE, "newsletter")
    until = datetime.now(UTC) + timedelta(days=3)
    factories.set_status(
        ALICE, held, resource="newsletter", suspended_until=until if held == "suspended" else None
    )
    before = database_state()
    answer = api(
        "put",
        f"/profiles/{ALICE}/subscriptions/newsletter",
        json={"status": "subscribed", "consent": {"confirmed_at": "2026-01-02T03:04:05Z"}},
    )
    assert answer.status_code == 409
    assert database_state() == before


# --- Events -----------------------------------------------------------------------------------


def event(kind: str, email: str, event_id: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "email": email, "event_id": event_id, **extra}


def test_events_apply_the_rules_once_per_event_id(
    api: Api, newsletter: Resource, brand: Resource
) -> None:
    subscribed(ALICE, "newsletter", "brand")
    subscribed("bob@example.com", "newsletter")
    subscribed("carol@example.com", "newsletter", "brand")
    batch = {
        "events": [
            event("hard_bounce", ALICE, "e1", occurred_at="2026-11-20T10:00:00Z"),
            event("complaint", "bob@example.com", "e2", resource="newsletter"),
            event("unsubscribe", "carol@example.com", "e3", resource="brand"),
            event("hard_bounce", "stranger@example.com", "e4"),
        ]
    }
    first = api("post", "/events", json=batch)
    assert first.get_json() == {"accepted": 4, "duplicates": 0}
    conforms(first.get_json(), "EventsReport")
    decision = lambda email, slug: api(  # noqa: E731
        "get", f"/eligibility?email={email}&resource={slug}"
    ).get_json()["reason"]
    assert decision(ALICE, "brand") == "suppressed"
    assert decision("bob@example.com", "newsletter") == "global_complainer"
    assert decision("carol@example.com", "brand") == "subscription_unsubscribed"
    assert decision("carol@example.com", "newsletter") == "subscribed"
    assert decision("stranger@example.com", "newsletter") == "suppressed"
    history = api("get", f"/profiles/{ALICE}").get_json()["events"]
    assert (history[-1]["cause"], history[-1]["actor"]) == ("bounce", "api:sender")

    before = database_state()
    again = api("post", "/events", json=batch)
    assert again.get_json() == {"accepted": 0, "duplicates": 4}
    assert database_state() == before


def test_soft_bounces_over_the_limit_suspend_the_profile(
    api: Api, app: Flask, newsletter: Resource
) -> None:
    subscribed(ALICE, "newsletter")
    limit = app.config["SOFT_BOUNCE_LIMIT"]
    for number in range(limit - 1):
        api("post", "/events", json={"events": [event("soft_bounce", ALICE, f"s{number}")]})
    assert api("get", f"/eligibility?email={ALICE}").get_json()["allowed"] is True
    api("post", "/events", json={"events": [event("soft_bounce", ALICE, "last")]})
    body = api("get", f"/profiles/{ALICE}").get_json()
    assert body["global_status"] == "suspended"
    until = datetime.fromisoformat(body["suspended_until"])
    expected = datetime.now(UTC) + timedelta(days=app.config["SOFT_BOUNCE_SUSPEND_DAYS"])
    assert abs(until - expected) < timedelta(minutes=1)


def test_a_bad_event_in_a_batch_rejects_the_whole_batch(api: Api, newsletter: Resource) -> None:
    subscribed(ALICE, "newsletter")
    before = database_state()
    answer = api(
        "post",
        "/events",
        json={"events": [event("hard_bounce", ALICE, "ok"), event("complaint", "bad", "x")]},
    )
    assert answer.status_code == 400
    assert answer.get_json()["error"]["field"] == "events[1].email"
    assert database_state() == before


def test_changes_through_the_api_show_the_key_as_actor(api: Api, newsletter: Resource) -> None:
    subscribed(ALICE, "newsletter")
    factories.unsubscribe(ALICE, "newsletter", actor=Actor(name="admin:bob"))
    api("post", "/events", json={"events": [event("complaint", ALICE, "c1")]})
    actors = [e["actor"] for e in api("get", f"/profiles/{ALICE}").get_json()["events"]]
    assert actors[-1] == "api:sender"


# --- Per-key rate limit and last use ------------------------------------------------------------


def test_a_key_over_its_rate_limit_gets_429_with_retry_after_and_other_keys_do_not(
    app: Flask, client: FlaskClient, newsletter: Resource
) -> None:
    app.config["API_RATE_LIMIT"] = "3 per minute"
    busy = {"Authorization": f"Bearer {api_keys.create_key('busy')[1]}"}
    calm = {"Authorization": f"Bearer {api_keys.create_key('calm')[1]}"}
    path = f"/api/v1/eligibility?email={ALICE}"
    codes = [client.get(path, headers=busy).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    # The budget is the key's, wherever its requests come from.
    limited = client.get(path, headers=busy, environ_base={"REMOTE_ADDR": "192.0.2.7"})
    assert limited.status_code == 429
    assert limited.headers["Retry-After"].isdigit()
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    error = limited.get_json()["error"]
    assert error["code"] == "rate_limited" and "3 per minute" in error["message"]
    conforms(limited.get_json(), "Error")
    # Another key from the same address still has its own.
    assert client.get(path, headers=calm).status_code == 200
    before = database_state()
    refused = client.put(f"/api/v1/profiles/{ALICE}/status", json={"status": 1}, headers=busy)
    assert refused.status_code == 429
    assert database_state() == before


def test_a_key_remembers_when_it_was_last_used_to_the_minute(
    app: Flask, client: FlaskClient, newsletter: Resource
) -> None:
    from sqlalchemy import event

    row, key = api_keys.create_key("sender")
    headers = {"Authorization": f"Bearer {key}"}
    path = f"/api/v1/eligibility?email={ALICE}"
    assert row.last_used_at is None
    assert client.get(path, headers=headers).status_code == 200
    first = db.session.get(type(row), row.id).last_used_at
    assert first is not None and datetime.now(UTC) - first < timedelta(seconds=10)

    writes: list[str] = []

    def count_writes(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE")):
            writes.append(statement)

    event.listen(db.engine, "before_cursor_execute", count_writes)
    try:
        for _ in range(5):
            assert client.get(path, headers=headers).status_code == 200
    finally:
        event.remove(db.engine, "before_cursor_execute", count_writes)
    assert writes == []  # within the minute: no write on the hot path
    db.session.rollback()
    assert db.session.get(type(row), row.id).last_used_at == first

    an_hour_ago = first - timedelta(hours=1)
    db.session.get(type(row), row.id).last_used_at = an_hour_ago
    db.session.commit()
    assert client.get(path, headers=headers).status_code == 200
    db.session.rollback()
    assert db.session.get(type(row), row.id).last_used_at > first
