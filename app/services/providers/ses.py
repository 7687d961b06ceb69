"""Amazon SES notifications, delivered through Amazon SNS.

SNS signs every message with RSA (SignatureVersion 1: SHA1, 2: SHA256) over a canonical string of
some of its fields, with a certificate it publishes at ``SigningCertURL``. The certificate is only
fetched from an SNS host over HTTPS, and cached. A new subscription first sends a
SubscriptionConfirmation, confirmed by visiting its (equally checked) ``SubscribeURL``.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from app.services.events import EventType, IncomingEvent
from app.services.providers import BadPayload, NotAuthentic, WebhookRequest, parse_time

SIGNED_FIELDS = {
    "Notification": ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"],
    "SubscriptionConfirmation": [
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ],
    "UnsubscribeConfirmation": [
        "Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type",
    ],
}  # fmt: skip
HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}

_certificates: dict[str, rsa.RSAPublicKey] = {}
_lock = threading.Lock()


def _message(data: WebhookRequest) -> dict[str, Any]:
    try:
        message = json.loads(data.body)
    except ValueError:
        raise BadPayload("the body is not JSON") from None
    if not isinstance(message, dict) or message.get("Type") not in SIGNED_FIELDS:
        raise BadPayload("not an SNS message")
    return message


def _checked_url(url: object, config: Mapping[str, Any]) -> str:
    """A URL on an SNS host (SNS_HOST_PATTERN), over HTTPS unless SNS_REQUIRE_HTTPS is off."""
    if not isinstance(url, str):
        raise NotAuthentic("no URL")
    parts = urlsplit(url)
    wanted = "https" if config["SNS_REQUIRE_HTTPS"] else parts.scheme
    if parts.scheme != wanted or not re.fullmatch(config["SNS_HOST_PATTERN"], parts.hostname or ""):
        raise NotAuthentic(f"{url!r} is not an SNS address")
    return url


def _certificate(url: str) -> rsa.RSAPublicKey:
    with _lock:
        if url in _certificates:
            return _certificates[url]
    # The URL passed _checked_url: https and an SNS host, so no file: or other scheme.
    with urllib.request.urlopen(url, timeout=10) as answer:  # nosec B310
        pem = answer.read(64 * 1024)
    key = x509.load_pem_x509_certificate(pem).public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise NotAuthentic("the signing certificate is not RSA")
    with _lock:
        _certificates[url] = key
    return key


def forget_certificates() -> None:
    """Empty the certificate cache (for tests, and after a key rotation scare)."""
    with _lock:
        _certificates.clear()


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The canonical form SNS signs: ``name\\nvalue\\n`` for each signed field present."""
    lines = []
    for name in SIGNED_FIELDS[message["Type"]]:
        if name in message and message[name] is not None:
            lines += [name, str(message[name])]
    return ("\n".join(lines) + "\n").encode("utf-8")


def verify(data: WebhookRequest, config: Mapping[str, Any]) -> None:
    message = _message(data)
    algorithm = HASHES.get(str(message.get("SignatureVersion")))
    if algorithm is None:
        raise NotAuthentic("unknown SignatureVersion")
    try:
        signature = base64.b64decode(message.get("Signature") or "", validate=True)
        sent = datetime.fromisoformat(str(message.get("Timestamp")).replace("Z", "+00:00"))
    except ValueError:
        raise NotAuthentic("malformed Signature or Timestamp") from None
    if sent.tzinfo is None or datetime.now(UTC) - sent > timedelta(seconds=config["SNS_MAX_AGE"]):
        raise NotAuthentic("the message is too old: a replay")
    key = _certificate(_checked_url(message.get("SigningCertURL"), config))
    try:
        key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise NotAuthentic("the signature does not match") from None


def events(data: WebhookRequest, config: Mapping[str, Any]) -> list[IncomingEvent]:
    message = _message(data)
    if message["Type"] == "SubscriptionConfirmation":
        url = _checked_url(message.get("SubscribeURL"), config)
        # _checked_url allows https (SNS_REQUIRE_HTTPS) and an SNS host only.
        with urllib.request.urlopen(url, timeout=10) as answer:  # nosec B310
            answer.read(64 * 1024)
        return []
    if message["Type"] != "Notification":
        return []
    try:
        notification = json.loads(message["Message"])
    except (TypeError, ValueError):
        raise BadPayload("the SNS Message is not an SES notification") from None
    if not isinstance(notification, dict):
        raise BadPayload("the SNS Message is not an SES notification")
    return ses_events(notification, message.get("MessageId", ""))


def ses_events(notification: Mapping[str, Any], message_id: str) -> list[IncomingEvent]:
    """SES bounce and complaint notifications (and event publishing's eventType) as events."""
    kind = notification.get("notificationType") or notification.get("eventType")
    mail = notification.get("mail") or {}
    resource = _resource_tag(mail)
    found: list[IncomingEvent] = []
    if kind == "Bounce":
        bounce = notification.get("bounce") or {}
        event_type = (
            EventType.HARD_BOUNCE
            if bounce.get("bounceType") == "Permanent"
            else EventType.SOFT_BOUNCE
        )
        recipients = bounce.get("bouncedRecipients") or []
        feedback = bounce.get("feedbackId") or message_id
        when = bounce.get("timestamp")
    elif kind == "Complaint":
        complaint = notification.get("complaint") or {}
        event_type = EventType.COMPLAINT
        recipients = complaint.get("complainedRecipients") or []
        feedback = complaint.get("feedbackId") or message_id
        when = complaint.get("timestamp")
    else:
        return []
    occurred = parse_time(when)
    for recipient in recipients:
        address = recipient.get("emailAddress") if isinstance(recipient, dict) else None
        if not isinstance(address, str):
            raise BadPayload("a recipient without emailAddress")
        found.append(
            IncomingEvent(event_type, address, f"{feedback}:{address}", occurred, resource)
        )
    return found


def _resource_tag(mail: Mapping[str, Any]) -> str | None:
    """The resource a message was about, when the sender tagged it ``optin-resource``."""
    tags = mail.get("tags") if isinstance(mail, Mapping) else None
    value = tags.get("optin-resource") if isinstance(tags, Mapping) else None
    return value[0] if isinstance(value, list) and value and isinstance(value[0], str) else None
