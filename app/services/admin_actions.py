"""What an admin changes in the admin view, each one transaction: a profile's or a subscription's
status, and the suppression list by hand.

The status changes go through ``statuses.change_status`` like every other change, with the
admin as actor and their reason in the event; before that, the status the admin asks for is
checked against ``status.admin_targets`` of the status as it is now, so a forged form cannot do
what the page does not offer.
"""

from __future__ import annotations

from datetime import datetime

from app import queries
from app.addresses import email_hash, normalize_email
from app.database import transactional, utcnow
from app.extensions import db
from app.models import Profile, Subscription, Suppression, SuppressionEvent
from app.services import statuses
from app.services.errors import InvalidInput, NotFound, TransitionRefused
from app.services.statuses import Actor, Result, suppression_history
from app.status import Cause, Channel, SetStatus, State, Status, admin_targets, effective

REASON_MAX = 500


class UnknownSubscription(NotFound):
    def __init__(self) -> None:
        super().__init__("no such subscription on this profile")


def clean_reason(reason: str | None, *, required: bool, what: str) -> str | None:
    """The admin's reason as the event stores it: one trimmed line of at most REASON_MAX
    characters, or None; ``required`` when the change must say why."""
    text = " ".join((reason or "").split())
    if len(text) > REASON_MAX:
        raise InvalidInput(f"a reason is at most {REASON_MAX} characters")
    if required and not text:
        raise InvalidInput(f"{what} needs a reason")
    return text or None


def _check_target(current: State | None, target: Status, now: datetime) -> None:
    """Refuse what the admin view does not offer for the status as it is at ``now``."""
    now_state = effective(current, now)
    now_status = now_state.status if now_state else None
    if target not in admin_targets(now_status):
        raise TransitionRefused(f"an admin cannot change {now_status or 'nothing'} to {target}")


@transactional
def change_status(
    profile_id: int,
    target: Status,
    *,
    subscription_id: int | None = None,
    suspended_until: datetime | None = None,
    actor: Actor,
) -> Result:
    """Set the global status of a profile, or the status of one of its subscriptions, as an
    admin. ``invalid`` needs a reason (``actor.reason``), ``suspended`` an end time in the
    future; anything ``admin_targets`` does not offer is refused and changes nothing."""
    reason = clean_reason(actor.reason, required=target is Status.INVALID, what="invalid")
    actor = Actor(actor.name, actor.ip, actor.user_agent, reason)
    found = queries.profile_by_id(profile_id)
    if found is None:
        raise NotFound("no such profile")
    # Lock the profile first, as every status change does, then read the time and the state.
    profile: Profile | None = queries.profile_by_email(found.email, for_update=True)
    if profile is None:  # erased between the two reads
        raise NotFound("no such profile")
    now = utcnow()
    subscription: Subscription | None = None
    if subscription_id is not None:
        subscription = queries.subscription_by_id(subscription_id)
        if subscription is None or subscription.profile_id != profile.id:
            raise UnknownSubscription()
        _check_target(subscription.state, target, now)
    else:
        _check_target(profile.state, target, now)
    action = SetStatus(target, Cause.ADMIN, suspended_until)
    return statuses.change_status(
        profile.email,
        action,
        subscription.resource if subscription else None,
        Channel(subscription.channel) if subscription else Channel.EMAIL,
        actor=actor,
        now=now,
    )


@transactional
def suppress_address(email: str, *, actor: Actor) -> Suppression:
    """Put an address on the suppression list by hand (rule 6 blocks every send to it), with the
    admin's reason in the list's history. The statuses of its profile stay as they are."""
    address = normalize_email(email)
    reason = clean_reason(actor.reason, required=True, what="suppressing an address")
    hashed = email_hash(address)
    if queries.suppression_of(hashed) is not None:
        raise InvalidInput(f"{address} is on the suppression list already")
    now = utcnow()
    row = Suppression(
        email_hash=hashed,
        email=address,
        reason=Cause.ADMIN.value,
        actor=actor.name,
        created_at=now,
    )
    db.session.add(row)
    db.session.add(_history(hashed, address, "added", reason, actor, now))
    return row


@transactional
def lift_suppression(hashed: str, *, actor: Actor) -> str | None:
    """Take an address off the suppression list, with the admin's reason in the list's history;
    returns the address. An erased address stays: its hash is all that is left of the erasure,
    and it is what keeps an import from bringing the person back (only their own confirmed
    opt-in lifts it, rule 5)."""
    reason = clean_reason(actor.reason, required=True, what="lifting a suppression")
    row = queries.suppression_of(hashed)
    if row is None:
        raise NotFound("this address is not on the suppression list")
    if row.email is None:
        raise TransitionRefused("an erased address stays on the suppression list")
    db.session.delete(row)
    db.session.add(_history(hashed, row.email, "lifted", reason, actor, utcnow()))
    return row.email


def _history(
    hashed: str, address: str | None, action: str, reason: str | None, actor: Actor, now: datetime
) -> SuppressionEvent:
    return suppression_history(
        hashed, address, action, Cause.ADMIN, Actor(actor.name, reason=reason), now
    )
