"""Postmark's webhooks, authenticated with HTTP basic auth set in the webhook's URL
(POSTMARK_WEBHOOK_USERNAME and POSTMARK_WEBHOOK_PASSWORD): the delivery events, and the
inbound webhook that hands over mail sent to UNSUBSCRIBE_MAILTO."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from app.services.events import EventType, IncomingEvent
from app.services.inbound import InboundMail
from app.services.providers import (
    BadPayload,
    NotAuthentic,
    NotConfigured,
    WebhookRequest,
    load_json,
    parse_time,
)

HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated", "AddressChange"}
SOFT = {"SoftBounce", "Transient", "DnsError", "MailboxFull", "AutoResponder", "Blocked"}
COMPLAINT = {"SpamComplaint", "SpamNotification"}


def verify(data: WebhookRequest, config: Mapping[str, Any]) -> None:
    username = config.get("POSTMARK_WEBHOOK_USERNAME")
    password = config.get("POSTMARK_WEBHOOK_PASSWORD")
    if not username or not password:
        raise NotConfigured("POSTMARK_WEBHOOK_USERNAME and _PASSWORD are not set")
    given = data.authorization
    if given is None or given.type != "basic":
        raise NotAuthentic("basic auth is missing")
    same_user = _same(given.username, username)
    same_password = _same(given.password, password)
    if not (same_user and same_password):
        raise NotAuthentic("wrong credentials")


def _same(given: object, expected: str) -> bool:
    """Compare in constant time as bytes: ``hmac.compare_digest`` refuses str with anything but
    ASCII in it, and a user name may be typed with any character."""
    text = given if isinstance(given, str) else ""
    return hmac.compare_digest(
        text.encode("utf-8", "backslashreplace"), expected.encode("utf-8", "backslashreplace")
    )


def events(data: WebhookRequest, config: Mapping[str, Any]) -> list[IncomingEvent]:
    item = load_json(data.body)
    if not isinstance(item, dict):
        raise BadPayload("Postmark sends one JSON object")
    record = item.get("RecordType")
    metadata = item.get("Metadata")
    resource = metadata.get("optin-resource") if isinstance(metadata, dict) else None
    resource = resource if isinstance(resource, str) else None
    if record in ("Bounce", "SpamComplaint"):
        kind = item.get("Type")
        kind = kind if isinstance(kind, str) else None  # a list or object is no known type
        if record == "SpamComplaint" or kind in COMPLAINT:
            event_type = EventType.COMPLAINT
        elif kind in HARD:
            event_type = EventType.HARD_BOUNCE
        elif kind in SOFT:
            event_type = EventType.SOFT_BOUNCE
        else:
            return []
        return [
            IncomingEvent(
                event_type,
                _text(item, "Email"),
                f"{record}:{_identifier(item, 'ID')}",
                parse_time(item.get("BouncedAt")),
                resource,
            )
        ]
    if record == "SubscriptionChange" and item.get("SuppressSending") is True:
        changed = _identifier(item, "ChangedAt")
        return [
            IncomingEvent(
                EventType.UNSUBSCRIBE,
                _text(item, "Recipient"),
                f"SubscriptionChange:{_identifier(item, 'MessageID')}:{changed}",
                parse_time(changed),
                resource,
            )
        ]
    return []


def _identifier(item: Mapping[str, Any], name: str) -> str | int | None:
    """A field that goes into the event id: text or a number as Postmark sends it, never a
    list or an object (which would make an id of its whole text)."""
    value = item.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, str | int)):
        raise BadPayload(f"{name} is not text or a number")
    return value


def _text(item: Mapping[str, Any], name: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        raise BadPayload(f"{name} is missing")
    return value


# --- Inbound: Postmark's inbound webhook, one received message as JSON ----------------------------


def verify_inbound(data: WebhookRequest, config: Mapping[str, Any]) -> None:
    """The inbound webhook's URL carries the same basic-auth credentials as the others."""
    verify(data, config)


def inbound(data: WebhookRequest, config: Mapping[str, Any]) -> list[InboundMail]:
    """The message of an inbound webhook request: Postmark has decoded its ``Subject`` already,
    and gives the sender in ``FromFull`` (``From`` may carry a display name)."""
    item = load_json(data.body)
    if not isinstance(item, dict):
        raise BadPayload("Postmark sends one JSON object")
    subject = item.get("Subject")
    if not isinstance(subject, str):
        raise BadPayload("Subject is missing")
    sender = item.get("FromFull")
    address = sender.get("Email") if isinstance(sender, dict) else item.get("From")
    return [InboundMail(subject, address if isinstance(address, str) and address else None)]
