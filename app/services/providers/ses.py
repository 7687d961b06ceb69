"""Amazon SES notifications, delivered through Amazon SNS.

SNS signs every message with RSA (SignatureVersion 1: SHA1, 2: SHA256) over a canonical string of
some of its fields, with a certificate it publishes at ``SigningCertURL``. Anyone can create an SNS
topic and have Amazon sign what they publish to it, so a genuine signature proves only that *some*
AWS account sent the message: the topic must be one of ours (SNS_TOPIC_ARNS), and that is checked
before anything is fetched. Without SNS_TOPIC_ARNS the webhook is off.

The certificate is fetched only from ``https://sns.<region>.amazonaws.com/SimpleNotificationService-
<hex>.pem``, without following redirects, and a few are cached. A new subscription first sends a
SubscriptionConfirmation, confirmed by visiting its ``SubscribeURL`` (same host rule).

SES receiving (a receipt rule with an SNS action) comes the same way, to the inbound hook: a
``Received`` notification with the message, for the mailto of List-Unsubscribe.
"""

from __future__ import annotations

import base64
import functools
import http.client
import re
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
from app.services.inbound import InboundMail, address_in, mail_of_message
from app.services.providers import (
    BadPayload,
    NotAuthentic,
    NotConfigured,
    Unavailable,
    WebhookRequest,
    load_json,
    parse_time,
)

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
# The one shape of SNS's signing certificate paths; anything else on an SNS host is not one.
CERTIFICATE_PATH = re.compile(r"/SimpleNotificationService-[0-9a-f]+\.pem")
# SNS has a handful of signing certificates per region in use at any time.
CERTIFICATE_CACHE_SIZE = 16
FETCH_TIMEOUT = 10
MAX_FETCH_BYTES = 64 * 1024


def _message(data: WebhookRequest) -> dict[str, Any]:
    message = load_json(data.body)
    if not isinstance(message, dict) or message.get("Type") not in SIGNED_FIELDS:
        raise BadPayload("not an SNS message")
    # Every signed field is text in SNS's format; anything else cannot be a genuine message (and
    # would be turned into text by string_to_sign, whatever it is).
    for name in SIGNED_FIELDS[message["Type"]]:
        if message.get(name) is not None and not isinstance(message[name], str):
            raise BadPayload(f"{name} is not text")
    return message


def _text(message: Mapping[str, Any], name: str) -> str:
    value = message.get(name)
    if not isinstance(value, str) or not value:
        raise NotAuthentic(f"{name} is missing or not text")
    return value


def _checked_url(url: object, config: Mapping[str, Any], *, certificate: bool = False) -> str:
    """A URL on an SNS host (SNS_HOST_PATTERN matches its whole network location, so no port or
    user name can be slipped in), over HTTPS unless SNS_REQUIRE_HTTPS is off; a certificate's
    URL must also have SNS's certificate path and no query or fragment."""
    if not isinstance(url, str):
        raise NotAuthentic("no URL")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise NotAuthentic("a malformed URL") from None
    schemes = {"https"} if config["SNS_REQUIRE_HTTPS"] else {"https", "http"}
    if parts.scheme not in schemes or not re.fullmatch(config["SNS_HOST_PATTERN"], parts.netloc):
        raise NotAuthentic(f"{url!r} is not an SNS address")
    if certificate and (
        not CERTIFICATE_PATH.fullmatch(parts.path) or parts.query or parts.fragment
    ):
        raise NotAuthentic(f"{url!r} is not an SNS signing certificate")
    return url


class _NoRedirects(urllib.request.OpenerDirector):
    """An opener for http(s) only, without the redirect handler: a 3xx answer is an HTTPError,
    so a certificate can never come from wherever an SNS address redirects to. (The default
    opener follows redirects, and also opens file:, ftp: and data: URLs.)"""

    def __init__(self) -> None:
        super().__init__()
        for handler in (
            urllib.request.HTTPSHandler(),
            urllib.request.HTTPHandler(),  # only reached when SNS_REQUIRE_HTTPS is off (tests)
            urllib.request.HTTPDefaultErrorHandler(),
            urllib.request.HTTPErrorProcessor(),
        ):
            self.add_handler(handler)


def _fetch(url: str) -> bytes:
    """GET an SNS address checked by _checked_url. Any failure is Unavailable: SNS retries a
    delivery answered with a 5xx, so nothing is lost while Amazon or the network has a bad
    moment."""
    if urlsplit(url).scheme not in ("https", "http"):
        raise NotAuthentic(f"{url!r} is not an http(s) address")
    try:
        # The scheme is checked above and the opener has no other handlers.
        with _NoRedirects().open(url, timeout=FETCH_TIMEOUT) as answer:
            body: bytes = answer.read(MAX_FETCH_BYTES)
            return body
    except (OSError, http.client.HTTPException) as error:
        raise Unavailable(f"fetching {url} failed: {error}") from None


@functools.lru_cache(maxsize=CERTIFICATE_CACHE_SIZE)
def _certificate(url: str) -> rsa.RSAPublicKey:
    """The public key of the certificate at ``url``; the least recently used ones are forgotten
    beyond CERTIFICATE_CACHE_SIZE, and a failure is not cached (the next delivery tries again)."""
    try:
        key = x509.load_pem_x509_certificate(_fetch(url)).public_key()
    except ValueError:
        raise Unavailable(f"{url} did not answer with a PEM certificate") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise NotAuthentic("the signing certificate is not RSA")
    return key


def forget_certificates() -> None:
    """Empty the certificate cache (for tests, and after a key rotation scare)."""
    _certificate.cache_clear()


def string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The canonical form SNS signs: ``name\\nvalue\\n`` for each signed field present."""
    lines = []
    for name in SIGNED_FIELDS[message["Type"]]:
        if name in message and message[name] is not None:
            lines += [name, str(message[name])]
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")


def verify(data: WebhookRequest, config: Mapping[str, Any]) -> None:
    """Cheap checks first, the network last: the topic, the signature's form, the age and the
    certificate's address are all checked before the certificate is fetched."""
    topics = config.get("SNS_TOPIC_ARNS") or []
    if not topics:
        raise NotConfigured("SNS_TOPIC_ARNS is not set")
    message = _message(data)
    if message.get("TopicArn") not in topics:
        raise NotAuthentic(f"topic {message.get('TopicArn')!r} is not in SNS_TOPIC_ARNS")
    algorithm = HASHES.get(_text(message, "SignatureVersion"))
    if algorithm is None:
        raise NotAuthentic("unknown SignatureVersion")
    try:
        signature = base64.b64decode(_text(message, "Signature"), validate=True)
        sent = datetime.fromisoformat(_text(message, "Timestamp").replace("Z", "+00:00"))
    except ValueError:
        raise NotAuthentic("malformed Signature or Timestamp") from None
    if sent.tzinfo is None or datetime.now(UTC) - sent > timedelta(seconds=config["SNS_MAX_AGE"]):
        raise NotAuthentic("the message is too old: a replay")
    url = _checked_url(_text(message, "SigningCertURL"), config, certificate=True)
    key = _certificate(url)
    try:
        key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm())
    except InvalidSignature:
        raise NotAuthentic("the signature does not match") from None


def _notification(data: WebhookRequest, config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The SES notification in a verified SNS message; None for SNS's own messages, after the
    handshake a SubscriptionConfirmation asks for."""
    message = _message(data)
    if message["Type"] == "SubscriptionConfirmation":
        _fetch(_checked_url(message.get("SubscribeURL"), config))
        return None
    if message["Type"] != "Notification":
        return None
    body = message.get("Message")
    notification = load_json(body) if isinstance(body, str) else None
    if not isinstance(notification, dict):
        raise BadPayload("the SNS Message is not an SES notification")
    return notification


def events(data: WebhookRequest, config: Mapping[str, Any]) -> list[IncomingEvent]:
    notification = _notification(data, config)
    if notification is None:
        return []
    return ses_events(notification, _message(data).get("MessageId") or "")


def verify_inbound(data: WebhookRequest, config: Mapping[str, Any]) -> None:
    """SES receiving publishes to an SNS topic like the notifications: the same checks, and the
    topic must be in SNS_TOPIC_ARNS too."""
    verify(data, config)


def inbound(data: WebhookRequest, config: Mapping[str, Any]) -> list[InboundMail]:
    """The message of a receipt rule's SNS action (``notificationType`` ``Received``): the raw
    message in ``content`` (UTF-8 or base64, as the action says) when there is one, else the
    subject and sender SES read from it (``mail.commonHeaders``)."""
    notification = _notification(data, config)
    if notification is None or notification.get("notificationType") != "Received":
        return []
    content = notification.get("content")
    if isinstance(content, str) and content:
        mail = mail_of_message(_raw_content(content))
        if mail.subject:
            return [mail]
    headers = _object(_object(notification, "mail"), "commonHeaders")
    subject, senders = headers.get("subject"), headers.get("from")
    if not isinstance(subject, str):
        raise BadPayload("a received message without a subject")
    sender = senders[0] if isinstance(senders, list) and senders else None
    return [InboundMail(subject, address_in(sender) if isinstance(sender, str) else None)]


def _raw_content(content: str) -> bytes:
    """The raw message of an SNS action: base64 (one line of its alphabet) or UTF-8 text, which
    always has a colon or a line break that base64 lacks."""
    try:
        return base64.b64decode(content, validate=True)
    except ValueError:
        return content.encode("utf-8", "surrogateescape")


def ses_events(notification: Mapping[str, Any], message_id: str) -> list[IncomingEvent]:
    """SES bounce and complaint notifications (and event publishing's eventType) as events."""
    kind = notification.get("notificationType") or notification.get("eventType")
    resource = _resource_tag(notification.get("mail"))
    if kind == "Bounce":
        bounce = _object(notification, "bounce")
        event_type = (
            EventType.HARD_BOUNCE
            if bounce.get("bounceType") == "Permanent"
            else EventType.SOFT_BOUNCE
        )
        details, recipients_field = bounce, "bouncedRecipients"
    elif kind == "Complaint":
        details, recipients_field = _object(notification, "complaint"), "complainedRecipients"
        event_type = EventType.COMPLAINT
    else:
        return []
    recipients = details.get(recipients_field) or []
    if not isinstance(recipients, list):
        raise BadPayload(f"{recipients_field} is not a list")
    feedback = details.get("feedbackId") or message_id
    if not isinstance(feedback, str):
        raise BadPayload("feedbackId is not text")
    occurred = parse_time(details.get("timestamp"))
    found: list[IncomingEvent] = []
    for recipient in recipients:
        address = recipient.get("emailAddress") if isinstance(recipient, dict) else None
        if not isinstance(address, str):
            raise BadPayload("a recipient without emailAddress")
        found.append(
            IncomingEvent(event_type, address, f"{feedback}:{address}", occurred, resource)
        )
    return found


def _object(notification: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = notification.get(name) or {}
    if not isinstance(value, dict):
        raise BadPayload(f"{name} is not an object")
    return value


def _resource_tag(mail: object) -> str | None:
    """The resource a message was about, when the sender tagged it ``optin-resource``."""
    tags = mail.get("tags") if isinstance(mail, Mapping) else None
    value = tags.get("optin-resource") if isinstance(tags, Mapping) else None
    return value[0] if isinstance(value, list) and value and isinstance(value[0], str) else None
