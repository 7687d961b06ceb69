"""Hostile JSON at every API and webhook route: no 5xx, and a refused request changes nothing.

Each route gets bodies no client should send (nesting deeper than the parser's recursion, wrong
types in every known field, numbers too big for any column or date, strings up to the body
limit, invalid UTF-8, byte-order marks, NaN and Infinity, duplicate keys, lone surrogates), once
as a stranger and once with what it takes to reach its parser: a valid API key, a valid SNS
signature around the hostile SES notification, a valid SendGrid signature over the hostile body,
Postmark's credentials. Whatever comes back must be below 500 and, unless the request was
accepted (2xx: hostile is not always invalid), leave the database as it was.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.models import Resource
from app.services import api_keys
from tests import factories
from tests.helpers import database_state

# ``sns`` is the fixture that signs SNS messages and serves their certificate; the arguments that
# use it are marked F811, which is how ruff sees a fixture imported from another module.
from tests.test_webhooks import TOPIC, now_iso, post_sns, sns  # noqa: F401

ALICE = "alice@example.com"
MAX_BODY = 1024 * 1024  # MAX_CONTENT_LENGTH

# Field names the routes read, so that wrong types land where the code looks.
FIELDS = [
    # API
    "emails", "resource", "channel", "status", "suspended_until", "reason", "consent",
    "confirmed_at", "ip", "user_agent", "form", "name", "events", "type", "email", "event_id",
    "occurred_at",
    # SES
    "notificationType", "eventType", "bounce", "bounceType", "bouncedRecipients", "emailAddress",
    "complaint", "complainedRecipients", "feedbackId", "timestamp", "mail", "tags",
    "optin-resource",
    # SendGrid and Postmark
    "event", "sg_event_id", "optin_resource", "RecordType", "Type", "ID", "Email", "BouncedAt",
    "Metadata", "SuppressSending", "Recipient", "ChangedAt", "MessageID",
]  # fmt: skip
# Words the routes know, so that some bodies get past the first checks.
WORDS = [
    ALICE, "newsletter", "email", "sms", "subscribed", "unsubscribed", "suspended",
    "hard_bounce", "soft_bounce", "complaint", "unsubscribe", "Bounce", "Complaint",
    "Permanent", "HardBounce", "SpamComplaint", "SubscriptionChange", "bounce", "spamreport",
    "blocked", "2026-11-26T08:00:00Z",
]  # fmt: skip

texts = st.one_of(
    st.sampled_from(WORDS),
    st.text(max_size=40),  # lone surrogates and NUL included
    st.text(alphabet="\ud800\udfff\x00\ufeff\u202e", min_size=1, max_size=5),
    st.integers(1_000, 200_000).map(lambda n: "x" * n),
)
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=10**30, max_value=10**300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e308, -1e308, 2**63, 2**64]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=8)), inner, max_size=6),
    ),
    max_leaves=20,
)


def _dumped(value: Any, ascii_only: bool) -> bytes:
    # ensure_ascii writes lone surrogates as \ud800 escapes; without it they become bytes that
    # are not UTF-8 at all.
    return json.dumps(value, ensure_ascii=ascii_only, allow_nan=True).encode(
        "utf-8", "surrogatepass"
    )


def _deep(depth: int, opener: str) -> bytes:
    closer = {"[": "]", '{"a":': "}"}[opener]
    return (opener * depth + "1" + closer * depth).encode()


raw_bodies = st.one_of(
    st.builds(_dumped, values, st.booleans()),
    st.builds(
        _deep,
        st.sampled_from([1_000, 10_000, 100_000, MAX_BODY // 6]),
        st.sampled_from(["[", '{"a":']),
    ),
    st.builds(lambda body: b"\xef\xbb\xbf" + _dumped(body, True), values),  # a byte-order mark
    st.builds(lambda body: _dumped(body, True) + b"\xff\xfe\x80", values),  # not UTF-8
    st.sampled_from(
        [
            b'{"status": "subscribed", "status": [1]}',  # duplicate keys: the last one wins
            b'{"emails": ["a@example.com"], "emails": {"x": 1}}',
            b'{"events": NaN}',
            b'{"events": [{"type": "hard_bounce", "email": Infinity, "event_id": -Infinity}]}',
            b'{"emails": 1e999999}',
            b'{"status": ' + b"9" * 5000 + b"}",  # more digits than int() reads
            b'"\\ud800"',
            b'[{"event": "bounce", "email": "\\udfff@example.com", "sg_event_id": "\\ud800"}]',
            b"\x00",
            b"",
            b"\xfe\xff\x00{",
        ]
    ),
)


# --- The routes ---------------------------------------------------------------------------------


def _api(method: str, path: str) -> Callable[..., Any]:
    def call(client: FlaskClient, body: bytes, context: dict[str, Any], authentic: bool) -> Any:
        headers = {"Authorization": f"Bearer {context['key']}"} if authentic else {}
        return client.open(
            path, method=method, data=body, content_type="application/json", headers=headers
        )

    return call


def _ses(
    client: FlaskClient,
    body: bytes,
    context: dict[str, Any],
    authentic: bool,
    path: str = "/webhooks/ses",
) -> Any:
    if not authentic:
        return client.post(path, data=body, content_type="text/plain; charset=UTF-8")
    envelope = {
        "Type": "Notification",
        "MessageId": "hostile",
        "TopicArn": TOPIC,
        "Message": body.decode("utf-8", "surrogateescape"),
        "Timestamp": now_iso(),
    }
    return client.post(
        path,
        data=json.dumps(context["sns"].sign(envelope)),
        content_type="text/plain; charset=UTF-8",
        headers={"x-amz-sns-message-type": "Notification"},
    )


def _sendgrid(
    client: FlaskClient,
    body: bytes,
    context: dict[str, Any],
    authentic: bool,
    path: str = "/webhooks/sendgrid",
    content_type: str = "application/json",
) -> Any:
    stamp = str(int(time.time()))
    key = context["sendgrid_key"] if authentic else ec.generate_private_key(ec.SECP256R1())
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return client.post(
        path,
        data=body,
        content_type=content_type,
        headers={
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        },
    )


def _postmark(
    client: FlaskClient,
    body: bytes,
    context: dict[str, Any],
    authentic: bool,
    path: str = "/webhooks/postmark",
) -> Any:
    credentials = b"postmark:s3cret" if authentic else "pöstmark:s3cret".encode()
    headers = {"Authorization": "Basic " + base64.b64encode(credentials).decode()}
    return client.post(path, data=body, content_type="application/json", headers=headers)


ROUTES: dict[str, Callable[..., Any]] = {
    "GET /api/v1/eligibility": _api("GET", f"/api/v1/eligibility?email={ALICE}"),
    "POST /api/v1/eligibility": _api("POST", "/api/v1/eligibility"),
    "GET /api/v1/links": _api("GET", f"/api/v1/links?email={ALICE}&resource=newsletter"),
    "GET /api/v1/resources/<slug>/audience": _api("GET", "/api/v1/resources/newsletter/audience"),
    "GET /api/v1/profiles/<email>": _api("GET", f"/api/v1/profiles/{ALICE}"),
    "PUT /api/v1/profiles/<email>/status": _api("PUT", f"/api/v1/profiles/{ALICE}/status"),
    "PUT /api/v1/profiles/<email>/subscriptions/<slug>": _api(
        "PUT", f"/api/v1/profiles/{ALICE}/subscriptions/newsletter"
    ),
    "POST /api/v1/events": _api("POST", "/api/v1/events"),
    "GET /api/v1/changes": _api("GET", "/api/v1/changes"),
    "GET /api/v1/openapi.json": _api("GET", "/api/v1/openapi.json"),
    "POST /webhooks/ses": _ses,
    "POST /webhooks/sendgrid": _sendgrid,
    "POST /webhooks/postmark": _postmark,
    # The inbound mail hooks (issue 12): the same checks, SendGrid's as multipart/form-data.
    "POST /webhooks/ses/inbound": partial(_ses, path="/webhooks/ses/inbound"),
    "POST /webhooks/sendgrid/inbound": partial(
        _sendgrid,
        path="/webhooks/sendgrid/inbound",
        content_type="multipart/form-data; boundary=hostile",
    ),
    "POST /webhooks/postmark/inbound": partial(_postmark, path="/webhooks/postmark/inbound"),
}


def test_every_api_and_webhook_route_is_in_the_list(app: Flask) -> None:
    """So that a new route cannot escape the hostile bodies below."""
    routes = {
        f"{method} {rule.rule}".replace("<path:email>", "<email>").replace("<provider>", provider)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(("/api/", "/webhooks/"))
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"})
        for provider in (["ses", "sendgrid", "postmark"] if "<provider>" in rule.rule else [""])
    }
    assert routes == set(ROUTES)


@pytest.mark.slow  # 150 examples on each of a dozen routes: about 20 s of the fast loop
@pytest.mark.parametrize("route", list(ROUTES))
def test_hostile_json_gets_a_4xx_and_changes_nothing(
    app: Flask,
    client: FlaskClient,
    sns: Any,  # noqa: F811
    newsletter: Resource,
    route: str,
) -> None:
    factories.signup(ALICE, "newsletter")
    factories.confirm(ALICE, "newsletter")
    sendgrid_key = ec.generate_private_key(ec.SECP256R1())
    public = sendgrid_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    app.config.update(
        SENDGRID_WEBHOOK_PUBLIC_KEY=base64.b64encode(public).decode(),
        SENDGRID_INBOUND_PUBLIC_KEY=base64.b64encode(public).decode(),
        POSTMARK_WEBHOOK_USERNAME="postmark",
        POSTMARK_WEBHOOK_PASSWORD="s3cret",
        API_RATE_LIMIT="1000000 per minute",  # thousands of requests with one key, on purpose
    )
    context = {"key": api_keys.create_key("hostile")[1], "sns": sns, "sendgrid_key": sendgrid_key}
    call = ROUTES[route]

    @settings(
        max_examples=150,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(body=raw_bodies, authentic=st.booleans())
    def check(body: bytes, authentic: bool) -> None:
        before = database_state()
        answer = call(client, body, context, authentic)
        assert answer.status_code < 500, (route, body[:200], answer.get_data(as_text=True)[:300])
        if answer.status_code >= 400:
            error = answer.get_json()["error"]
            assert isinstance(error["code"], str) and isinstance(error["message"], str)
            assert database_state() == before, (route, body[:200])

    check()


# --- The cases the issue names, one by one -------------------------------------------------------


def test_json_nested_deeper_than_the_parser_goes_is_a_400_on_the_api(
    client: FlaskClient, newsletter: Resource
) -> None:
    key = api_keys.create_key("deep")[1]
    before = database_state()
    for path, method in [
        ("/api/v1/eligibility", "POST"),
        (f"/api/v1/profiles/{ALICE}/status", "PUT"),
        (f"/api/v1/profiles/{ALICE}/subscriptions/newsletter", "PUT"),
        ("/api/v1/events", "POST"),
    ]:
        answer = client.open(
            path,
            method=method,
            data=_deep(100_000, '{"a":'),
            content_type="application/json",
            headers={"Authorization": f"Bearer {key}"},
        )
        assert answer.status_code == 400, path
        assert answer.get_json()["error"]["code"] == "invalid_json"
    assert database_state() == before


def test_json_nested_deeper_than_the_parser_goes_is_a_4xx_on_the_ses_webhook(
    client: FlaskClient,
    sns: Any,  # noqa: F811
) -> None:
    assert post_sns(client, {"Type": "Notification"}).status_code == 403  # the envelope
    envelope = {
        "Type": "Notification",
        "MessageId": "deep",
        "TopicArn": TOPIC,
        "Message": _deep(100_000, "[").decode(),
        "Timestamp": now_iso(),
    }
    raw = client.post("/webhooks/ses", data=_deep(100_000, "["), content_type="text/plain")
    assert raw.status_code == 403
    answer = post_sns(client, sns.sign(envelope))  # genuinely signed, the notification too deep
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "bad_payload"


def test_a_postmark_user_name_with_non_ascii_characters_is_refused_not_a_crash(
    app: Flask, client: FlaskClient
) -> None:
    app.config.update(POSTMARK_WEBHOOK_USERNAME="postmark", POSTMARK_WEBHOOK_PASSWORD="s3cret")
    for credentials in ("pöstmark:s3cret", "postmark:sécret", "☃:☃"):
        basic = base64.b64encode(credentials.encode()).decode()
        answer = client.post(
            "/webhooks/postmark", json={}, headers={"Authorization": f"Basic {basic}"}
        )
        assert answer.status_code == 403
        assert answer.get_json()["error"]["code"] == "forbidden"


def test_a_lone_surrogate_in_api_text_is_a_400(client: FlaskClient, newsletter: Resource) -> None:
    factories.signup(ALICE, "newsletter")
    factories.confirm(ALICE, "newsletter")
    key = api_keys.create_key("surrogate")[1]
    before = database_state()
    answer = client.put(
        f"/api/v1/profiles/{ALICE}/status",
        data=b'{"status": "unsubscribed", "reason": "\\ud800"}',
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert answer.status_code == 400
    assert answer.get_json()["error"] == {
        "code": "invalid_text",
        "message": "the body holds text that is not valid Unicode",
    }
    assert database_state() == before
    pair = client.put(  # an escaped pair is one character, and fine
        f"/api/v1/profiles/{ALICE}/status",
        data=b'{"status": "unsubscribed", "reason": "\\ud83d\\ude00"}',
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert pair.status_code == 200
