"""Status changes by name, each in a transaction of its own: the shorthand tests use to put a
profile where a test needs it. Production code changes a status inside its service's transaction
with ``statuses.change_status``; these go through the same door."""

from __future__ import annotations

from datetime import datetime

from app import queries
from app.addresses import normalize_email
from app.database import transactional
from app.services.statuses import CUSTOMER, Actor, Result, change_status, parse_channel
from app.services.statuses import set_status as set_status
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


@transactional
def apply_action(
    email: str,
    action: Action,
    *,
    resource: str | None = None,
    channel: str | Channel = Channel.EMAIL,
    actor: Actor = CUSTOMER,
    name: str | None = None,
    now: datetime | None = None,
) -> Result:
    """Apply ``action`` to the profile of ``email`` in a transaction of its own."""
    return change_status(
        normalize_email(email),
        action,
        resource,
        parse_channel(channel),
        actor=actor,
        name=name,
        now=now,
    )


def signup(
    email: str,
    resource: str,
    *,
    channel: str | Channel = Channel.EMAIL,
    name: str | None = None,
    actor: Actor = CUSTOMER,
    now: datetime | None = None,
) -> Result:
    """Rule 4: sign an address up to a resource; single or double opt-in as the resource says."""
    found = queries.resource_by_slug(resource)
    double_opt_in = found.double_opt_in if found is not None else True
    return apply_action(
        email,
        Signup(double_opt_in),
        resource=resource,
        channel=channel,
        actor=actor,
        name=name,
        now=now,
    )


def confirm(
    email: str,
    resource: str | None,
    *,
    channel: str | Channel = Channel.EMAIL,
    actor: Actor = CUSTOMER,
    now: datetime | None = None,
) -> Result:
    """Rule 5: a confirmed opt-in."""
    return apply_action(email, Confirm(), resource=resource, channel=channel, actor=actor, now=now)


def unsubscribe(
    email: str,
    resource: str | None,
    *,
    cause: Cause = Cause.UNSUBSCRIBE_LINK,
    channel: str | Channel = Channel.EMAIL,
    actor: Actor = CUSTOMER,
    now: datetime | None = None,
) -> Result:
    """Rule 2: no resource means the global status; a resource means that subscription only."""
    return apply_action(
        email, Unsubscribe(cause), resource=resource, channel=channel, actor=actor, now=now
    )


def pause(
    email: str,
    resource: str | None,
    until: datetime,
    *,
    cause: Cause = Cause.PREFERENCES,
    channel: str | Channel = Channel.EMAIL,
    actor: Actor = CUSTOMER,
    now: datetime | None = None,
) -> Result:
    """Suspend until ``until``; the status before returns by itself afterwards."""
    return apply_action(
        email, Pause(until, cause), resource=resource, channel=channel, actor=actor, now=now
    )


def hard_bounce(email: str, *, actor: Actor = CUSTOMER, now: datetime | None = None) -> Result:
    """Rule 6: global `hardbounced` and the address on the suppression list."""
    return apply_action(email, HardBounce(), actor=actor, now=now)


def complaint(
    email: str,
    resource: str | None = None,
    *,
    channel: str | Channel = Channel.EMAIL,
    actor: Actor = CUSTOMER,
    now: datetime | None = None,
) -> Result:
    """A spam complaint: global `complainer`, and the subscription too when a resource is named."""
    return apply_action(
        email, Complaint(), resource=resource, channel=channel, actor=actor, now=now
    )
