"""Demo data for ``make run``: a month of signups, confirmations, unsubscribes, bounces and
complaints, made through the same services as real traffic (with the times moved into the past),
so that the admin view has a true history to show on a fresh install. No email is queued."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from app import queries
from app.database import transactional, utcnow
from app.services import statuses
from app.services.statuses import CUSTOMER, Actor
from app.services.subscriptions import record_consent
from app.status import (
    Action,
    Cause,
    Channel,
    Complaint,
    Confirm,
    HardBounce,
    Pause,
    Signup,
    Unsubscribe,
)

# Addresses under a reserved name (RFC 2606): they can never reach a real mailbox.
DEMO_DOMAIN = "demo.example"
FIRST_NAMES = ["Anna", "Ben", "Chiara", "David", "Elif", "Farid", "Greta", "Hugo", "Ines", "Jonas"]
LAST_NAMES = ["Berg", "Costa", "Dubois", "Fischer", "Haddad", "Kowalski", "Lind", "Novak", "Okafor"]


@dataclass
class DemoReport:
    people: int = 0
    confirmed: int = 0
    unsubscribed: int = 0
    bounced: int = 0
    complained: int = 0
    paused: int = 0


def _visitor(rng: random.Random) -> Actor:
    """A customer's browser, as the event log records it."""
    return Actor(ip=f"192.0.2.{rng.randint(1, 254)}", user_agent="Mozilla/5.0 (demo data)")


@transactional
def _change(
    address: str,
    action: Action,
    slug: str | None,
    actor: Actor,
    when: datetime,
    name: str | None = None,
) -> None:
    """One step of a demo customer's history, in a transaction of its own."""
    statuses.change_status(address, action, slug, Channel.EMAIL, actor=actor, name=name, now=when)


@transactional
def _confirm(address: str, slug: str, actor: Actor, when: datetime) -> None:
    """A click on the confirmation link, with its proof of consent (no welcome email)."""
    result = statuses.change_status(address, Confirm(), slug, Channel.EMAIL, actor=actor, now=when)
    resource = queries.resource_by_slug(slug)
    if resource is None or result.profile_id is None:
        raise RuntimeError(f"the demo confirmation of {address} found no resource or profile")
    text = queries.current_consent_text(resource.id)
    if result.events:
        record_consent(
            result.profile_id,
            resource.id,
            Channel.EMAIL,
            consent_text_id=text.id if text else None,
            confirmed_at=when,
            ip=actor.ip,
            user_agent=actor.user_agent,
            form=f"subscribe/{slug}",
        )


def seed_history(
    slug: str, *, people: int = 120, days: int = 30, seed: int = 2026, now: datetime | None = None
) -> DemoReport:
    """``people`` demo profiles who signed up to ``slug`` over the last ``days`` days; most
    confirmed, and some later unsubscribed, bounced, complained or paused, as real lists go."""
    now = now or utcnow()
    # Made-up history that must look the same every run: a seeded generator, no secret in sight.
    rng = random.Random(seed)  # nosec B311
    report = DemoReport()
    resource = queries.resource_by_slug(slug)
    double_opt_in = resource.double_opt_in if resource is not None else True
    for number in range(people):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        address = f"{first}.{last}.{number}@{DEMO_DOMAIN}".lower()
        visitor = _visitor(rng)
        signed_up = now - timedelta(days=rng.uniform(0.5, days), minutes=rng.randint(0, 600))
        signup = Signup(double_opt_in)
        _change(address, signup, slug, visitor, signed_up, name=f"{first} {last}")
        report.people += 1
        if rng.random() > 0.82:
            continue  # never clicked the link: stays unconfirmed
        confirmed = signed_up + timedelta(minutes=rng.randint(1, 240))
        _confirm(address, slug, visitor, confirmed)
        report.confirmed += 1
        later = confirmed + (now - confirmed) * rng.uniform(0.2, 0.9)
        fate = rng.random()
        if fate < 0.10:
            _change(address, Unsubscribe(), slug, visitor, later)
            report.unsubscribed += 1
        elif fate < 0.13:
            _change(address, Unsubscribe(Cause.ONE_CLICK), None, CUSTOMER, later)
            report.unsubscribed += 1
        elif fate < 0.17:
            _change(address, HardBounce(), None, Actor(name="demo-sender"), later)
            report.bounced += 1
        elif fate < 0.19:
            _change(address, Complaint(), slug, Actor(name="demo-sender"), later)
            report.complained += 1
        elif fate < 0.22:
            _change(address, Pause(now + timedelta(days=30)), slug, visitor, later)
            report.paused += 1
    return report
