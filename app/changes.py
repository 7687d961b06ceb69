"""One status change as the sending platform sees it (issue 15): an entry of the change feed
(``GET /api/v1/changes``) and the ``data`` of an outgoing webhook are the same document, so a
platform that mirrors statuses can switch between polling and receiving without a second parser.

The document names the profile by its id as well as its address: an erasure carries no address,
and the id is what lets a mirror find the person it must forget (ids never recur, issue 9).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from app.models import StatusEvent
from app.status import Status


class ChangeKind(StrEnum):
    """What a feed entry or a webhook is about."""

    STATUS = "status"  # a global or subscription status changed (SPEC §1 rule 7)
    ERASURE = "erasure"  # the profile was erased: no address, no statuses


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def status_change_document(
    event: StatusEvent, *, email: str | None, resource_slug: str | None
) -> dict[str, Any]:
    """The document of one status event. ``email`` is None once the profile is erased; the
    scope is "global" or the resource's slug, as in the API's profile history."""
    on_resource = event.channel is not None
    return {
        "kind": ChangeKind.STATUS.value,
        "at": _iso(event.occurred_at),
        "profile": event.profile_id,
        "email": email,
        "scope": (resource_slug or None) if on_resource else "global",
        "resource": resource_slug if on_resource else None,
        "channel": event.channel,
        "old_status": event.old_status,
        "new_status": event.new_status,
        "suspended_until": _iso(event.suspended_until),
        "cause": event.cause,
        "actor": event.actor,
    }


def erasure_document(profile_id: int, *, at: datetime, actor: str | None) -> dict[str, Any]:
    """The document of an erasure: which profile id to forget, when and by whom; no address."""
    return {
        "kind": ChangeKind.ERASURE.value,
        "at": _iso(at),
        "profile": profile_id,
        "email": None,
        "scope": "global",
        "resource": None,
        "channel": None,
        "old_status": None,
        "new_status": None,
        "suspended_until": None,
        "cause": "erasure",
        "actor": actor,
    }


def event_type(document: dict[str, Any]) -> str:
    """The webhook event type of a document (Standard Webhooks' ``type``): ``profile.<status>``
    for a global change, ``subscription.<status>`` for a subscription's, ``profile.erased``."""
    if document["kind"] == ChangeKind.ERASURE.value:
        return "profile.erased"
    prefix = "profile" if document["scope"] == "global" else "subscription"
    return f"{prefix}.{document['new_status']}"


# Every type an endpoint may choose from.
EVENT_TYPES: tuple[str, ...] = (
    *(f"{prefix}.{status.value}" for prefix in ("profile", "subscription") for status in Status),
    "profile.erased",
)
