"""A profile as data: its statuses, subscriptions and whole history, for the API and for the
customer's own "download my data"."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app import queries
from app.models import Profile


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
