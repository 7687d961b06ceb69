"""The status model of SPEC §1: statuses, the rules that change them, and the send decision.

This module is pure: the standard library only, no Flask, no database, no clock of its own (every
function that needs the time is given ``now``). Everything else in optin asks it; nothing else
decides a status. Each rule of SPEC §1 is marked below with its number.

A *state* is one status with its suspension details, for the profile (the global status) or for one
subscription. ``apply`` takes the states before an action and returns the states after it; the
service layer writes the difference and one event per changed status (rule 7).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum


class Status(StrEnum):
    """The seven statuses, shared by the global status and every subscription status."""

    SUBSCRIBED = "subscribed"
    UNSUBSCRIBED = "unsubscribed"
    COMPLAINER = "complainer"
    HARDBOUNCED = "hardbounced"
    UNCONFIRMED = "unconfirmed"
    SUSPENDED = "suspended"
    INVALID = "invalid"


class Cause(StrEnum):
    """Why a status changed; every event names one (rule 7)."""

    SIGNUP = "signup"
    CONFIRM = "confirm"
    UNSUBSCRIBE_LINK = "unsubscribe_link"
    ONE_CLICK = "one_click"
    # A mail to the mailto of List-Unsubscribe (RFC 2369), by SMTP, LMTP or a provider's hook.
    MAILTO = "mailto"
    PREFERENCES = "preferences"
    ADMIN = "admin"
    API = "api"
    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    IMPORT = "import"
    SUSPENSION_ENDED = "suspension_ended"


class Channel(StrEnum):
    """The channels a resource can use."""

    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"


# optin itself sends email only (SMS and push are the sending platform's): the send-time check
# of its outbox reads a resource's subscription on this channel, never one on another channel.
OUTBOX_CHANNEL = Channel.EMAIL


class Scope(StrEnum):
    """What a status is of: the profile's global status, or its subscription to one resource
    on one channel (rule 2: the resource named, or not, decides which)."""

    GLOBAL = "global"
    SUBSCRIPTION = "subscription"


# Altcraft's numeric statuses, accepted on input for drop-in use with its API (SPEC §3).
ALTCRAFT_STATUS_NUMBERS: dict[int, Status] = {
    0: Status.SUBSCRIBED,
    1: Status.UNSUBSCRIBED,
    2: Status.COMPLAINER,
    3: Status.HARDBOUNCED,
    4: Status.UNCONFIRMED,
    5: Status.SUSPENDED,
    6: Status.INVALID,
}
_STATUS_ALIASES = {"complained": Status.COMPLAINER}

# Statuses that a customer or a mail provider put there. Only a confirmed opt-in (rule 5) or an
# admin takes a status out of this set; an import or an API call never does, so an old export can
# never resurrect an unsubscribe.
STOPPED = frozenset({Status.UNSUBSCRIBED, Status.COMPLAINER, Status.HARDBOUNCED, Status.INVALID})
# What a confirmed opt-in lifts (rule 5). `invalid` is lifted by an admin only.
LIFTED_BY_CONFIRMATION = frozenset({Status.UNSUBSCRIBED, Status.COMPLAINER, Status.HARDBOUNCED})


class RuleError(ValueError):
    """Base of the domain errors: the request is understood but SPEC §1 does not allow it."""


class UnknownStatus(RuleError):
    """A status that is not one of the seven (nor an Altcraft number or alias for one)."""


class TransitionRefused(RuleError):
    """The action is not allowed from the current status by this cause."""


def parse_status(value: object) -> Status:
    """Read a status as a person or a client gives it: a word of §1, an alias, Altcraft's number."""
    if isinstance(value, Status):
        return value
    if isinstance(value, bool):  # bool is an int in Python; True is not a status
        raise UnknownStatus(f"unknown status {value!r}")
    if isinstance(value, float) and value.is_integer():
        # JSON has one number type: 5.0 is the integer 5 to JSON Schema, and so to the API.
        value = int(value)
    if isinstance(value, int):
        if value in ALTCRAFT_STATUS_NUMBERS:
            return ALTCRAFT_STATUS_NUMBERS[value]
        raise UnknownStatus(f"unknown status number {value}")
    if isinstance(value, str):
        word = value.strip().lower()
        if word.isdigit():
            return parse_status(int(word))
        if word in _STATUS_ALIASES:
            return _STATUS_ALIASES[word]
        try:
            return Status(word)
        except ValueError:
            pass
    raise UnknownStatus(f"unknown status {value!r}")


@dataclass(frozen=True)
class State:
    """One status as stored: for a suspension, when it ends and which status it gives back."""

    status: Status
    suspended_until: datetime | None = None
    resume_status: Status | None = None

    def __post_init__(self) -> None:
        if self.status is Status.SUSPENDED:
            if self.suspended_until is None or self.resume_status is None:
                raise ValueError("a suspended state needs suspended_until and resume_status")
            if self.resume_status is Status.SUSPENDED:
                raise ValueError("a suspension cannot resume into another suspension")
        elif self.suspended_until is not None or self.resume_status is not None:
            raise ValueError("only a suspended state has suspended_until or resume_status")


# States are immutable: one for each plain status serves every stored row (building one costs
# about 3 us, which counts when a batch or an import reads thousands of rows).
_PLAIN_STATES = {status.value: State(status) for status in Status if status is not Status.SUSPENDED}


def stored_state(status: str | None, until: datetime | None, resume: str | None) -> State | None:
    """The state of a row as the database holds it (status word, suspension end, status to
    resume), or None where there is no status."""
    if status is None:
        return None
    plain = _PLAIN_STATES.get(status)
    if plain is not None:
        return plain
    return State(Status(status), until, Status(resume) if resume else None)


def effective(state: State | None, now: datetime) -> State | None:
    """The state as it stands at ``now``: a suspension past its end has given its status back."""
    if (
        state is not None
        and state.status is Status.SUSPENDED
        and state.suspended_until is not None
        and state.suspended_until <= now
    ):
        return State(state.resume_status or Status.SUBSCRIBED)
    return state


def _suspend(state: State, until: datetime) -> State:
    resume = state.resume_status if state.status is Status.SUSPENDED else state.status
    return State(Status.SUSPENDED, suspended_until=until, resume_status=resume)


@dataclass(frozen=True)
class Snapshot:
    """What the rules look at.

    ``global_state`` is the profile's (None: no profile yet). ``resource_named`` says whether the
    action is about one subscription (a resource and channel) or about the global status alone
    (rule 2); ``subscription`` is that subscription's state (None: it does not exist yet).
    ``suppressed``: the address is on the platform-wide suppression list (rule 6).
    """

    global_state: State | None
    subscription: State | None = None
    suppressed: bool = False
    resource_named: bool = False

    def __post_init__(self) -> None:
        if self.subscription is not None and not self.resource_named:
            raise ValueError("a subscription state needs resource_named")


# --- Actions: what somebody asks for. Each is applied by `apply` below. ---------------------------


@dataclass(frozen=True)
class Signup:
    """Rule 4: a signup to a resource (double opt-in unless the resource allows single opt-in)."""

    double_opt_in: bool = True
    cause: Cause = Cause.SIGNUP


@dataclass(frozen=True)
class Confirm:
    """Rule 5: the click on a confirmation link, a new confirmed opt-in."""

    cause: Cause = Cause.CONFIRM


@dataclass(frozen=True)
class Unsubscribe:
    """Rules 2 and 3: with a resource, that subscription only; without, the global status only."""

    cause: Cause = Cause.UNSUBSCRIBE_LINK


@dataclass(frozen=True)
class Complaint:
    """The customer marked a message as spam: the global status becomes `complainer` (and the
    subscription too when the complaint names a resource)."""

    cause: Cause = Cause.COMPLAINT


@dataclass(frozen=True)
class HardBounce:
    """Rule 6: the address does not exist; global `hardbounced` and platform-wide suppression."""

    cause: Cause = Cause.BOUNCE


@dataclass(frozen=True)
class Pause:
    """No messages until ``until`` (preference page pause, soft-bounce policy). Pauses what may be
    sent to now; a stopped status stays as it is, since there is nothing to pause."""

    until: datetime
    cause: Cause = Cause.PREFERENCES


@dataclass(frozen=True)
class SetStatus:
    """An explicit status from an admin, the API or an import.

    An admin may set anything. The API and imports may lower a status but never lift a stopped one
    (rule 5), never end a suspension early, and set `subscribed` only with proof of consent.
    """

    status: Status
    cause: Cause = Cause.ADMIN
    suspended_until: datetime | None = None
    consent_proof: bool = False


Action = Signup | Confirm | Unsubscribe | Complaint | HardBounce | Pause | SetStatus


@dataclass(frozen=True)
class Change:
    """One status that changed: the event the service records for it (rule 7)."""

    scope: Scope
    old: Status | None
    new: Status
    cause: Cause


@dataclass(frozen=True)
class Outcome:
    """The states after an action, the changes to record, and what else follows from it."""

    before: Snapshot
    after: Snapshot
    changes: tuple[Change, ...]
    send_confirmation: bool = False

    @property
    def newly_subscribed(self) -> bool:
        """Whether this outcome made a subscription `subscribed` (a confirmation, a single
        opt-in, consent given through the API): what records consent and sends a welcome."""
        return any(
            c.scope is Scope.SUBSCRIPTION and c.new is Status.SUBSCRIBED for c in self.changes
        )

    @property
    def suppression_added(self) -> bool:
        return self.after.suppressed and not self.before.suppressed

    @property
    def suppression_lifted(self) -> bool:
        return self.before.suppressed and not self.after.suppressed


def _diff(before: Snapshot, after: Snapshot, cause: Cause) -> tuple[Change, ...]:
    # A changed end time of a suspension counts as a change too, so the history shows it.
    return tuple(
        Change(scope, old.status if old else None, new.status, cause)
        for scope, old, new in (
            (Scope.GLOBAL, before.global_state, after.global_state),
            (Scope.SUBSCRIPTION, before.subscription, after.subscription),
        )
        if new is not None and old != new
    )


def settle(snapshot: Snapshot, now: datetime) -> Outcome:
    """End the suspensions whose time has come, so that the history records `suspension_ended`
    before anything else happens to the profile."""
    after = replace(
        snapshot,
        global_state=effective(snapshot.global_state, now),
        subscription=effective(snapshot.subscription, now),
    )
    return Outcome(snapshot, after, _diff(snapshot, after, Cause.SUSPENSION_ENDED))


def apply(action: Action, snapshot: Snapshot, now: datetime) -> Outcome:
    """Apply one action to a settled snapshot and return what changes (SPEC §1, rules 2 to 9).

    Applying the same action to its own result changes nothing (rule 9). Raises
    ``TransitionRefused`` when this cause may not make this change.
    """
    g, s, suppressed = snapshot.global_state, snapshot.subscription, snapshot.suppressed
    on_subscription = snapshot.resource_named
    send_confirmation = False

    match action:
        case Signup(double_opt_in=double):
            if not on_subscription:
                raise TransitionRefused("a signup names a resource")
            # Rule 4: a signup never lowers a status; it creates what is missing, and a profile
            # that has never been confirmed stays (or becomes) globally unconfirmed.
            if g is None:
                g = State(Status.UNCONFIRMED)
            if s is None:
                s = State(Status.UNCONFIRMED)
            # An address on the suppression list must prove its mailbox first (only rule 5
            # takes it off): a single-opt-in signup of it waits for the click as well.
            double = double or suppressed
            if not double and g.status is Status.UNCONFIRMED:
                g = State(Status.SUBSCRIBED)
            if not double and s.status is Status.UNCONFIRMED:
                s = State(Status.SUBSCRIBED)
            # Ask for a click whenever one would change something: always for double opt-in, and
            # for single opt-in when the customer had stopped mail before (only rule 5 lifts it).
            send_confirmation = s.status is Status.UNCONFIRMED or (
                s.status in LIFTED_BY_CONFIRMATION
                or (s.status is Status.SUBSCRIBED and g.status in LIFTED_BY_CONFIRMATION)
            )

        case Confirm():
            if g is None or (on_subscription and s is None):
                raise TransitionRefused("there is no signup to confirm")
            # Rule 5: a new confirmed opt-in is new consent, and the click proves the mailbox
            # exists. It lifts neither `invalid` (admin only) nor `suspended` (time or admin).
            g = _confirmed(g)
            s = _confirmed(s)
            suppressed = False

        case Unsubscribe():
            # Rule 2: the resource named decides the scope. Rule 3: a global unsubscribe leaves
            # every subscription as it is. A stronger stop (complainer, hardbounced) stays.
            if on_subscription:
                s = _unsubscribed(s)
            else:
                g = _unsubscribed(g)

        case Complaint():
            g = _complained(g)
            s = _complained(s)
            # An address whose owner complained before optin knew it: block it like a bounce.
            suppressed = suppressed or g is None

        case HardBounce():
            # Rule 6: suppression blocks every send to the address, whatever the statuses say.
            if g is not None and g.status is not Status.INVALID:
                g = State(Status.HARDBOUNCED)
            suppressed = True

        case Pause(until=until):
            if until <= now:
                raise TransitionRefused("a pause must end in the future")
            if on_subscription:
                s = _paused(s, until)
            else:
                g = _paused(g, until)

        case SetStatus() if _is_api_consent(action, on_subscription):
            # Rule 5: consent the sending platform collected and proves is a new confirmed
            # opt-in, as a click on a confirmation link is; otherwise the API would answer
            # `subscribed` while the send check said `suppressed`. Like a confirmation it lifts
            # neither `invalid` nor `suspended` (refused on the subscription, kept globally).
            s = State(Status.SUBSCRIBED) if _lifted(s) else _set_status(action, s, now)
            g = _confirmed(g) if g is not None else State(Status.SUBSCRIBED)
            suppressed = False

        case SetStatus():
            if on_subscription:
                s = _set_status(action, s, now)
                # Consent to a resource is consent to be mailed at all: a profile that was never
                # confirmed becomes globally subscribed with it.
                if s.status is Status.SUBSCRIBED and (g is None or g.status is Status.UNCONFIRMED):
                    g = State(Status.SUBSCRIBED)
                elif g is None:
                    g = State(Status.UNCONFIRMED)
            else:
                g = _set_status(action, g, now)
            if action.cause is Cause.IMPORT and action.status is Status.HARDBOUNCED:
                # Rule 6 for a list cleaned by another tool: the mailbox does not exist, whatever
                # list the row came from, so the address is blocked as a bounce blocks it.
                if g is None or g.status is not Status.INVALID:
                    g = State(Status.HARDBOUNCED)
                suppressed = True

    after = Snapshot(g, s, suppressed, on_subscription)
    changes = _diff(snapshot, after, action.cause)
    # The suppression list outlives erasure so that no import can bring an address back (SPEC
    # §2): an import leaves a suppressed address alone; a confirmed opt-in or an admin lifts it.
    # Only a `hardbounced` row for a profile that exists may still be written: it agrees with
    # the list and lowers what it touches (the same cleaned address on a second list).
    if (
        changes
        and snapshot.suppressed
        and isinstance(action, SetStatus)
        and action.cause is Cause.IMPORT
        and not (action.status is Status.HARDBOUNCED and snapshot.global_state is not None)
    ):
        raise TransitionRefused("the address is on the suppression list")
    return Outcome(snapshot, after, changes, send_confirmation)


def _is_api_consent(action: SetStatus, on_subscription: bool) -> bool:
    """`subscribed` for a subscription through the API with proof of consent: a confirmed
    opt-in (rule 5). An import's consent dates are not: an old export must not lift a stop."""
    return (
        on_subscription
        and action.cause is Cause.API
        and action.status is Status.SUBSCRIBED
        and action.consent_proof
    )


def _lifted(state: State | None) -> bool:
    return state is not None and state.status in LIFTED_BY_CONFIRMATION


def _confirmed(state: State | None) -> State | None:
    if state is not None and (
        state.status is Status.UNCONFIRMED or state.status in LIFTED_BY_CONFIRMATION
    ):
        return State(Status.SUBSCRIBED)
    return state


def _unsubscribed(state: State | None) -> State | None:
    if state is None or state.status in STOPPED:
        return state
    return State(Status.UNSUBSCRIBED)


def _complained(state: State | None) -> State | None:
    if state is None or state.status in (Status.HARDBOUNCED, Status.INVALID):
        return state
    return State(Status.COMPLAINER)


def _paused(state: State | None, until: datetime) -> State | None:
    # Only what may still receive mail can be paused; a stopped status has nothing to pause.
    if state is None or state.status in STOPPED:
        return state
    return _suspend(state, until)


def _set_status(action: SetStatus, current: State | None, now: datetime) -> State:
    new = action.status
    if new is Status.SUSPENDED:
        if action.suspended_until is None:
            raise TransitionRefused("suspended needs an end time (suspended_until)")
        if action.suspended_until <= now:
            raise TransitionRefused("suspended_until must be in the future")
    elif action.suspended_until is not None:
        raise TransitionRefused("only suspended takes an end time")

    if action.cause is not Cause.ADMIN:
        old = current.status if current is not None else None
        if old is Status.INVALID and new is not old:
            raise TransitionRefused("only an admin changes invalid")
        if old in STOPPED and new not in STOPPED:
            raise TransitionRefused(f"only a confirmed opt-in or an admin lifts {old}")
        if old is Status.SUSPENDED and new not in STOPPED | {Status.SUSPENDED}:
            raise TransitionRefused("only time or an admin ends a suspension")
        if new is Status.SUBSCRIBED and old is not Status.SUBSCRIBED and not action.consent_proof:
            raise TransitionRefused("subscribed needs proof of consent or a confirmation")

    # (suspended without an end time was refused above; the test narrows the type)
    if new is Status.SUSPENDED and action.suspended_until is not None:
        return _suspend(current or State(Status.SUBSCRIBED), action.suspended_until)
    return State(new)


@dataclass(frozen=True)
class Decision:
    """The answer to "may we send?": ``reason`` says which rule decided."""

    allowed: bool
    reason: str
    global_status: Status | None
    subscription_status: Status | None


def can_send(
    global_state: State | None,
    subscription: State | None,
    *,
    suppressed: bool,
    resource_named: bool,
    now: datetime,
) -> Decision:
    """Rule 1: send only to an unsuppressed address whose global status is `subscribed` and, when
    a resource is named, whose subscription to it on the channel is `subscribed` too. A suspension
    past its end counts as ended."""
    g = effective(global_state, now)
    s = effective(subscription, now) if resource_named else None
    g_status = g.status if g else None
    s_status = s.status if s else None
    if suppressed:
        return Decision(False, "suppressed", g_status, s_status)
    if g is None:
        return Decision(False, "unknown_profile", None, None)
    if g.status is not Status.SUBSCRIBED:
        return Decision(False, f"global_{g.status}", g_status, s_status)
    if resource_named:
        if s is None:
            return Decision(False, "no_subscription", g_status, None)
        if s.status is not Status.SUBSCRIBED:
            return Decision(False, f"subscription_{s.status}", g_status, s_status)
    return Decision(True, "subscribed", g_status, s_status)


# --- What the admin view offers -----------------------------------------------------------------

# SPEC §1's table, column "how it is entered": the statuses an admin may enter. `hardbounced`
# comes from a bounce, which also suppresses the address (rule 6), and `unconfirmed` from a
# signup only (an admin who set it would hand a confirmed subscription to retention, rule 8).
ADMIN_TARGETS = (
    Status.SUBSCRIBED,
    Status.UNSUBSCRIBED,
    Status.COMPLAINER,
    Status.SUSPENDED,
    Status.INVALID,
)


def admin_targets(current: Status | None) -> tuple[Status, ...]:
    """The statuses the admin view offers for a status that is ``current`` now (its effective
    status: a suspension past its end has already given its status back).

    ``apply`` lets an admin set anything; this is the narrower menu a person gets, so that the
    admin view never writes a status SPEC §1 does not let an admin enter. Setting the status it
    has is no change and is not offered, except `suspended`, whose end time can be moved. As with
    a pause, only what may still receive mail can be suspended: a stopped status has nothing to
    pause, and suspending it would hide the stop behind a status that ends by itself.
    """
    targets = []
    for target in ADMIN_TARGETS:
        if target is Status.SUSPENDED:
            if current in STOPPED:
                continue
        elif target is current:
            continue
        targets.append(target)
    return tuple(targets)
