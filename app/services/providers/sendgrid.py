"""SendGrid's signed Event Webhook, and its signed Inbound Parse webhook.

SendGrid signs ``timestamp + body`` with ECDSA (P-256, SHA-256); the signature and timestamp come
in the ``X-Twilio-Email-Event-Webhook-Signature`` and ``-Timestamp`` headers, and the public key
is shown in SendGrid's settings (SENDGRID_WEBHOOK_PUBLIC_KEY, base64 DER). A timestamp older than
SENDGRID_MAX_AGE seconds is a replay. Inbound Parse signs the same way once a security policy
with signature verification is attached to it, with that policy's own key
(SENDGRID_INBOUND_PUBLIC_KEY); without one, Inbound Parse posts unsigned, and the hook stays off.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from werkzeug.formparser import FormDataParser
from werkzeug.http import parse_options_header

from app.services.events import EventType, IncomingEvent
from app.services.inbound import InboundMail, address_in, mail_of_message
from app.services.providers import (
    BadPayload,
    NotAuthentic,
    NotConfigured,
    WebhookRequest,
    load_json,
)

SIGNATURE = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP = "X-Twilio-Email-Event-Webhook-Timestamp"
TYPES = {
    "spamreport": EventType.COMPLAINT,
    "unsubscribe": EventType.UNSUBSCRIBE,
    "group_unsubscribe": EventType.UNSUBSCRIBE,
}


def _public_key(config: Mapping[str, Any], setting: str) -> ec.EllipticCurvePublicKey:
    encoded = config.get(setting)
    if not encoded:
        raise NotConfigured(f"{setting} is not set")
    key = serialization.load_der_public_key(base64.b64decode(encoded))
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise NotConfigured(f"{setting} is not an ECDSA key")
    return key


def verify(data: WebhookRequest, config: Mapping[str, Any]) -> None:
    _verify(data, config, _public_key(config, "SENDGRID_WEBHOOK_PUBLIC_KEY"))


def verify_inbound(data: WebhookRequest, config: Mapping[str, Any]) -> None:
    _verify(data, config, _public_key(config, "SENDGRID_INBOUND_PUBLIC_KEY"))


def _verify(
    data: WebhookRequest, config: Mapping[str, Any], key: ec.EllipticCurvePublicKey
) -> None:
    signature, stamp = data.headers.get(SIGNATURE), data.headers.get(TIMESTAMP)
    if not signature or not stamp:
        raise NotAuthentic("the signature headers are missing")
    try:
        sent = int(stamp)
        raw_signature = base64.b64decode(signature, validate=True)
    except ValueError:
        raise NotAuthentic("malformed signature headers") from None
    # In whole integers: a float conversion of a thousand-digit stamp would overflow.
    if abs(int(time.time()) - sent) > config["SENDGRID_MAX_AGE"]:
        raise NotAuthentic("the timestamp is too old: a replay")
    try:
        key.verify(raw_signature, stamp.encode() + data.body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise NotAuthentic("the signature does not match") from None


def events(data: WebhookRequest, config: Mapping[str, Any]) -> list[IncomingEvent]:
    items = load_json(data.body)
    if not isinstance(items, list):
        raise BadPayload("SendGrid sends a JSON array of events")
    found = []
    for item in items:
        if not isinstance(item, dict):
            raise BadPayload("an event is not an object")
        event_type = _type(item)
        if event_type is None:
            continue  # deliveries, opens, clicks: nothing to do with consent
        email, event_id = item.get("email"), item.get("sg_event_id")
        if not isinstance(email, str) or not isinstance(event_id, str):
            raise BadPayload("an event without email or sg_event_id")
        occurred = _time(item.get("timestamp"))
        resource = item.get("optin_resource")  # a custom arg the sender may set
        found.append(
            IncomingEvent(
                event_type,
                email,
                event_id,
                occurred,
                resource if isinstance(resource, str) else None,
            )
        )
    return found


def _time(stamp: object) -> datetime:
    """SendGrid's Unix timestamp; now when it has none or one no date can have (NaN, 1e300)."""
    if isinstance(stamp, int | float) and not isinstance(stamp, bool):
        try:
            return datetime.fromtimestamp(stamp, UTC)
        except (ValueError, OverflowError, OSError):
            pass
    return datetime.now(UTC)


def _type(item: Mapping[str, Any]) -> EventType | None:
    kind = item.get("event")
    if not isinstance(kind, str):
        return None
    if kind == "bounce":
        # "bounce" is a hard bounce; "blocked" a temporary refusal.
        return EventType.SOFT_BOUNCE if item.get("type") == "blocked" else EventType.HARD_BOUNCE
    return TYPES.get(kind)


# --- Inbound Parse: one received message as multipart/form-data ---------------------------------


def inbound(data: WebhookRequest, config: Mapping[str, Any]) -> list[InboundMail]:
    """The message of an Inbound Parse request. With "send raw" on, the whole message is the
    ``email`` field; otherwise ``headers`` holds its header block as received (encoded-words
    still encoded, so no charset guessing), and ``subject`` and ``from`` are the fallback."""
    form = _form(data)
    raw = form.get("email") or form.get("headers")
    if raw:
        mail = mail_of_message(raw.encode("utf-8", "surrogateescape") + b"\r\n\r\n")
        if mail.subject:
            return [mail]
    subject = form.get("subject")
    if subject is None:
        raise BadPayload("an Inbound Parse request without a message, headers or subject")
    return [InboundMail(subject, address_in(form.get("from", "")))]


def _form(data: WebhookRequest) -> dict[str, str]:
    """The text fields of a multipart/form-data body, with werkzeug's parser (attachments are
    files and left alone)."""
    mimetype, options = parse_options_header(data.headers.get("Content-Type", ""))
    if mimetype != "multipart/form-data":
        raise BadPayload("Inbound Parse posts multipart/form-data")
    parser = FormDataParser(silent=False)
    try:
        _, form, _ = parser.parse(io.BytesIO(data.body), mimetype, len(data.body), options)
    except ValueError:
        raise BadPayload("a malformed multipart body") from None
    return {name: form.get(name, "") for name in form}
