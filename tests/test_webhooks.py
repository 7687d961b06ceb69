"""Provider webhooks with the providers' documented payloads, signed with keys and certificates
the tests make themselves. SNS certificates are served from a real HTTP server on 127.0.0.1, which
the tests let the app treat as an SNS host (SNS_HOST_PATTERN, SNS_REQUIRE_HTTPS)."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from flask import Flask
from flask.testing import FlaskClient

from app import queries
from app.models import Resource
from app.services.eligibility import decide
from app.services.providers import ses
from tests import factories
from tests.helpers import database_state, link_to, run_worker, submit
from tests.smtp import SmtpServer

ALICE = "alice@example.com"


# --- Amazon SNS / SES ---------------------------------------------------------------------------


class CertificateServer:
    """Serves a signing certificate and records SubscribeURL visits, on 127.0.0.1. ``answers``
    makes a path answer otherwise: ``(status, headers, body)``, or ``"slow"`` to answer late."""

    def __init__(self, pem: bytes) -> None:
        self.pem = pem
        self.hits: list[str] = []
        self.answers: dict[str, Any] = {}
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits.append(self.path)
                special = owner.answers.get(self.path)
                if special == "slow":
                    time.sleep(1)
                    special = None
                status, headers, body = special or (
                    200,
                    {},
                    owner.pem if self.path.endswith(".pem") else b"<ConfirmSubscriptionResponse/>",
                )
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


def self_signed(key: rsa.RSAPrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.us-east-1.amazonaws.com")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-bounces"


@pytest.fixture
def sns(app: Flask) -> Iterator[Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server = CertificateServer(self_signed(key))
    # The test server stands in for SNS: plain HTTP, and a port in its network location.
    app.config.update(
        SNS_TOPIC_ARNS=[TOPIC], SNS_HOST_PATTERN=r"127\.0\.0\.1(:[0-9]+)?", SNS_REQUIRE_HTTPS=False
    )
    ses.forget_certificates()

    class Signer:
        url = server.url
        cert_url = f"{server.url}/SimpleNotificationService-0123456789abcdef.pem"
        hits = server.hits
        answers = server.answers

        @staticmethod
        def sign(
            message: dict[str, Any], version: str = "1", cert_url: str | None = None
        ) -> dict[str, Any]:
            message = {
                **message,
                "SignatureVersion": version,
                "SigningCertURL": cert_url or Signer.cert_url,
            }
            digest = hashes.SHA1() if version == "1" else hashes.SHA256()
            signature = key.sign(ses.string_to_sign(message), padding.PKCS1v15(), digest)
            return {**message, "Signature": base64.b64encode(signature).decode()}

    yield Signer
    server.stop()
    ses.forget_certificates()


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def ses_bounce(email: str, feedback: str = "0100017a-feedback-1") -> dict[str, Any]:
    """An SES bounce notification as in Amazon's documentation."""
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": email,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
            "timestamp": "2026-11-26T08:00:00.237Z",
            "feedbackId": feedback,
            "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com",
        },
        "mail": {
            "timestamp": "2026-11-26T07:59:58.000Z",
            "source": "news@example.org",
            "messageId": "0100017a-message",
            "destination": [email],
        },
    }


def notification(body: dict[str, Any], message_id: str = "msg-1") -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": TOPIC,
        "Message": json.dumps(body),
        "Timestamp": now_iso(),
    }


def post_sns(client: FlaskClient, message: dict[str, Any]):  # type: ignore[no-untyped-def]
    return client.post(
        "/webhooks/ses",
        data=json.dumps(message),
        content_type="text/plain; charset=UTF-8",  # what SNS sends
        headers={"x-amz-sns-message-type": message["Type"]},
    )


def test_the_sns_subscription_handshake_visits_the_subscribe_url(
    client: FlaskClient, sns: Any
) -> None:
    confirmation = sns.sign(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
            "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a",
            "TopicArn": TOPIC,
            "Message": "You have chosen to subscribe to the topic.",
            "SubscribeURL": f"{sns.cert_url.rsplit('/', 1)[0]}/?Action=ConfirmSubscription",
            "Timestamp": now_iso(),
        }
    )
    answer = post_sns(client, confirmation)
    assert answer.status_code == 200
    assert any("ConfirmSubscription" in hit for hit in sns.hits)


def test_signup_then_a_signed_ses_bounce_removes_the_address_from_every_audience(
    client: FlaskClient, smtp_server: SmtpServer, sns: Any, newsletter: Resource, offers: Resource
) -> None:
    submit(client, "/subscribe/newsletter", {"email": ALICE})
    run_worker()
    submit(client, link_to(smtp_server.messages[-1], "/confirm/"), {})
    factories.signup(ALICE, "offers")
    audience = lambda slug: [  # noqa: E731
        row.email
        for row in queries.stream_audience(
            queries.resource_by_slug(slug).id, "email", datetime.now(UTC)
        )
    ]
    assert audience("newsletter") == [ALICE] and audience("offers") == [ALICE]

    for version in ("1", "2"):
        message = sns.sign(notification(ses_bounce(ALICE), f"msg-v{version}"), version)
        answer = post_sns(client, message)
        assert answer.status_code == 200, answer.get_data(as_text=True)
    assert audience("newsletter") == [] and audience("offers") == []
    assert decide(ALICE, "offers").reason == "suppressed"
    history = queries.events_of_profile(queries.profile_by_email(ALICE).id)
    assert (history[-1].new_status, history[-1].cause, history[-1].actor) == (
        "hardbounced",
        "bounce",
        "webhook:ses",
    )
    # Both deliveries carried the same SES feedback id: the second was a duplicate.
    certificate_fetches = [hit for hit in sns.hits if hit.endswith(".pem")]
    assert len(certificate_fetches) == 1  # cached


def test_the_same_sns_message_delivered_twice_changes_nothing_the_second_time(
    client: FlaskClient, sns: Any, newsletter: Resource
) -> None:
    factories.signup(ALICE, "newsletter")
    factories.confirm(ALICE, "newsletter")
    message = sns.sign(notification(ses_bounce(ALICE)))
    assert post_sns(client, message).get_json() == {"accepted": 1, "duplicates": 0}
    before = database_state()
    assert post_sns(client, message).get_json() == {"accepted": 0, "duplicates": 1}
    assert database_state() == before


def test_a_forged_sns_message_is_refused_and_changes_nothing(
    client: FlaskClient, sns: Any, newsletter: Resource
) -> None:
    factories.signup(ALICE, "newsletter")
    factories.confirm(ALICE, "newsletter")
    genuine = sns.sign(notification(ses_bounce("someone-else@example.com")))
    before = database_state()
    forged = {**genuine, "Message": json.dumps(ses_bounce(ALICE))}  # the signature is for another
    assert post_sns(client, forged).status_code == 403
    unsigned = {k: v for k, v in genuine.items() if k != "Signature"}
    assert post_sns(client, unsigned).status_code == 403
    old = sns.sign({**notification(ses_bounce(ALICE)), "Timestamp": "2026-01-01T00:00:00Z"})
    assert post_sns(client, old).status_code == 403  # a replay of an old message
    elsewhere = {**genuine, "SigningCertURL": "http://localhost:1/evil.pem"}
    assert post_sns(client, elsewhere).status_code == 403
    assert not any("evil" in hit for hit in sns.hits)  # never fetched from a non-SNS host
    assert client.post("/webhooks/ses", data="not json").status_code == 403
    assert database_state() == before


def test_sns_certificates_are_only_fetched_from_sns_hosts_by_default(app: Flask) -> None:
    from app.services.providers import NotAuthentic

    for url in (
        "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem",
        "http://sns.us-east-1.amazonaws.com/cert.pem",
        "https://example.com/sns.us-east-1.amazonaws.com/cert.pem",
    ):
        with pytest.raises(NotAuthentic):
            ses._checked_url(url, app.config)
    ok = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem"
    assert ses._checked_url(ok, app.config) == ok


def test_an_sns_certificate_url_has_exactly_the_shape_amazon_uses(app: Flask) -> None:
    from app.services.providers import NotAuthentic

    pem = "/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"
    for url in (
        # S3 buckets called "sns" answer on these virtual hosts, and anyone can own one.
        f"https://sns.s3.amazonaws.com{pem}",
        f"https://sns.s3-us-west-2.amazonaws.com{pem}",
        f"https://sns.s3-external-1.amazonaws.com{pem}",
        f"https://sns.us-east-1.amazonaws.com:8443{pem}",
        f"https://attacker@sns.us-east-1.amazonaws.com{pem}",
        "https://sns.us-east-1.amazonaws.com/mine/SimpleNotificationService-abc.pem",
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-xyz.pem",
        "https://sns.us-east-1.amazonaws.com/cert.pem",
        f"https://sns.us-east-1.amazonaws.com{pem}?redirect=elsewhere",
        f"https://sns.us-east-1.amazonaws.com.cn{pem}",
        f"ftp://sns.us-east-1.amazonaws.com{pem}",
        f"file://sns.us-east-1.amazonaws.com{pem}",
    ):
        with pytest.raises(NotAuthentic):
            ses._checked_url(url, app.config, certificate=True)
    regions = ["eu-west-1.amazonaws.com", "us-gov-west-1.amazonaws.com",
               "ap-southeast-2.amazonaws.com", "cn-north-1.amazonaws.com.cn"]  # fmt: skip
    for host in (f"sns.{region}" for region in regions):
        url = f"https://{host}{pem}"
        assert ses._checked_url(url, app.config, certificate=True) == url


def test_the_ses_webhook_is_off_until_its_topics_are_set(
    client: FlaskClient, sns: Any, newsletter: Resource
) -> None:
    factories.signup(ALICE, "newsletter")
    factories.confirm(ALICE, "newsletter")
    before = database_state()
    client.application.config["SNS_TOPIC_ARNS"] = []
    answer = post_sns(client, sns.sign(notification(ses_bounce(ALICE))))
    assert answer.status_code == 404
    assert answer.get_json()["error"]["code"] == "not_found"
    assert sns.hits == []
    assert database_state() == before


def test_a_genuinely_signed_message_of_a_foreign_topic_is_refused_before_any_fetch(
    client: FlaskClient, sns: Any, newsletter: Resource
) -> None:
    factories.signup(ALICE, "newsletter")
    factories.confirm(ALICE, "newsletter")
    before = database_state()
    foreign = "arn:aws:sns:us-east-1:666666666666:my-own-topic"
    bounce = sns.sign({**notification(ses_bounce(ALICE)), "TopicArn": foreign})
    subscribe = sns.sign(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": "m-2",
            "Token": "t",
            "TopicArn": foreign,
            "Message": "You have chosen to subscribe to the topic.",
            "SubscribeURL": f"{sns.url}/?Action=ConfirmSubscription",
            "Timestamp": now_iso(),
        }
    )
    without_topic = sns.sign({k: v for k, v in notification(ses_bounce(ALICE)).items()
                              if k != "TopicArn"})  # fmt: skip
    for message in (bounce, subscribe, without_topic):
        answer = post_sns(client, message)
        assert answer.status_code == 403
        assert answer.get_json()["error"]["code"] == "forbidden"
    assert sns.hits == []  # neither the certificate nor the SubscribeURL was fetched
    assert database_state() == before


def test_non_text_signature_fields_are_refused_without_a_fetch(
    client: FlaskClient, sns: Any, newsletter: Resource
) -> None:
    genuine = sns.sign(notification(ses_bounce(ALICE)))
    before = database_state()
    for name in ("Signature", "SigningCertURL", "SignatureVersion", "Timestamp", "Message"):
        # (Without a Message the rest is well formed, so that one is fetched and fails to match.)
        for value in (1, 2.5, True, [genuine[name]], {"url": genuine[name]}):
            answer = post_sns(client, {**genuine, name: value})
            assert answer.status_code == 403, (name, value)
            assert answer.get_json()["error"]["code"] == "forbidden"
    assert sns.hits == []
    assert database_state() == before


def test_a_redirect_from_the_certificate_url_is_not_followed(
    client: FlaskClient, sns: Any, newsletter: Resource
) -> None:
    moved = f"{sns.url}/SimpleNotificationService-0bad.pem"
    sns.answers["/SimpleNotificationService-0bad.pem"] = (
        302,
        {"Location": sns.cert_url},
        b"",
    )
    answer = post_sns(client, sns.sign(notification(ses_bounce(ALICE)), cert_url=moved))
    assert answer.status_code == 503
    assert sns.hits == ["/SimpleNotificationService-0bad.pem"]  # the target was never asked


def test_the_certificate_cache_keeps_only_a_few_certificates(client: FlaskClient, sns: Any) -> None:
    delivery = notification({"notificationType": "Delivery"})
    urls = [
        f"{sns.url}/SimpleNotificationService-{n:04x}.pem"
        for n in range(ses.CERTIFICATE_CACHE_SIZE + 1)
    ]
    for url in urls:
        assert post_sns(client, sns.sign(delivery, cert_url=url)).status_code == 200
    assert post_sns(client, sns.sign(delivery, cert_url=urls[-1])).status_code == 200
    assert len(sns.hits) == len(urls)  # the newest was cached ...
    assert post_sns(client, sns.sign(delivery, cert_url=urls[0])).status_code == 200
    assert len(sns.hits) == len(urls) + 1  # ... and the oldest forgotten, so fetched again


@pytest.mark.parametrize(
    "failure",
    ["refused", "not found", "server error", "not a certificate", "timeout"],
)
def test_a_certificate_that_cannot_be_fetched_is_answered_503_so_sns_retries(
    client: FlaskClient,
    sns: Any,
    newsletter: Resource,
    failure: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The migrations' env.py runs logging.config.fileConfig, which disables every logger that
    # exists by then, the app's included, for the rest of the test run.
    monkeypatch.setattr(client.application.logger, "disabled", False)
    logged: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())  # type: ignore[method-assign]
    client.application.logger.addHandler(handler)
    factories.signup(ALICE, "newsletter")
    factories.confirm(ALICE, "newsletter")
    before = database_state()
    path = "/SimpleNotificationService-fa11.pem"
    url = f"{sns.url}{path}"
    if failure == "refused":
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}{path}"
        closed.close()
    elif failure == "timeout":
        monkeypatch.setattr(ses, "FETCH_TIMEOUT", 0.2)
        sns.answers[path] = "slow"
    else:
        sns.answers[path] = {
            "not found": (404, {}, b"NoSuchKey"),
            "server error": (500, {}, b"oops"),
            "not a certificate": (200, {}, b"<html>hello</html>"),
        }[failure]
    message = sns.sign(notification(ses_bounce(ALICE)), cert_url=url)
    answer = post_sns(client, message)
    assert answer.status_code == 503
    assert answer.headers["Retry-After"].isdigit()
    assert answer.get_json()["error"]["code"] == "unavailable"
    client.application.logger.removeHandler(handler)
    assert any("asking for a retry" in line for line in logged)
    assert database_state() == before
    # A failure is not remembered: when the certificate is there again, the retry goes through.
    sns.answers.pop(path, None)
    retried = post_sns(client, sns.sign(notification(ses_bounce(ALICE)), cert_url=sns.cert_url))
    assert retried.status_code == 200
    assert decide(ALICE, "newsletter").reason == "suppressed"


def test_a_subscribe_url_that_cannot_be_visited_is_answered_503(
    client: FlaskClient, sns: Any
) -> None:
    sns.answers["/?Action=ConfirmSubscription"] = (503, {}, b"busy")
    confirmation = sns.sign(
        {
            "Type": "SubscriptionConfirmation",
            "MessageId": "m-3",
            "Token": "t",
            "TopicArn": TOPIC,
            "Message": "You have chosen to subscribe to the topic.",
            "SubscribeURL": f"{sns.url}/?Action=ConfirmSubscription",
            "Timestamp": now_iso(),
        }
    )
    answer = post_sns(client, confirmation)
    assert answer.status_code == 503
    assert answer.get_json()["error"]["code"] == "unavailable"


# --- SendGrid -----------------------------------------------------------------------------------


@pytest.fixture
def sendgrid(app: Flask) -> Any:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    app.config["SENDGRID_WEBHOOK_PUBLIC_KEY"] = base64.b64encode(public).decode()

    def post(client: FlaskClient, events: list[dict[str, Any]], stamp: int | None = None):  # type: ignore[no-untyped-def]
        body = json.dumps(events).encode()
        timestamp = str(stamp if stamp is not None else int(time.time()))
        signature = key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return client.post(
            "/webhooks/sendgrid",
            data=body,
            content_type="application/json",
            headers={
                "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": timestamp,
            },
        )

    return post


def sendgrid_events(email: str) -> list[dict[str, Any]]:
    """Events as in SendGrid's Event Webhook reference."""
    return [
        {
            "email": email,
            "timestamp": 1764144000,
            "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
            "event": "processed",
            "sg_event_id": "sg-processed-1",
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        },
        {
            "email": email,
            "timestamp": 1764144060,
            "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
            "event": "spamreport",
            "sg_event_id": "sg-spam-1",
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
            "optin_resource": "newsletter",
        },
    ]


def test_a_signed_sendgrid_complaint_makes_a_complainer(
    client: FlaskClient, sendgrid: Any, newsletter: Resource
) -> None:
    factories.signup(ALICE, "newsletter")
    factories.confirm(ALICE, "newsletter")
    answer = sendgrid(client, sendgrid_events(ALICE))
    assert answer.get_json() == {"accepted": 1, "duplicates": 0}
    assert decide(ALICE, "newsletter").reason == "global_complainer"
    again = sendgrid(client, sendgrid_events(ALICE))
    assert again.get_json() == {"accepted": 0, "duplicates": 1}


def test_a_sendgrid_bounce_is_hard_and_a_block_is_soft(
    client: FlaskClient, sendgrid: Any, newsletter: Resource
) -> None:
    factories.signup(ALICE, "newsletter")
    factories.confirm(ALICE, "newsletter")
    blocked = {"email": ALICE, "event": "bounce", "type": "blocked", "sg_event_id": "b1",
               "timestamp": 1764144000}  # fmt: skip
    sendgrid(client, [blocked])
    assert decide(ALICE, "newsletter").allowed  # one soft bounce suspends nobody
    bounced = {**blocked, "type": "bounce", "sg_event_id": "b2"}
    sendgrid(client, [bounced])
    assert decide(ALICE, "newsletter").reason == "suppressed"


def test_a_forged_or_replayed_sendgrid_request_is_refused(
    client: FlaskClient, sendgrid: Any, newsletter: Resource
) -> None:
    factories.signup(ALICE, "newsletter")
    factories.confirm(ALICE, "newsletter")
    before = database_state()
    replayed = sendgrid(client, sendgrid_events(ALICE), stamp=int(time.time()) - 3600)
    assert replayed.status_code == 403
    other_key = ec.generate_private_key(ec.SECP256R1())
    body = json.dumps(sendgrid_events(ALICE)).encode()
    stamp = str(int(time.time()))
    forged = client.post(
        "/webhooks/sendgrid",
        data=body,
        content_type="application/json",
        headers={
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(
                other_key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
            ).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
        },
    )
    assert forged.status_code == 403
    assert client.post("/webhooks/sendgrid", json=sendgrid_events(ALICE)).status_code == 403
    assert database_state() == before


def test_a_webhook_without_its_key_configured_is_off(client: FlaskClient) -> None:
    assert client.post("/webhooks/sendgrid", json=[]).status_code == 404
    assert client.post("/webhooks/postmark", json={}).status_code == 404
    assert client.post("/webhooks/mailchimp", json={}).status_code == 404
    assert client.get("/webhooks/ses").status_code == 405


# --- Postmark -----------------------------------------------------------------------------------


@pytest.fixture
def postmark(app: Flask) -> dict[str, str]:
    app.config.update(POSTMARK_WEBHOOK_USERNAME="postmark", POSTMARK_WEBHOOK_PASSWORD="s3cret")
    credentials = base64.b64encode(b"postmark:s3cret").decode()
    return {"Authorization": f"Basic {credentials}"}


def postmark_bounce(email: str) -> dict[str, Any]:
    """A bounce webhook as in Postmark's documentation."""
    return {
        "RecordType": "Bounce",
        "MessageStream": "outbound",
        "ID": 4323372036854775807,
        "Type": "HardBounce",
        "TypeCode": 1,
        "Name": "Hard bounce",
        "Tag": "Newsletter",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": {"optin-resource": "newsletter"},
        "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user).",
        "Details": "Test bounce details",
        "Email": email,
        "From": "news@example.org",
        "BouncedAt": "2026-11-26T08:00:00Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Test subject",
    }


def test_a_postmark_bounce_with_the_right_credentials(
    client: FlaskClient, postmark: dict[str, str], newsletter: Resource
) -> None:
    factories.signup(ALICE, "newsletter")
    factories.confirm(ALICE, "newsletter")
    answer = client.post("/webhooks/postmark", json=postmark_bounce(ALICE), headers=postmark)
    assert answer.get_json() == {"accepted": 1, "duplicates": 0}
    assert decide(ALICE, "newsletter").reason == "suppressed"


def test_postmark_unsubscribes_and_complaints(
    client: FlaskClient, postmark: dict[str, str], newsletter: Resource, brand: Resource
) -> None:
    for slug in ("newsletter", "brand"):
        factories.signup(ALICE, slug)
        factories.confirm(ALICE, slug)
    change = {
        "RecordType": "SubscriptionChange",
        "MessageID": "00000000-0000-0000-0000-000000000000",
        "Recipient": ALICE,
        "ChangedAt": "2026-11-26T08:00:00Z",
        "SuppressSending": True,
        "SuppressionReason": "ManualSuppression",
        "Metadata": {"optin-resource": "brand"},
    }
    client.post("/webhooks/postmark", json=change, headers=postmark)
    assert decide(ALICE, "brand").reason == "subscription_unsubscribed"
    assert decide(ALICE, "newsletter").allowed
    complaint = {**postmark_bounce(ALICE), "RecordType": "SpamComplaint", "Type": "SpamComplaint"}
    client.post("/webhooks/postmark", json=complaint, headers=postmark)
    assert decide(ALICE, "newsletter").reason == "global_complainer"


def test_postmark_with_wrong_credentials_is_refused(
    client: FlaskClient, postmark: dict[str, str], newsletter: Resource
) -> None:
    factories.signup(ALICE, "newsletter")
    before = database_state()
    wrong = {"Authorization": "Basic " + base64.b64encode(b"postmark:guess").decode()}
    assert (
        client.post("/webhooks/postmark", json=postmark_bounce(ALICE), headers=wrong).status_code
        == 403
    )
    assert client.post("/webhooks/postmark", json=postmark_bounce(ALICE)).status_code == 403
    assert database_state() == before


def test_a_signed_but_malformed_payload_is_a_clear_400(
    client: FlaskClient, postmark: dict[str, str]
) -> None:
    answer = client.post("/webhooks/postmark", data=b"[1,2]", headers=postmark)
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "bad_payload"


def test_a_signed_event_with_a_malformed_address_changes_nothing(
    client: FlaskClient, sendgrid: Any, newsletter: Resource
) -> None:
    factories.signup(ALICE, "newsletter")
    factories.confirm(ALICE, "newsletter")
    before = database_state()
    batch = [
        {**sendgrid_events(ALICE)[1], "sg_event_id": "good"},
        {**sendgrid_events("not an address")[1], "sg_event_id": "bad"},
    ]
    answer = sendgrid(client, batch)
    assert answer.status_code == 400
    assert database_state() == before
    unknown = [{**sendgrid_events(ALICE)[1], "optin_resource": "nope", "sg_event_id": "u"}]
    assert sendgrid(client, unknown).status_code == 400
