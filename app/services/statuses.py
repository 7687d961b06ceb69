"""Changing statuses: load a profile, apply one rule of status.py, write the result and its events.

Every status change in optin goes through ``change_status``, inside the write transaction of the
service that asked for it (which may write more in it: the email the change causes, its consent
record). Repeating an action changes nothing and records nothing (rule 9).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, inspect, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from app import queries
from app.addresses import email_hash, normalize_email, search_key
from app.database import transactional, utcnow, write_transaction
from app.extensions import db
from app.models import (
    Profile,
    Resource,
    StatusEvent,
    Subscription,
    Suppression,
    SuppressionEvent,
    state_values,
)
from app.queries import status_rows
from app.queries.status_rows import ProfileRow, SubscriptionRow
from app.services.errors import UnknownChannel, UnknownProfile, UnknownResource
from app.services.webhooks import queueing as webhooks
from app.status import (
    Action,
    Cause,
    Change,
    Channel,
    Complaint,
    Confirm,
    HardBounce,
    Outcome,
    RuleError,
    Scope,
    SetStatus,
    Signup,
    Snapshot,
    State,
    Status,
    apply,
    parse_status,
    settle,
)
from app.tokens import new_link_key

# Actions that may create the profile they are about; the others need one to exist.
CREATING_ACTIONS = (Signup, SetStatus)


@dataclass(frozen=True)
class Actor:
    """Who made a change and from where, as the event log records it. No name: the customer."""

    name: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    reason: str | None = None


CUSTOMER = Actor()
TIME = Actor(name="system")


@dataclass(frozen=True)
class Result:
    """What a service call did: the profile, the settled and the new states, the events written."""

    profile_id: int | None
    outcome: Outcome
    events: tuple[Change, ...] = field(default_factory=tuple)
    resource_id: int | None = None
    # The rows as written, for the caller's transaction to go on with (the emails it queues, the
    # proof of consent) without reading them again.
    profile: ProfileRow | None = field(default=None, compare=False, repr=False)
    subscription: SubscriptionRow | None = field(default=None, compare=False, repr=False)

    @property
    def changed(self) -> bool:
        return bool(self.events) or self.outcome.after.suppressed != self.outcome.before.suppressed


def parse_channel(value: str | Channel) -> Channel:
    try:
        return Channel(value)
    except ValueError:
        raise UnknownChannel(str(value)) from None


def resource_for(slug: str, channel: Channel) -> Resource:
    """The resource named by ``slug``, checked to use ``channel`` (the process's copy: it is
    read for its id and flags, never changed)."""
    resource = queries.cached_resource_by_slug(slug)
    if resource is None:
        raise UnknownResource(slug)
    if channel not in resource.channel_list:
        raise UnknownChannel(channel.value, slug)
    return resource


def change_status(
    address: str,
    action: Action,
    slug: str | Resource | None,
    channel: Channel,
    *,
    actor: Actor = CUSTOMER,
    name: str | None = None,
    locale: str | None = None,
    now: datetime | None = None,
    locked: Profile | ProfileRow | None = None,
    locked_subscription: SubscriptionRow | None = None,
) -> Result:
    """Apply ``action`` to the profile of ``address`` (and its subscription to the resource on
    ``channel`` when a resource is named): settle its ended suspensions, ask status.py, write
    the new states, the suppression list and one event per changed status. Needs an open write
    transaction (``@transactional``) and a normalised address; raises a domain error when the
    input or the rules refuse the change, and the caller's transaction then writes nothing. The
    resource may be given by slug or, when the caller has it, itself; ``locked``: the profile of
    ``address`` (its entity or its row), when the caller has read it FOR UPDATE in this
    transaction (a link's service opens the link's profile so), which spares reading it again;
    ``locked_subscription``: likewise its subscription to the resource on ``channel``.

    The rows are read and written with Core statements (``queries/status_rows.py``,
    ``_insert``, ``_update``): the ORM's unit of work cost more than the statements it ran. An
    entity of a changed row that the session holds gets the new values too (``_update``)."""
    if isinstance(slug, Resource):
        if channel not in slug.channel_list:
            raise UnknownChannel(channel.value, slug.slug)
        resource: Resource | None = slug
    else:
        resource = resource_for(slug, channel) if slug is not None else None
    if isinstance(locked, Profile):
        locked = ProfileRow.of(locked)
    given = locked is not None and locked.email == address
    profile = locked if given else status_rows.locked_profile_row(address)
    # The clock is read once the profile is locked, so events are in the order they happened.
    now = now or utcnow()
    if profile is None and not isinstance(action, CREATING_ACTIONS):
        if isinstance(action, HardBounce | Complaint):
            # Rule 6 holds for addresses optin has never seen: they are suppressed too, and so
            # is an address whose owner complained before optin knew it.
            return _suppress_unknown(address, action.cause, actor, now)
        raise UnknownProfile(address)
    subscription: SubscriptionRow | None = None
    if profile is not None and resource is not None:
        held = locked_subscription
        subscription = (
            held
            if given and held and (held.resource_id, held.channel) == (resource.id, channel.value)
            else status_rows.subscription_row(profile.id, resource.id, channel.value)
        )
    hashed = email_hash(address)
    suppressed, any_endpoint = status_rows.suppression_and_any_endpoint(hashed)
    if not any_endpoint:
        webhooks.note_no_endpoint()
    before = Snapshot(
        profile.state if profile else None,
        subscription.state if subscription else None,
        suppressed=suppressed,
        resource_named=resource is not None,
    )
    settled = settle(before, now)
    outcome = apply(action, settled.after, now)
    after = outcome.after

    if profile is None:
        if after.global_state is None:
            raise RuleError(f"{type(action).__name__} names no status for a new profile")
        profile = _insert_profile(address, hashed, name, locale, after.global_state, now)
    # A signup names a new profile only: a stranger must not rename someone else's.
    elif after.global_state is not None and after.global_state != before.global_state:
        _update(Profile, profile.id, state_values(after.global_state))
        profile = profile._replace(state=after.global_state)
    if resource is not None and after.subscription is not None:
        confirmed_at = now if outcome.newly_subscribed else None
        if subscription is None:
            subscription = SubscriptionRow(
                _insert_subscription(
                    profile.id, resource.id, channel, after.subscription, confirmed_at, now
                ),
                resource.id,
                channel.value,
                None,
                after.subscription,
            )
        else:
            values: dict[str, Any] = {}
            if after.subscription != before.subscription:
                values.update(state_values(after.subscription))
                # A pending confirmation link is for the subscription as it was: once anything
                # changes it (confirmed, unsubscribed, paused...), the link confirms nothing.
                values["confirm_nonce"] = None
            if confirmed_at is not None:
                values["confirmed_at"] = confirmed_at
            if values:
                _update(Subscription, subscription.id, values)
                subscription = subscription._replace(
                    state=after.subscription,
                    confirm_nonce=values.get("confirm_nonce", subscription.confirm_nonce),
                )

    if any(c.scope is Scope.GLOBAL for c in outcome.changes) and not isinstance(
        action, Signup | Confirm
    ):
        # A global stop (an unsubscribe from everything, a bounce, an admin's change) undoes
        # every signup still waiting for its click: their links must not lift it (rule 5).
        _drop_pending_confirmations(profile.id)

    if outcome.suppression_added and not suppressed:
        db.session.add(_suppression(hashed, address, action.cause, actor, now))
        db.session.add(suppression_history(hashed, address, "added", action.cause, actor, now))
    elif outcome.suppression_lifted and suppressed:
        db.session.execute(_DELETE_SUPPRESSION, {"email_hash": hashed})
        lifted = db.session.identity_map.get(identity_key(Suppression, hashed))
        if lifted is not None:
            db.session.expunge(lifted)  # the row is gone: the session must not hand it out again
        db.session.add(suppression_history(hashed, address, "lifted", action.cause, actor, now))

    subject = (resource.id, channel.value) if resource is not None else None
    _write_events(
        [_event_row(change, profile.id, subject, after, TIME, now) for change in settled.changes]
        + [_event_row(change, profile.id, subject, after, actor, now) for change in outcome.changes]
    )
    changes = settled.changes + outcome.changes
    return Result(
        profile.id,
        Outcome(before, after, changes, outcome.send_confirmation),
        changes,
        resource.id if resource else None,
        profile,
        subscription,
    )


# The statements of change_status's writes, built once (see queries/status_rows.py).
_profiles = Profile.__table__
_subscriptions = Subscription.__table__
_events = StatusEvent.__table__
_INSERT_PROFILE = insert(_profiles).returning(_profiles.c.id)
_INSERT_SUBSCRIPTION = insert(_subscriptions).returning(_subscriptions.c.id)
_INSERT_EVENTS = insert(_events)
_INSERT_EVENTS_WITH_IDS = insert(_events).returning(_events.c.id, sort_by_parameter_order=True)
_UPDATE_BY_ID = {
    model: update(model.__table__).where(model.__table__.c.id == bindparam("row_id"))
    for model in (Profile, Subscription)
}
_DROP_PENDING_CONFIRMATIONS = update(_subscriptions).where(
    _subscriptions.c.profile_id == bindparam("row_id"),
    _subscriptions.c.confirm_nonce.is_not(None),
)
_DELETE_SUPPRESSION = delete(Suppression.__table__).where(
    Suppression.__table__.c.email_hash == bindparam("email_hash")
)


def _insert_profile(
    address: str, hashed: str, name: str | None, locale: str | None, state: State, now: datetime
) -> ProfileRow:
    link_key = new_link_key()
    row = {
        "email": address,
        "email_hash": hashed,
        "name": name,
        "locale": locale,
        "link_key": link_key,
        # What the ORM's validator on Profile sets from the email and the name.
        "email_key": search_key(address),
        "name_key": search_key(name),
        "created_at": now,
        **_columns(Profile, state_values(state)),
    }
    profile_id: int = db.session.execute(_INSERT_PROFILE, row).scalar_one()
    return ProfileRow(profile_id, address, name, locale, link_key, False, state)


def _insert_subscription(
    profile_id: int,
    resource_id: int,
    channel: Channel,
    state: State,
    confirmed_at: datetime | None,
    now: datetime,
) -> int:
    row = {
        "profile_id": profile_id,
        "resource_id": resource_id,
        "channel": channel.value,
        "created_at": now,
        "confirmed_at": confirmed_at,
        **state_values(state),
    }
    subscription_id: int = db.session.execute(_INSERT_SUBSCRIPTION, row).scalar_one()
    return subscription_id


def _columns(model: type[Profile | Subscription], values: dict[str, Any]) -> dict[str, Any]:
    """Values by attribute name, keyed by their table's column names (a profile's ``status``
    is its ``global_status`` column)."""
    columns = model.__mapper__.columns
    return {columns[name].key: value for name, value in values.items()}


def _update(model: type[Profile | Subscription], row_id: int, values: dict[str, Any]) -> None:
    """Write ``values`` (by attribute name) into one row with Core, and into the session's entity
    of that row if it holds one, as its loaded state: the rest of the transaction then reads what
    was written (a second change of the same profile, a page that answers), and the unit of work
    has nothing to write again."""
    values = {**values, "updated_at": utcnow()}  # what the ORM's onupdate would have set
    db.session.execute(_UPDATE_BY_ID[model], {"row_id": row_id, **_columns(model, values)})
    held = db.session.identity_map.get(identity_key(model, row_id))
    if held is not None:
        for name, value in values.items():
            set_committed_value(held, name, value)


def _drop_pending_confirmations(profile_id: int) -> None:
    """Take the nonce off every subscription of the profile that waits for its click."""
    stamp = utcnow()
    db.session.execute(
        _DROP_PENDING_CONFIRMATIONS,
        {"row_id": profile_id, "confirm_nonce": None, "updated_at": stamp},
    )
    for held in list(db.session.identity_map.values()):
        # Only what is loaded: an expired entity reads the row again when it is next used.
        loaded = inspect(held).dict
        if isinstance(held, Subscription) and loaded.get("profile_id") == profile_id:
            set_committed_value(held, "confirm_nonce", None)
            set_committed_value(held, "updated_at", stamp)


def _suppression(
    hashed: str, address: str, cause: Cause, actor: Actor, now: datetime
) -> Suppression:
    return Suppression(
        email_hash=hashed, email=address, reason=cause.value, actor=actor.name, created_at=now
    )


def suppression_history(
    hashed: str, address: str | None, action: str, cause: Cause, actor: Actor, now: datetime
) -> SuppressionEvent:
    """The suppression list's history line (``action`` "added" or "lifted"): the list keeps
    only its current rows, so who put an address there or took it off, and why, is here."""
    return SuppressionEvent(
        email_hash=hashed,
        email=address,
        action=action,
        cause=cause.value,
        reason=actor.reason,
        actor=actor.name,
        occurred_at=now,
    )


def _event_row(
    change: Change,
    profile_id: int,
    subject: tuple[int, str] | None,
    after: Snapshot,
    actor: Actor,
    now: datetime,
) -> dict[str, Any]:
    """The status_events row of one status change (rule 7); ``subject``: the resource id and
    channel of the subscription, when the change may be one of a subscription."""
    on_subscription = change.scope is Scope.SUBSCRIPTION
    state = after.subscription if on_subscription else after.global_state
    resource_id, channel = subject if on_subscription and subject else (None, None)
    return {
        "profile_id": profile_id,
        "resource_id": resource_id,
        "channel": channel,
        "old_status": change.old.value if change.old else None,
        "new_status": change.new.value,
        "suspended_until": state.suspended_until if state else None,
        "cause": change.cause.value,
        "actor": actor.name,
        "reason": actor.reason,
        "ip": actor.ip,
        "user_agent": actor.user_agent,
        "occurred_at": now,
    }


def _write_events(rows: list[dict[str, Any]]) -> None:
    """Append the events in one statement, and queue each one's webhook deliveries in this
    transaction, to each endpoint that wants it (their ids are read back only then). Events
    are only ever appended; on PostgreSQL the feed's trigger fills in each row's place."""
    if not rows:
        return
    if not webhooks.any_endpoint():
        db.session.execute(_INSERT_EVENTS, rows)
        return
    ids = db.session.execute(_INSERT_EVENTS_WITH_IDS, rows).scalars().all()
    for event_id, row in zip(ids, rows, strict=True):
        webhooks.queue_status_event(
            event_id, row["profile_id"], row["resource_id"], row["channel"], row["new_status"]
        )


def _suppress_unknown(address: str, cause: Cause, actor: Actor, now: datetime) -> Result:
    hashed = email_hash(address)
    before = Snapshot(None, suppressed=status_rows.suppression_and_any_endpoint(hashed)[0])
    if not before.suppressed:
        db.session.add(_suppression(hashed, address, cause, actor, now))
        db.session.add(suppression_history(hashed, address, "added", cause, actor, now))
    return Result(None, Outcome(before, Snapshot(None, suppressed=True), ()))


# --- The one change a view asks for by name ----------------------------------------------------


@transactional
def set_status(
    email: str,
    status: str | int | Status,
    *,
    resource: str | None = None,
    channel: str | Channel = Channel.EMAIL,
    suspended_until: datetime | None = None,
    cause: Cause = Cause.ADMIN,
    consent_proof: bool = False,
    actor: Actor = CUSTOMER,
    now: datetime | None = None,
) -> Result:
    """An explicit status from the API (global without a resource), in its own transaction."""
    action = SetStatus(parse_status(status), cause, suspended_until, consent_proof)
    return change_status(
        normalize_email(email), action, resource, parse_channel(channel), actor=actor, now=now
    )


def settle_profile(email: str, *, now: datetime | None = None) -> tuple[Change, ...]:
    """Record the end of every suspension of this profile, global or of a subscription, that has
    reached its end time (cause `suspension_ended`)."""
    now = now or utcnow()
    changes: list[Change] = []
    events: list[dict[str, Any]] = []
    with write_transaction():
        profile = queries.profile_by_email(email, for_update=True)
        if profile is None:
            return ()
        settled = settle(Snapshot(profile.state), now)
        if settled.changes:
            profile.state = settled.after.global_state  # type: ignore[assignment]  # settle() keeps a given state
            events.append(
                _event_row(settled.changes[0], profile.id, None, settled.after, TIME, now)
            )
            changes += settled.changes
        for subscription in profile.subscriptions:
            settled = settle(Snapshot(profile.state, subscription.state, resource_named=True), now)
            ended = [c for c in settled.changes if c.scope is Scope.SUBSCRIPTION]
            if ended:
                subscription.state = settled.after.subscription  # type: ignore[assignment]  # settle() keeps a given state
                subject = (subscription.resource_id, subscription.channel)
                events.append(_event_row(ended[0], profile.id, subject, settled.after, TIME, now))
                changes += ended
        _write_events(events)
    return tuple(changes)
