"""The preference center and the data link (SPEC §2): what a customer changes on the page a
preference link opens (resources ticked or not, name, language, a pause, "unsubscribe from
everything"), the emails that bring such a link, and taking the data away or erasing it. Each
function is one transaction, as in services/subscriptions.py, whose signup and confirmation a
newly ticked resource goes through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import current_app

from app import outbox, queries
from app.addresses import normalize_email
from app.database import transactional, utcnow
from app.links import data_url, preferences_url
from app.models import Profile, Resource
from app.queries import status_rows
from app.services import erasure, statuses
from app.services.errors import UnknownResource
from app.services.profiles import profile_record
from app.services.statuses import Actor, Result
from app.services.subscriptions import GoneProfile, queue_confirmation, queue_welcome
from app.status import Cause, Channel, Pause, Signup, Status, Unsubscribe, effective

PAUSE_DAYS = (14, 30, 60, 90)


@dataclass(frozen=True)
class PreferenceRow:
    resource: Resource
    status: Status | None
    suspended_until: datetime | None = None

    @property
    def active(self) -> bool:
        """Ticked on the preference page: mail flows, waits for a click, or is paused."""
        return self.status in (Status.SUBSCRIBED, Status.UNCONFIRMED, Status.SUSPENDED)


@dataclass(frozen=True)
class Preferences:
    profile: Profile
    rows: list[PreferenceRow] = field(default_factory=list)


def preferences_of(profile_id: int, *, now: datetime | None = None) -> Preferences:
    """The preference center's rows: every public resource and every resource the profile has a
    subscription to (private ones included), with the status as it stands now."""
    moment = now or utcnow()
    profile = queries.profile_by_id(profile_id)
    if profile is None:
        raise GoneProfile()
    email_subscriptions = {
        s.resource_id: s
        for s in queries.subscriptions_of_profile(profile_id)
        if s.channel == Channel.EMAIL.value
    }
    resources = {r.id: r for r in queries.public_resources()}
    for held in email_subscriptions.values():
        resources.setdefault(held.resource_id, held.resource)
    rows = []
    for resource in sorted(resources.values(), key=lambda r: r.name.lower()):
        subscription = email_subscriptions.get(resource.id)
        state = effective(subscription.state, moment) if subscription else None
        rows.append(
            PreferenceRow(
                resource,
                state.status if state else None,
                state.suspended_until if state else None,
            )
        )
    return Preferences(profile, rows)


@transactional
def update_preferences(
    profile_id: int,
    *,
    wanted: set[str],
    name: str | None,
    locale: str | None,
    actor: Actor,
) -> None:
    """Save the preference page: name and language, and each resource ticked or not. A newly
    ticked resource goes through signup (and confirmation where it needs one); an unticked one
    is unsubscribed (cause `preferences`)."""
    current = preferences_of(profile_id)
    offered = {row.resource.slug for row in current.rows}
    unknown = wanted - offered
    if unknown:
        raise UnknownResource(sorted(unknown)[0])
    profile = queries.profile_by_id(profile_id)
    if profile is None:
        raise GoneProfile()
    profile.name = name or None
    profile.locale = locale or None
    moment = utcnow()
    to_confirm: list[Resource] = []
    for row in current.rows:
        slug = row.resource.slug
        if slug in wanted and not row.active:
            result = statuses.change_status(
                profile.email,
                Signup(double_opt_in=row.resource.double_opt_in),
                slug,
                Channel.EMAIL,
                actor=actor,
                now=moment,
            )
            if result.outcome.send_confirmation:
                to_confirm.append(row.resource)
            elif result.outcome.newly_subscribed:
                queue_welcome(profile, row.resource)
        elif slug not in wanted and row.active:
            statuses.change_status(
                profile.email,
                Unsubscribe(Cause.PREFERENCES),
                slug,
                Channel.EMAIL,
                actor=actor,
                now=moment,
            )
    if to_confirm:
        queue_confirmation(profile, to_confirm, Channel.EMAIL, "preferences", moment)


@transactional
def pause_all(profile_id: int, days: int, *, actor: Actor, now: datetime | None = None) -> datetime:
    """Suspend every subscribed subscription for ``days`` (14, 30, 60 or 90); each comes back by
    itself afterwards."""
    if days not in PAUSE_DAYS:
        raise ValueError(f"a pause is {', '.join(map(str, PAUSE_DAYS))} days")
    moment = now or utcnow()
    until = moment + timedelta(days=days)
    profile = queries.profile_by_id(profile_id)
    if profile is None:
        raise GoneProfile()
    for subscription in queries.subscriptions_of_profile(profile_id):
        if subscription.status in (Status.SUBSCRIBED.value, Status.SUSPENDED.value):
            statuses.change_status(
                profile.email,
                Pause(until, Cause.PREFERENCES),
                subscription.resource.slug,
                Channel(subscription.channel),
                actor=actor,
                now=moment,
            )
    return until


@transactional
def unsubscribe_everything(profile_id: int, *, actor: Actor) -> Result:
    """The preference page's "unsubscribe from everything": the global status (rule 2)."""
    profile = queries.profile_by_id(profile_id)
    if profile is None:
        raise GoneProfile()
    return statuses.change_status(
        profile.email, Unsubscribe(Cause.PREFERENCES), None, Channel.EMAIL, actor=actor
    )


def export_data(profile_id: int) -> dict[str, Any]:
    """Everything optin holds about a profile, as JSON-ready data ("download my data")."""
    profile = queries.profile_by_id(profile_id)
    if profile is None:
        raise GoneProfile()
    return profile_record(profile, personal=True)


def erase(profile_id: int, *, actor: Actor) -> None:
    """Delete the profile, its subscriptions and consent records, remove the address and the
    words about the person wherever else they are stored (events, the suppression list's
    history, import rejections, the outbox, saved mail), and keep only the address's hash on
    the suppression list, so no import brings it back (SPEC §2; ``services/erasure.py``)."""
    hashed = _erase_rows(profile_id, actor=actor)
    erasure.forget_files(hashed)  # files are not rolled back: only once the erasure committed


@transactional
def _erase_rows(profile_id: int, *, actor: Actor) -> str:
    profile = queries.profile_by_id(profile_id)
    if profile is None:
        raise GoneProfile()
    return erasure.forget_in_transaction(profile, actor=actor)


@transactional
def request_preferences_link(email: str, *, now: datetime | None = None) -> None:
    """Email a preference link to a known address; nothing for an unknown one. The caller answers
    the same either way."""
    address = normalize_email(email)
    moment = now or utcnow()
    profile = status_rows.profile_row(address)
    if profile is None:
        return
    recent = queries.emails_sent_to_since(address, "preferences_link", moment - timedelta(days=1))
    if recent >= current_app.config["CONFIRMATIONS_PER_ADDRESS_PER_DAY"]:
        return
    outbox.enqueue(
        address,
        "preferences_link",
        profile_id=profile.id,
        preferences_link=preferences_url(profile.id, profile.link_key),
        # No name: anyone may ask for this email to any address (and may have typed it).
        locale=profile.locale,
    )


@transactional
def request_data_link(profile_id: int, *, now: datetime | None = None) -> None:
    """Email the profile a short-lived link to download or erase its data (SPEC §2, issue 9):
    the long-lived links travel in headers that mailbox providers and forwarded mail see, so
    personal data needs proof that the person holds the mailbox now. At most
    CONFIRMATIONS_PER_ADDRESS_PER_DAY a day; the caller answers the same either way."""
    moment = now or utcnow()
    profile = queries.profile_by_id(profile_id)
    if profile is None:
        raise GoneProfile()
    since = moment - timedelta(days=1)
    recent = queries.emails_sent_to_since(profile.email, "data_link", since)
    if recent >= current_app.config["CONFIRMATIONS_PER_ADDRESS_PER_DAY"]:
        return
    outbox.enqueue(
        profile.email,
        "data_link",
        profile_id=profile.id,
        data_link=data_url(profile.id, profile.link_key),
        minutes=current_app.config["DATA_LINK_MAX_AGE"] // 60,
        locale=profile.locale,
    )
