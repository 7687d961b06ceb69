"""A profile as data: its statuses, subscriptions and whole history, for the API, for the
customer's own "download my data" and for the admin's profile page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app import queries
from app.models import Profile, StatusEvent, SuppressionEvent


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def profile_record(profile: Profile, *, personal: bool = False) -> dict[str, Any]:
    """The SPEC §3 profile shape. ``personal`` adds what only the customer may take away: the
    IP addresses and browsers in the history, the proof of consent, the language."""
    slugs = {r.id: r.slug for r in queries.all_resources()}
    record: dict[str, Any] = {
        "email": profile.email,
        "name": profile.name,
        "global_status": profile.status,
        "suspended_until": iso(profile.suspended_until),
        "subscriptions": [
            {
                "resource": slugs.get(s.resource_id),
                "channel": s.channel,
                "status": s.status,
                "suspended_until": iso(s.suspended_until),
                "created_at": iso(s.created_at),
                "confirmed_at": iso(s.confirmed_at),
            }
            for s in queries.subscriptions_of_profile(profile.id)
        ],
        "events": [
            {
                "at": iso(e.occurred_at),
                "scope": slugs.get(e.resource_id, "global") if e.resource_id else "global",
                "channel": e.channel,
                "old_status": e.old_status,
                "new_status": e.new_status,
                "cause": e.cause,
                "actor": e.actor,
                "reason": e.reason,
                **({"ip": e.ip, "user_agent": e.user_agent} if personal else {}),
            }
            for e in queries.events_of_profile(profile.id)
        ],
    }
    if personal:
        record["locale"] = profile.locale
        record["created_at"] = iso(profile.created_at)
        record["consent"] = [
            {
                "confirmed_at": iso(c.confirmed_at),
                "ip": c.ip,
                "user_agent": c.user_agent,
                "form": c.form,
                "consent_text_id": c.consent_text_id,
            }
            for c in queries.consent_records_of_profile(profile.id)
        ]
    return record


@dataclass(frozen=True)
class HistoryLine:
    """One line of a profile's history: a status event or a hand-made suppression change."""

    at: datetime
    scope: str
    channel: str | None
    old: str | None
    new: str
    cause: str
    actor: str | None
    reason: str | None
    ip: str | None
    until: datetime | None = None


def history_of(profile: Profile) -> list[HistoryLine]:
    """Every status event of the profile and every change to its address's suppression, in
    the order they happened."""
    lines = [
        _status_line(event, slug)
        for event, slug in queries.events_with_scope_of_profile(profile.id)
    ]
    lines += [
        _suppression_line(event) for event in queries.suppression_events_of(profile.email_hash)
    ]
    return sorted(lines, key=lambda line: line.at)


def _status_line(event: StatusEvent, slug: str | None) -> HistoryLine:
    scope = "global" if event.channel is None else (slug or "(deleted resource)")
    return HistoryLine(
        event.occurred_at,
        scope,
        event.channel,
        event.old_status,
        event.new_status,
        event.cause,
        event.actor,
        event.reason,
        event.ip,
        event.suspended_until,
    )


def _suppression_line(event: SuppressionEvent) -> HistoryLine:
    old, new = (
        ("not suppressed", "suppressed")
        if event.action == "added"
        else ("suppressed", "not suppressed")
    )
    return HistoryLine(
        event.occurred_at,
        "suppression list",
        None,
        old,
        new,
        event.cause,
        event.actor,
        event.reason,
        None,
    )
