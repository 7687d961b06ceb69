"""Postmark's webhooks, authenticated with HTTP basic auth set in the webhook's URL
(POSTMARK_WEBHOOK_USERNAME and POSTMARK_WEBHOOK_PASSWORD)."""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from typing import Any

from app.services.events import EventType, IncomingEvent
from app.services.providers import (
    BadPayload,
    NotAuthentic,
    NotConfigured,
    WebhookRequest,
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
    same_user = hmac.compare_digest(str(given.username or ""), username)
    same_password = hmac.compare_digest(str(given.password or ""), password)
    if not (same_user and same_password):
        raise NotAuthentic("wrong credentials")


def events(data: WebhookRequest, config: Mapping[str, Any]) -> list[IncomingEvent]:
    try:
        item = json.loads(data.body)
    except ValueError:
        raise BadPayload("the body is not JSON") from None
    if not isinstance(item, dict):
        raise BadPayload("Postmark sends one JSON object")
    record = item.get("RecordType")
    resource = (item.get("Metadata") or {}).get("optin-resource")
    resource = resource if isinstance(resource, str) else None
    if record in ("Bounce", "SpamComplaint"):
        kind = item.get("Type")
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
                f"{record}:{item.get('ID')}",
                parse_time(item.get("BouncedAt")),
                resource,
            )
        ]
    if record == "SubscriptionChange" and item.get("SuppressSending") is True:
        changed = item.get("ChangedAt")
        return [
            IncomingEvent(
                EventType.UNSUBSCRIBE,
                _text(item, "Recipient"),
                f"SubscriptionChange:{item.get('MessageID')}:{changed}",
                parse_time(changed),
                resource,
            )
        ]
    return []


def _text(item: Mapping[str, Any], name: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        raise BadPayload(f"{name} is missing")
    return value
