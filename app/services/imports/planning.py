"""Planning a chunk of import rows: read what the rows are about (profiles, subscriptions,
suppressions) in a few queries, decide each row with the rules of ``status.py`` (cause
``import``), and collect what is to be written in a ``Plan``. Nothing is written here.

The rules are status.settle and status.apply, nothing of their own: ``Rules`` only remembers the
verdict of each combination of plain states, which a million rows repeat a few dozen times.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from app import queries
from app.addresses import email_hash
from app.services.imports.rows import REFUSED, ImportRow, Rejection
from app.services.statuses import TIME, Actor
from app.status import (
    Cause,
    Outcome,
    RuleError,
    SetStatus,
    Snapshot,
    State,
    Status,
    TransitionRefused,
    apply,
    settle,
    stored_state,
)

# A subscription's key within a chunk: (address, resource id, channel).
SubscriptionKey = tuple[str, int, str]


class VerdictEvent(NamedTuple):
    """One status change a verdict records, not yet tied to a profile."""

    on_subscription: bool
    old: str | None
    new: str
    cause: str
    # Settled by the clock (a suspension that ended) rather than by the import's actor.
    by_clock: bool
    suspended_until: datetime | None


class PlannedEvent(NamedTuple):
    """A status event to insert, for the profile of ``email``."""

    email: str
    resource_id: int | None
    channel: str | None
    old: str | None
    new: str
    cause: str
    actor: Actor
    suspended_until: datetime | None


class PlannedConsent(NamedTuple):
    """The proof of consent of a row that became subscribed with a consent date."""

    email: str
    resource_id: int
    channel: str
    confirmed_at: datetime


class PlannedSuppression(NamedTuple):
    """An address the chunk puts on the suppression list, with its hash."""

    email: str
    email_hash: str


@dataclass(frozen=True)
class Verdict:
    """One row's outcome under the rules, with what writing it needs worked out once: rows
    repeat a few dozen combinations of states, and each combination is decided once."""

    global_state: State
    subscription: State
    global_changed: bool
    subscription_changed: bool
    became_subscribed: bool
    # The row puts the address on the suppression list (an imported `hardbounced`, rule 6).
    suppress: bool
    # The columns to write (shared between rows: copied before they are changed).
    global_columns: dict[str, Any]
    subscription_columns: dict[str, Any]
    events: tuple[VerdictEvent, ...]

    @property
    def changed(self) -> bool:
        """Whether the row changes a status (and so records an event)."""
        return bool(self.events)


def _state_columns(state: State) -> dict[str, Any]:
    return {
        "status": state.status.value,
        "suspended_until": state.suspended_until,
        "resume_status": state.resume_status.value if state.resume_status else None,
    }


def _verdict(g: State | None, s: State | None, settled: Outcome, outcome: Outcome) -> Verdict:
    after = outcome.after
    g_after, s_after = after.global_state, after.subscription
    if g_after is None or s_after is None:
        raise RuleError("an import row must leave a global status and a subscription")
    events = []
    for changes, snapshot, by_clock in (
        (settled.changes, settled.after, True),
        (outcome.changes, after, False),
    ):
        for change in changes:
            on_subscription = change.scope == "subscription"
            state = snapshot.subscription if on_subscription else snapshot.global_state
            events.append(
                VerdictEvent(
                    on_subscription,
                    change.old.value if change.old else None,
                    change.new.value,
                    change.cause.value,
                    by_clock,
                    state.suspended_until if state else None,
                )
            )
    global_columns = _state_columns(g_after)
    global_columns["global_status"] = global_columns.pop("status")
    return Verdict(
        g_after,
        s_after,
        g_after != g,
        s_after != s,
        outcome.newly_subscribed,
        outcome.suppression_added,
        global_columns,
        _state_columns(s_after),
        tuple(events),
    )


class Rules:
    """status.settle and status.apply for import rows, each combination of plain states decided
    once: a million rows repeat a few dozen of them."""

    def __init__(self) -> None:
        self._plain: dict[tuple[Any, ...], Verdict | str] = {}
        self._actions: dict[tuple[Status, bool], SetStatus] = {}

    def decide(
        self,
        g: State | None,
        s: State | None,
        suppressed: bool,
        status: Status,
        consent: bool,
        now: datetime,
    ) -> Verdict:
        """The outcome of setting ``status`` (with proof of consent or not) by cause
        ``import``, suspensions that have ended settled first; ``TransitionRefused`` when the
        rules refuse it."""
        g_status = g.status if g is not None else None
        s_status = s.status if s is not None else None
        # A suspension's outcome depends on its times and the clock: decided each time.
        plain = g_status is not Status.SUSPENDED and s_status is not Status.SUSPENDED
        key = (g_status, s_status, suppressed, status, consent)
        if plain:
            found = self._plain.get(key)
            if found is not None:
                if isinstance(found, str):
                    raise TransitionRefused(found)
                return found
        action = self._actions.get((status, consent))
        if action is None:
            action = self._actions[(status, consent)] = SetStatus(
                status, Cause.IMPORT, consent_proof=consent
            )
        settled = settle(Snapshot(g, s, suppressed=suppressed, resource_named=True), now)
        try:
            outcome = apply(action, settled.after, now)
        except TransitionRefused as refused:
            if plain:
                self._plain[key] = str(refused)
            raise
        verdict = _verdict(g, s, settled, outcome)
        if plain:
            self._plain[key] = verdict
        return verdict


@dataclass
class Plan:
    """What one chunk will write: the rows to insert and update, the events, the rejections."""

    new_profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    profile_updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    new_subscriptions: dict[SubscriptionKey, dict[str, Any]] = field(default_factory=dict)
    subscription_updates: dict[int, dict[str, Any]] = field(default_factory=dict)
    events: list[PlannedEvent] = field(default_factory=list)
    consents: list[PlannedConsent] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    # Addresses the chunk puts on the suppression list, each once.
    suppressions: list[PlannedSuppression] = field(default_factory=list)
    # Who runs the import: the actor of its events and of its suppression history.
    actor: Actor = TIME
    # The ids of the profiles and subscriptions that existed before the chunk.
    profile_ids: dict[str, int] = field(default_factory=dict)
    subscription_ids: dict[SubscriptionKey, int] = field(default_factory=dict)
    imported: list[ImportRow] = field(default_factory=list)
    unchanged: int = 0
    # Existing profiles whose global status the chunk changes: their pending confirmation links
    # must stop working, as after any other global change (services/statuses.py).
    global_changed: set[str] = field(default_factory=set)


def plan_chunk(
    rows: Sequence[ImportRow],
    rules: Rules,
    actor: Actor,
    now: datetime,
    *,
    for_update: bool = False,
) -> Plan:
    """Read what the chunk's rows are about and decide each with the rules, in file order (a
    profile on two lines sees the first line's result). Writes nothing."""
    plan = Plan(actor=actor)
    emails = list(dict.fromkeys(row.email for row in rows))
    profiles = {row.email: row for row in queries.import_profiles(emails, for_update=for_update)}
    resource_ids = sorted({row.resource_id for row in rows})
    subscriptions = {
        (stored.profile_id, stored.resource_id, stored.channel): stored
        for stored in queries.import_subscriptions([p.id for p in profiles.values()], resource_ids)
    }
    hashes = {email: email_hash(email) for email in emails}
    suppressed = queries.import_suppressed(hashes.values())

    global_states: dict[str, State | None] = {}
    names: dict[str, str | None] = {}
    for email, profile in profiles.items():
        global_states[email] = stored_state(
            profile.status, profile.suspended_until, profile.resume_status
        )
        names[email] = profile.name
    sub_states: dict[SubscriptionKey, State | None] = {}
    sub_ids: dict[SubscriptionKey, int] = {}
    plan.profile_ids = {email: profile.id for email, profile in profiles.items()}
    by_profile_id = {profile.id: email for email, profile in profiles.items()}
    for (profile_id, resource_id, channel), stored in subscriptions.items():
        key = (by_profile_id[profile_id], resource_id, channel)
        sub_states[key] = stored_state(stored.status, stored.suspended_until, stored.resume_status)
        sub_ids[key] = stored.id
    plan.subscription_ids = sub_ids

    for row in rows:
        email = row.email
        key = (email, row.resource_id, row.channel)
        try:
            verdict = rules.decide(
                global_states.get(email),
                sub_states.get(key),
                hashes[email] in suppressed,
                row.status,
                row.consent_at is not None,
                now,
            )
        except TransitionRefused as refused:
            plan.rejections.append(Rejection(row.line, email, f"{REFUSED}: {refused}"))
            continue
        new_name = row.name if row.name and email in names and not names[email] else None
        if not verdict.events and new_name is None:
            plan.unchanged += 1
            continue
        plan.imported.append(row)
        if email not in global_states:
            plan.new_profiles[email] = {
                "email": email,
                "email_hash": hashes[email],
                "name": row.name,
                **verdict.global_columns,
                "created_at": now,
                "updated_at": now,
            }
            names[email] = row.name
        elif email in plan.new_profiles:
            plan.new_profiles[email].update(verdict.global_columns)
        elif verdict.global_changed or new_name is not None:
            if verdict.global_changed:
                plan.global_changed.add(email)
            update_row = plan.profile_updates.setdefault(email, {"name": names[email]})
            update_row.update(verdict.global_columns)
            if new_name is not None:
                update_row["name"] = names[email] = new_name
        global_states[email] = verdict.global_state

        if verdict.subscription_changed:
            columns = dict(verdict.subscription_columns)
            if verdict.became_subscribed:
                columns["confirmed_at"] = row.consent_at or now
            if key in sub_ids:
                plan.subscription_updates.setdefault(sub_ids[key], {}).update(columns)
            elif key in plan.new_subscriptions:
                plan.new_subscriptions[key].update(columns)
            else:
                plan.new_subscriptions[key] = {
                    "resource_id": row.resource_id,
                    "channel": row.channel,
                    "confirmed_at": None,
                    **columns,
                    "created_at": now,
                    "updated_at": now,
                }
        sub_states[key] = verdict.subscription
        if verdict.suppress:
            # Later rows of the address, in this chunk too, find it suppressed.
            suppressed.add(hashes[email])
            plan.suppressions.append(PlannedSuppression(email, hashes[email]))
        if verdict.became_subscribed and row.consent_at is not None:
            plan.consents.append(
                PlannedConsent(email, row.resource_id, row.channel, row.consent_at)
            )
        for event in verdict.events:
            on_subscription = event.on_subscription
            plan.events.append(
                PlannedEvent(
                    email,
                    row.resource_id if on_subscription else None,
                    row.channel if on_subscription else None,
                    event.old,
                    event.new,
                    event.cause,
                    TIME if event.by_clock else actor,
                    event.suspended_until,
                )
            )
    return plan
