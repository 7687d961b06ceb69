"""Changing statuses: load a profile, apply one rule of status.py, write the result and its events.

Every status change in optin goes through ``change_status``, inside the write transaction of the
service that asked for it (which may write more in it: the email the change causes, its consent
record). Repeating an action changes nothing and records nothing (rule 9).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from app import queries
from app.addresses import email_hash, normalize_email
from app.database import transactional, utcnow, write_transaction
from app.extensions import db
from app.models import (
    Profile,
    Resource,
    StatusEvent,
    Subscription,
    Suppression,
    SuppressionEvent,
)
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
    Status,
    apply,
    parse_status,
    settle,
)

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
    # The rows as written, for the caller's transaction to go on with (the session holds only
    # weak references: asking it again for them would read them again).
    profile: Profile | None = field(default=None, compare=False, repr=False)
    subscription: Subscription | None = field(default=None, compare=False, repr=False)

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
    locked: Profile | None = None,
) -> Result:
    """Apply ``action`` to the profile of ``address`` (and its subscription to the resource on
    ``channel`` when a resource is named): settle its ended suspensions, ask status.py, write
    the new states, the suppression list and one event per changed status. Needs an open write
    transaction (``@transactional``) and a normalised address; raises a domain error when the
    input or the rules refuse the change, and the caller's transaction then writes nothing. The
    resource may be given by slug or, when the caller has it, itself; ``locked``: the profile of
    ``address``, when the caller has read it FOR UPDATE in this transaction (a link's service
    opens the link's profile so), which spares reading it again."""
    session = db.session()
    if isinstance(slug, Resource):
        if channel not in slug.channel_list:
            raise UnknownChannel(channel.value, slug.slug)
        resource: Resource | None = slug
    else:
        resource = resource_for(slug, channel) if slug is not None else None
    profile = (
        locked
        if locked is not None and locked.email == address
        else queries.profile_by_email(address, for_update=True)
    )
    # The clock is read once the profile is locked, so events are in the order they happened.
    now = now or utcnow()
    if profile is None and not isinstance(action, CREATING_ACTIONS):
        if isinstance(action, HardBounce | Complaint):
            # Rule 6 holds for addresses optin has never seen: they are suppressed too, and so
            # is an address whose owner complained before optin knew it.
            return _suppress_unknown(address, action.cause, actor, now)
        raise UnknownProfile(address)
    subscription = (
        queries.subscription_of(profile.id, resource.id, channel.value)
        if profile is not None and resource is not None
        else None
    )
    hashed = email_hash(address)
    suppression = queries.suppression_of(hashed)
    before = Snapshot(
        profile.state if profile else None,
        subscription.state if subscription else None,
        suppressed=suppression is not None,
        resource_named=resource is not None,
    )
    settled = settle(before, now)
    outcome = apply(action, settled.after, now)
    after = outcome.after

    if profile is None:
        if after.global_state is None:
            raise RuleError(f"{type(action).__name__} names no status for a new profile")
        profile = Profile(
            email=address, email_hash=hashed, name=name, locale=locale, created_at=now
        )
        profile.state = after.global_state
        session.add(profile)
        session.flush()
    # A signup names a new profile only: a stranger must not rename someone else's.
    elif after.global_state is not None and after.global_state != before.global_state:
        profile.state = after.global_state
    if resource is not None and after.subscription is not None:
        if subscription is None:
            subscription = Subscription(
                profile_id=profile.id,
                resource_id=resource.id,
                channel=channel.value,
                created_at=now,
            )
            session.add(subscription)
        if after.subscription != before.subscription:
            subscription.state = after.subscription
            # A pending confirmation link is for the subscription as it was: once anything
            # changes it (confirmed, unsubscribed, paused...), the link confirms nothing.
            subscription.confirm_nonce = None
        if outcome.newly_subscribed:
            subscription.confirmed_at = now

    if any(c.scope is Scope.GLOBAL for c in outcome.changes) and not isinstance(
        action, Signup | Confirm
    ):
        # A global stop (an unsubscribe from everything, a bounce, an admin's change) undoes
        # every signup still waiting for its click: their links must not lift it (rule 5).
        for pending in queries.subscriptions_of_profile(profile.id):
            pending.confirm_nonce = None

    if outcome.suppression_added and suppression is None:
        session.add(_suppression(hashed, address, action.cause, actor, now))
        session.add(suppression_history(hashed, address, "added", action.cause, actor, now))
    elif outcome.suppression_lifted and suppression is not None:
        session.delete(suppression)
        session.add(suppression_history(hashed, address, "lifted", action.cause, actor, now))

    for change in settled.changes:
        _record(change, profile, subscription, after, TIME, now)
    for change in outcome.changes:
        _record(change, profile, subscription, after, actor, now)
    session.flush()
    changes = settled.changes + outcome.changes
    return Result(
        profile.id,
        Outcome(before, after, changes, outcome.send_confirmation),
        changes,
        resource.id if resource else None,
        profile,
        subscription,
    )


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


def _record(
    change: Change,
    profile: Profile,
    subscription: Subscription | None,
    after: Snapshot,
    actor: Actor,
    now: datetime,
) -> None:
    """Append the event of one status change (rule 7)."""
    on_subscription = change.scope is Scope.SUBSCRIPTION
    state = after.subscription if on_subscription else after.global_state
    db.session.add(
        event := StatusEvent(
            profile_id=profile.id,
            resource_id=subscription.resource_id if on_subscription and subscription else None,
            channel=subscription.channel if on_subscription and subscription else None,
            old_status=change.old.value if change.old else None,
            new_status=change.new.value,
            suspended_until=state.suspended_until if state else None,
            cause=change.cause.value,
            actor=actor.name,
            reason=actor.reason,
            ip=actor.ip,
            user_agent=actor.user_agent,
            occurred_at=now,
        )
    )
    webhooks.queue_status_event(event)  # in this transaction, to each endpoint that wants it


def _suppress_unknown(address: str, cause: Cause, actor: Actor, now: datetime) -> Result:
    hashed = email_hash(address)
    before = Snapshot(None, suppressed=queries.suppression_of(hashed) is not None)
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
    with write_transaction():
        profile = queries.profile_by_email(email, for_update=True)
        if profile is None:
            return ()
        settled = settle(Snapshot(profile.state), now)
        if settled.changes:
            profile.state = settled.after.global_state  # type: ignore[assignment]  # settle() keeps a given state
            _record(settled.changes[0], profile, None, settled.after, TIME, now)
            changes += settled.changes
        for subscription in profile.subscriptions:
            settled = settle(Snapshot(profile.state, subscription.state, resource_named=True), now)
            ended = [c for c in settled.changes if c.scope is Scope.SUBSCRIPTION]
            if ended:
                subscription.state = settled.after.subscription  # type: ignore[assignment]  # settle() keeps a given state
                _record(ended[0], profile, subscription, settled.after, TIME, now)
                changes += ended
    return tuple(changes)
