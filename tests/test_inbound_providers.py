"""Unsubscribe by mail through the providers' inbound hooks (issue 12, item 1): Postmark's inbound
webhook, SendGrid's Inbound Parse and SES receiving through SNS, each in the provider's documented
shape, signed as the provider signs it, with the mailto of a welcome email optin really sent."""

from __future__ import annotations

import base64
import json
import time
from email.header import Header
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import encode_multipart

from app import queries
from app.models import Resource
from app.services.eligibility import decide
from tests import test_webhooks
from tests.helpers import database_state
from tests.smtp import SmtpServer
from tests.test_inbound import ALICE, MAILBOX, subscriber

# The fixtures of the delivery webhooks' tests: an SNS stand-in and Postmark's credentials.
sns = test_webhooks.sns
postmark = test_webhooks.postmark


@pytest.fixture
def mailto(
    app: Flask, client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource
) -> tuple[str, str]:
    """Alice subscribed to the newsletter, and the address and subject of the mailto of her
    welcome email."""
    app.config["UNSUBSCRIBE_MAILTO"] = MAILBOX
    return subscriber(client, smtp_server, newsletter)


def unsubscribed_from_newsletter() -> bool:
    return decide(ALICE, "newsletter").subscription_status == "unsubscribed"


def last_event() -> Any:
    profile = queries.profile_by_email(ALICE)
    assert profile is not None
    return queries.events_of_profile(profile.id)[-1]


# --- Postmark -----------------------------------------------------------------------------------


def postmark_inbound(subject: str, sender: str = ALICE) -> dict[str, Any]:
    """An inbound webhook request as in Postmark's documentation."""
    return {
        "FromName": "Alice",
        "MessageStream": "inbound",
        "From": sender,
        "FromFull": {"Email": sender, "Name": "Alice", "MailboxHash": ""},
        "To": MAILBOX,
        "ToFull": [{"Email": MAILBOX, "Name": "", "MailboxHash": ""}],
        "Cc": "",
        "CcFull": [],
        "OriginalRecipient": MAILBOX,
        "Subject": subject,
        "MessageID": "73e6d360-66eb-11e1-8e72-a8904824019b",
        "ReplyTo": "",
        "MailboxHash": "",
        "Date": "Sun, 29 Nov 2026 16:45:32 +01:00",
        "TextBody": "",
        "HtmlBody": "",
        "StrippedTextReply": "",
        "Tag": "",
        "Headers": [{"Name": "X-Spam-Status", "Value": "No"}],
        "Attachments": [],
    }


def test_a_postmark_inbound_message_unsubscribes_as_one_click_does(
    client: FlaskClient, postmark: dict[str, str], mailto: tuple[str, str]
) -> None:
    _, subject = mailto
    answer = client.post(
        "/webhooks/postmark/inbound", json=postmark_inbound(f"Re: {subject}"), headers=postmark
    )
    assert answer.status_code == 200
    assert answer.get_json()["unsubscribed"] == 1
    assert unsubscribed_from_newsletter()
    assert decide(ALICE, None).global_status == "subscribed"
    assert (last_event().cause, last_event().reason) == ("mailto", f"mail from {ALICE}")
    again = client.post(
        "/webhooks/postmark/inbound", json=postmark_inbound(subject), headers=postmark
    )
    assert again.get_json()["already"] == 1  # a retry of the hook changes nothing


def test_postmark_inbound_without_the_credentials_is_refused_and_off_until_configured(
    app: Flask, client: FlaskClient, postmark: dict[str, str], mailto: tuple[str, str]
) -> None:
    _, subject = mailto
    before = database_state()
    body = postmark_inbound(subject)
    assert client.post("/webhooks/postmark/inbound", json=body).status_code == 403
    wrong = {"Authorization": "Basic " + base64.b64encode(b"postmark:guess").decode()}
    assert client.post("/webhooks/postmark/inbound", json=body, headers=wrong).status_code == 403
    app.config["POSTMARK_WEBHOOK_PASSWORD"] = None
    assert client.post("/webhooks/postmark/inbound", json=body, headers=postmark).status_code == 404
    assert client.post("/webhooks/mailchimp/inbound", json=body).status_code == 404
    assert database_state() == before


def test_a_forged_token_through_a_hook_changes_nothing_and_is_not_retried(
    client: FlaskClient, postmark: dict[str, str], mailto: tuple[str, str]
) -> None:
    _, subject = mailto
    before = database_state()
    forged = subject[:-3] + ("xyz" if not subject.endswith("xyz") else "abc")
    for text in (forged, "Please unsubscribe me", ""):
        answer = client.post(
            "/webhooks/postmark/inbound", json=postmark_inbound(text), headers=postmark
        )
        assert answer.status_code == 200  # a 4xx or 5xx would only make Postmark retry it
    assert database_state() == before


@pytest.mark.parametrize(
    "body", [[], {"Subject": 7}, {"FromFull": {}}, "unsubscribe", {"Subject": ["a"]}]
)
def test_a_signed_but_malformed_inbound_request_is_a_clear_400(
    client: FlaskClient, postmark: dict[str, str], mailto: tuple[str, str], body: Any
) -> None:
    before = database_state()
    answer = client.post("/webhooks/postmark/inbound", json=body, headers=postmark)
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "bad_payload"
    assert database_state() == before


def test_while_the_database_is_unreachable_an_inbound_hook_answers_503_so_it_is_retried() -> None:
    from app.tokens import LinkSigner, Purpose
    from tests.test_outages import unreachable_app

    app = unreachable_app(POSTMARK_WEBHOOK_USERNAME="hook", POSTMARK_WEBHOOK_PASSWORD="secret")
    with app.app_context():
        token = LinkSigner(Purpose.UNSUBSCRIBE).token(1, "0" * 32, None)
    answer = app.test_client().post(
        "/webhooks/postmark/inbound",
        json=postmark_inbound(f"unsubscribe {token}"),
        auth=("hook", "secret"),
    )
    assert answer.status_code == 503
    assert answer.json is not None and answer.json["error"]["code"] == "unavailable"


# --- SendGrid Inbound Parse ---------------------------------------------------------------------


@pytest.fixture
def parse(app: Flask) -> Any:
    """SendGrid's Inbound Parse with a security policy that signs: a key of the test's own, set
    as SENDGRID_INBOUND_PUBLIC_KEY; ``post(client, fields)`` sends a signed multipart request."""
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    app.config["SENDGRID_INBOUND_PUBLIC_KEY"] = base64.b64encode(public).decode()

    def post(client: FlaskClient, fields: dict[str, str], signer: Any = key):  # type: ignore[no-untyped-def]
        boundary, body = encode_multipart(fields)
        stamp = str(int(time.time()))
        signature = signer.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return client.post(
            "/webhooks/sendgrid/inbound",
            data=body,
            content_type=f"multipart/form-data; boundary={boundary}",
            headers={
                "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
            },
        )

    return post


def parse_fields(subject: str) -> dict[str, str]:
    """The fields Inbound Parse posts (default mode), as in SendGrid's documentation: the header
    block as received, with the subject still RFC 2047-encoded, and the decoded copies."""
    # As a mail client writes it: RFC 2047 encoded-words, folded where they grow long.
    encoded = Header(subject, "utf-8").encode().replace("\r\n", "\n")
    return {
        "headers": (
            f"Received: by mx0047p1mdw1.sendgrid.net with SMTP id 6WCVv7KAWn\n"
            f"From: Alice <{ALICE}>\nTo: {MAILBOX}\nSubject: {encoded}\n"
            "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
        ),
        "dkim": "{@example.com : pass}",
        "to": MAILBOX,
        "from": f"Alice <{ALICE}>",
        "text": "Please take me off the list.\n",
        "sender_ip": "192.0.2.10",
        "envelope": json.dumps({"to": [MAILBOX], "from": ALICE}),
        "attachments": "0",
        "subject": subject,
        "charsets": json.dumps(
            {"to": "UTF-8", "subject": "UTF-8", "from": "UTF-8", "text": "UTF-8"}
        ),
        "SPF": "pass",
    }


def test_a_signed_inbound_parse_message_unsubscribes(
    client: FlaskClient, parse: Any, mailto: tuple[str, str]
) -> None:
    _, subject = mailto
    answer = parse(client, parse_fields(f"AW: {subject}"))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["unsubscribed"] == 1
    assert unsubscribed_from_newsletter()
    assert last_event().reason == f"mail from {ALICE}"


def test_inbound_parse_in_raw_mode_unsubscribes(
    client: FlaskClient, parse: Any, mailto: tuple[str, str]
) -> None:
    _, subject = mailto
    raw = f"From: {ALICE}\r\nTo: {MAILBOX}\r\nSubject: Fwd: {subject}\r\n\r\nbye\r\n"
    answer = parse(client, {"email": raw, "to": MAILBOX, "from": ALICE, "SPF": "pass"})
    assert answer.get_json()["unsubscribed"] == 1
    assert unsubscribed_from_newsletter()


def test_an_unsigned_or_foreign_signed_inbound_parse_request_is_refused(
    app: Flask, client: FlaskClient, parse: Any, mailto: tuple[str, str]
) -> None:
    _, subject = mailto
    before = database_state()
    boundary, body = encode_multipart(parse_fields(subject))
    unsigned = client.post(
        "/webhooks/sendgrid/inbound",
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
    )
    assert unsigned.status_code == 403
    forged = parse(client, parse_fields(subject), signer=ec.generate_private_key(ec.SECP256R1()))
    assert forged.status_code == 403
    assert database_state() == before
    # The Event Webhook's key is not the Inbound Parse policy's: that hook stays off without it.
    app.config["SENDGRID_WEBHOOK_PUBLIC_KEY"] = app.config.pop("SENDGRID_INBOUND_PUBLIC_KEY")
    assert parse(client, parse_fields(subject)).status_code == 404
    assert database_state() == before


def test_a_signed_inbound_parse_request_that_is_not_multipart_is_a_400(
    client: FlaskClient, parse: Any, mailto: tuple[str, str]
) -> None:
    answer = parse(client, {"nothing": "here"})
    assert answer.status_code == 400


# --- SES receiving through SNS ------------------------------------------------------------------


def ses_received(subject: str, content: str | None) -> dict[str, Any]:
    """A receipt rule's SNS action notification, as in Amazon's documentation."""
    notification: dict[str, Any] = {
        "notificationType": "Received",
        "mail": {
            "timestamp": "2026-11-29T16:45:32.000Z",
            "source": ALICE,
            "messageId": "o3vrnil0e2ic28trm7dfhrc2v0clambda4nbp0g1",
            "destination": [MAILBOX],
            "headersTruncated": False,
            "commonHeaders": {
                "returnPath": ALICE,
                "from": [f"Alice <{ALICE}>"],
                "to": [MAILBOX],
                "subject": subject,
            },
        },
        "receipt": {
            "recipients": [MAILBOX],
            "spamVerdict": {"status": "PASS"},
            "action": {"type": "SNS", "topicArn": test_webhooks.TOPIC, "encoding": "UTF8"},
        },
    }
    if content is not None:
        notification["content"] = content
    return notification


@pytest.mark.parametrize("encoding", ["UTF8", "BASE64", "none"])
def test_ses_receiving_through_sns_unsubscribes(
    client: FlaskClient, sns: Any, mailto: tuple[str, str], encoding: str
) -> None:
    _, subject = mailto
    raw = f"From: Alice <{ALICE}>\r\nTo: {MAILBOX}\r\nSubject: Re: {subject}\r\n\r\nbye\r\n"
    content = {"UTF8": raw, "BASE64": base64.b64encode(raw.encode()).decode(), "none": None}
    message = sns.sign(test_webhooks.notification(ses_received(subject, content[encoding])))
    answer = client.post(
        "/webhooks/ses/inbound",
        data=json.dumps(message),
        content_type="text/plain; charset=UTF-8",
        headers={"x-amz-sns-message-type": "Notification"},
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["unsubscribed"] == 1
    assert unsubscribed_from_newsletter()
    assert last_event().reason == f"mail from {ALICE}"


def test_a_forged_ses_receiving_notification_is_refused(
    client: FlaskClient, sns: Any, mailto: tuple[str, str]
) -> None:
    _, subject = mailto
    before = database_state()
    message = sns.sign(test_webhooks.notification(ses_received(subject, None)))
    message["Message"] = message["Message"].replace("Received", "Received ")
    answer = client.post("/webhooks/ses/inbound", data=json.dumps(message))
    assert answer.status_code == 403
    assert database_state() == before
