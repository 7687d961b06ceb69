"""The reads of a status change (``services/statuses.change_status``) and of the link services
around it: the profile under its lock, its subscriptions and the suppression, as plain rows
rather than ORM entities.

A status change reads these on every signup, confirmation and unsubscribe, and writes what
changed with Core statements of its own: an entity's load, identity map and unit of work cost
several times the statement they run. The statements are built once, here, so each call only
binds its values and finds the compiled form in SQLAlchemy's cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import bindparam, exists, select

from app.extensions import db
from app.models import Profile, Subscription, Suppression, WebhookEndpoint, state_of
from app.status import State

_profiles = Profile.__table__.c
_subscriptions = Subscription.__table__.c
_suppressions = Suppression.__table__.c


class ProfileRow(NamedTuple):
    """What a status change and the emails it queues need of a profile."""

    id: int
    email: str
    name: str | None
    locale: str | None
    link_key: str
    legacy_links: bool
    state: State

    @classmethod
    def of(cls, profile: Profile) -> ProfileRow:
        """The row of a profile entity the caller has loaded (and locked) already."""
        return cls(
            profile.id,
            profile.email,
            profile.name,
            profile.locale,
            profile.link_key,
            profile.legacy_links,
            profile.state,
        )


class SubscriptionRow(NamedTuple):
    id: int
    resource_id: int
    channel: str
    # The nonce of the signup request whose confirmation link is out (models.Subscription).
    confirm_nonce: str | None
    state: State


_PROFILE = select(
    _profiles.id,
    _profiles.email,
    _profiles.name,
    _profiles.locale,
    _profiles.link_key,
    _profiles.legacy_links,
    _profiles.global_status,
    _profiles.suspended_until,
    _profiles.resume_status,
)
_PROFILE_BY_EMAIL = _PROFILE.where(_profiles.email == bindparam("email"))
_LOCKED_PROFILE_BY_EMAIL = _PROFILE_BY_EMAIL.with_for_update()
_PROFILE_BY_ID = _PROFILE.where(_profiles.id == bindparam("profile_id"))
_LOCKED_PROFILE_BY_ID = _PROFILE_BY_ID.with_for_update()
_SUBSCRIPTIONS = select(
    _subscriptions.id,
    _subscriptions.resource_id,
    _subscriptions.channel,
    _subscriptions.confirm_nonce,
    _subscriptions.status,
    _subscriptions.suspended_until,
    _subscriptions.resume_status,
)
_SUBSCRIPTION = _SUBSCRIPTIONS.where(
    _subscriptions.profile_id == bindparam("profile_id"),
    _subscriptions.resource_id == bindparam("resource_id"),
    _subscriptions.channel == bindparam("channel"),
)
_SUBSCRIPTIONS_OF_PROFILE = _SUBSCRIPTIONS.where(
    _subscriptions.profile_id == bindparam("profile_id")
).order_by(_subscriptions.resource_id, _subscriptions.channel)
# A profile and its subscriptions in one statement (one row per subscription; one row with
# NULLs on the subscription's side when it has none). Only for reads without a lock: a FOR UPDATE
# waiting on the profile would re-read the profile's row alone, not the subscriptions a
# concurrent change made, so a status change locks the profile first and reads them after.
_PROFILE_AND_SUBSCRIPTIONS_BY_ID = (
    select(*_PROFILE.selected_columns, *_SUBSCRIPTIONS.selected_columns)
    .select_from(
        Profile.__table__.outerjoin(
            Subscription.__table__, _subscriptions.profile_id == _profiles.id
        )
    )
    .where(_profiles.id == bindparam("profile_id"))
    .order_by(_subscriptions.resource_id, _subscriptions.channel)
)
_SUBSCRIPTION_COLUMNS_FROM = len(_PROFILE.selected_columns)
_SUPPRESSION_AND_ANY_ENDPOINT = select(
    exists().where(_suppressions.email_hash == bindparam("email_hash")),
    exists().where(WebhookEndpoint.__table__.c.enabled.is_(True)),
)


def locked_profile_row(email: str) -> ProfileRow | None:
    """The profile of a normalised address, its row locked until the commit (FOR UPDATE on
    PostgreSQL; SQLite's write transaction holds the whole database already)."""
    return _profile_row(db.session.execute(_LOCKED_PROFILE_BY_EMAIL, {"email": email}).first())


def profile_row(email: str) -> ProfileRow | None:
    """The profile of a normalised address, read for what an email to it needs (not locked)."""
    return _profile_row(db.session.execute(_PROFILE_BY_EMAIL, {"email": email}).first())


def profile_row_by_id(profile_id: int) -> ProfileRow | None:
    """The profile with this id (a link's), read for the page the link opens (not locked)."""
    return _profile_row(db.session.execute(_PROFILE_BY_ID, {"profile_id": profile_id}).first())


def locked_profile_row_by_id(profile_id: int) -> ProfileRow | None:
    """The profile with this id (a link's), its row locked until the commit."""
    params = {"profile_id": profile_id}
    return _profile_row(db.session.execute(_LOCKED_PROFILE_BY_ID, params).first())


def subscription_row(profile_id: int, resource_id: int, channel: str) -> SubscriptionRow | None:
    """A profile's subscription to a resource on a channel (read under the profile's lock)."""
    params = {"profile_id": profile_id, "resource_id": resource_id, "channel": channel}
    row = db.session.execute(_SUBSCRIPTION, params).first()
    return _subscription_row(row) if row is not None else None


def subscription_rows_of(profile_id: int) -> list[SubscriptionRow]:
    """Every subscription of a profile, by resource and channel (what a confirmation link may
    confirm, and whether its signup is in force)."""
    rows = db.session.execute(_SUBSCRIPTIONS_OF_PROFILE, {"profile_id": profile_id})
    return [_subscription_row(row) for row in rows]


def profile_and_subscription_rows(
    profile_id: int,
) -> tuple[ProfileRow | None, list[SubscriptionRow]]:
    """The profile with this id (a link's) and every one of its subscriptions, by resource and
    channel, in one statement (not locked): what the page of a confirmation link shows."""
    rows = db.session.execute(_PROFILE_AND_SUBSCRIPTIONS_BY_ID, {"profile_id": profile_id}).all()
    if not rows:
        return None, []
    first = _SUBSCRIPTION_COLUMNS_FROM
    held = [_subscription_row(row[first:]) for row in rows if row[first] is not None]
    return _profile_row(rows[0]), held


def _profile_row(row: Sequence[Any] | None) -> ProfileRow | None:
    if row is None:
        return None
    state = state_of(row[6], row[7], row[8])
    return ProfileRow(row[0], row[1], row[2], row[3], row[4], row[5], state)


def _subscription_row(row: Sequence[Any]) -> SubscriptionRow:
    return SubscriptionRow(row[0], row[1], row[2], row[3], state_of(row[4], row[5], row[6]))


def suppression_and_any_endpoint(email_hash: str) -> tuple[bool, bool]:
    """Whether the address of this hash is on the suppression list (rule 6), and whether any
    webhook endpoint is enabled: the two questions a status change asks of tables other than
    its profile's, in one statement (with no endpoint, its events then queue nothing and no
    second statement asks which endpoints want them)."""
    row = db.session.execute(_SUPPRESSION_AND_ANY_ENDPOINT, {"email_hash": email_hash}).one()
    return bool(row[0]), bool(row[1])
