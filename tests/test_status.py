"""The rules of SPEC §1, with no app and no database: a table of every status by every cause, the
send decision for every combination, and property tests over random sequences of actions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.status import (
    LIFTED_BY_CONFIRMATION,
    STOPPED,
    Action,
    Cause,
    Change,
    Complaint,
    Confirm,
    HardBounce,
    Pause,
    SetStatus,
    Signup,
    Snapshot,
    State,
    Status,
    TransitionRefused,
    UnknownStatus,
    Unsubscribe,
    admin_targets,
    apply,
    can_send,
    effective,
    parse_status,
    settle,
    stored_state,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=30)
EARLIER = NOW - timedelta(days=1)

S = Status
COLUMNS = [None, *S]  # None: no profile / no subscription yet


def state(status: Status | None, *, resume: Status = S.SUBSCRIBED) -> State | None:
    """A state as stored; a suspension runs until LATER and gives ``resume`` back."""
    if status is None:
        return None
    if status is S.SUSPENDED:
        return State(S.SUSPENDED, suspended_until=LATER, resume_status=resume)
    return State(status)


def parse_table(text: str) -> dict[str, list[str]]:
    """Rows of ``label: cell cell ...``; the first line, the column heads, is for the reader."""
    rows = {}
    for line in text.strip().splitlines()[1:]:
        label, _, cells = line.partition(":")
        rows[label.strip()] = cells.split()
    return rows


# What each action does to a SUBSCRIPTION (a resource is named; the global status is subscribed).
# Columns: the status before, in the order of COLUMNS. "-" means no subscription, "!" refused.
SUBSCRIPTION_TABLE = parse_table("""
                 none        subscribed   unsubscribed complainer  hardbounced unconfirmed suspended  invalid
signup:          unconfirmed subscribed   unsubscribed complainer  hardbounced unconfirmed suspended  invalid
signup_single:   subscribed  subscribed   unsubscribed complainer  hardbounced subscribed  suspended  invalid
confirm:         !           subscribed   subscribed   subscribed  subscribed  subscribed  suspended  invalid
unsubscribe:     -           unsubscribed unsubscribed complainer  hardbounced unsubscribed unsubscribed invalid
complaint:       -           complainer   complainer   complainer  hardbounced complainer  complainer invalid
hard_bounce:     -           subscribed   unsubscribed complainer  hardbounced unconfirmed suspended  invalid
pause:           -           suspended    unsubscribed complainer  hardbounced suspended   suspended  invalid
""")

# What each action does to the GLOBAL status (no resource named; rule 2). "-": no profile.
GLOBAL_TABLE = parse_table("""
                 none        subscribed   unsubscribed complainer  hardbounced unconfirmed suspended  invalid
confirm:         !           subscribed   subscribed   subscribed  subscribed  subscribed  suspended  invalid
unsubscribe:     -           unsubscribed unsubscribed complainer  hardbounced unsubscribed unsubscribed invalid
complaint:       -           complainer   complainer   complainer  hardbounced complainer  complainer invalid
hard_bounce:     -           hardbounced  hardbounced  hardbounced hardbounced hardbounced hardbounced invalid
pause:           -           suspended    unsubscribed complainer  hardbounced suspended   suspended  invalid
""")

# What a signup to a resource does to the GLOBAL status (rule 4: never lowers it).
SIGNUP_GLOBAL_TABLE = parse_table("""
                 none        subscribed   unsubscribed complainer  hardbounced unconfirmed suspended  invalid
signup:          unconfirmed subscribed   unsubscribed complainer  hardbounced unconfirmed suspended  invalid
signup_single:   subscribed  subscribed   unsubscribed complainer  hardbounced subscribed  suspended  invalid
""")

UNSUBSCRIBE_CAUSES = [
    Cause.UNSUBSCRIBE_LINK,
    Cause.ONE_CLICK,
    Cause.MAILTO,
    Cause.PREFERENCES,
    Cause.API,
]


def actions_named(label: str) -> list[Action]:
    return {
        "signup": [Signup(double_opt_in=True)],
        "signup_single": [Signup(double_opt_in=False)],
        "confirm": [Confirm()],
        "unsubscribe": [Unsubscribe(cause) for cause in UNSUBSCRIBE_CAUSES],
        "complaint": [Complaint()],
        "hard_bounce": [HardBounce()],
        "pause": [
            Pause(LATER + timedelta(days=1), cause)
            for cause in (Cause.PREFERENCES, Cause.BOUNCE, Cause.API)
        ],
    }[label]


def table_cases(table: dict[str, list[str]]) -> list[tuple[str, Status | None, str]]:
    return [
        (label, before, expected)
        for label, cells in table.items()
        for before, expected in zip(COLUMNS, cells, strict=True)
    ]


@pytest.mark.parametrize(("label", "before", "expected"), table_cases(SUBSCRIPTION_TABLE))
def test_each_action_on_a_subscription(label: str, before: Status | None, expected: str) -> None:
    for action in actions_named(label):
        snapshot = Snapshot(State(S.SUBSCRIBED), state(before), resource_named=True)
        if expected == "!":
            with pytest.raises(TransitionRefused):
                apply(action, snapshot, NOW)
            continue
        after = apply(action, snapshot, NOW).after.subscription
        assert (after.status.value if after else "-") == expected, action


@pytest.mark.parametrize(("label", "before", "expected"), table_cases(GLOBAL_TABLE))
def test_each_action_on_the_global_status(label: str, before: Status | None, expected: str) -> None:
    for action in actions_named(label):
        snapshot = Snapshot(state(before))
        if expected == "!":
            with pytest.raises(TransitionRefused):
                apply(action, snapshot, NOW)
            continue
        after = apply(action, snapshot, NOW).after.global_state
        assert (after.status.value if after else "-") == expected, action


@pytest.mark.parametrize(("label", "before", "expected"), table_cases(SIGNUP_GLOBAL_TABLE))
def test_a_signup_never_lowers_the_global_status(
    label: str, before: Status | None, expected: str
) -> None:
    (action,) = actions_named(label)
    outcome = apply(action, Snapshot(state(before), None, resource_named=True), NOW)
    assert outcome.after.global_state is not None
    assert outcome.after.global_state.status.value == expected


@pytest.mark.parametrize("before", [status for status in S if status is not S.SUSPENDED])
def test_a_pause_gives_the_status_back_when_it_ends(before: Status) -> None:
    until = NOW + timedelta(days=14)
    paused = apply(Pause(until), Snapshot(State(before)), NOW).after.global_state
    assert paused is not None
    if before in STOPPED:
        assert paused == State(before)  # nothing to pause
        return
    assert paused.status is S.SUSPENDED
    assert effective(paused, until - timedelta(seconds=1)) == paused
    assert effective(paused, until) == State(before)
    ended = settle(Snapshot(paused), until)
    assert [(c.old, c.new, c.cause) for c in ended.changes] == [
        (S.SUSPENDED, before, Cause.SUSPENSION_ENDED)
    ]


def test_a_hard_bounce_suppresses_and_a_confirmation_lifts_it() -> None:
    bounced = apply(HardBounce(), Snapshot(State(S.SUBSCRIBED)), NOW)
    assert bounced.after.suppressed and bounced.suppression_added
    confirmed = apply(Confirm(), bounced.after, NOW)
    assert confirmed.after == Snapshot(State(S.SUBSCRIBED), suppressed=False)
    assert confirmed.suppression_lifted


def test_a_hard_bounce_for_an_unknown_address_still_suppresses_it() -> None:
    outcome = apply(HardBounce(), Snapshot(None), NOW)
    assert outcome.after == Snapshot(None, suppressed=True)
    assert outcome.changes == ()


def test_a_confirmation_lifts_the_stopped_global_status_with_the_subscription() -> None:
    for stopped in LIFTED_BY_CONFIRMATION:
        snapshot = Snapshot(State(stopped), State(S.UNCONFIRMED), resource_named=True)
        after = apply(Confirm(), snapshot, NOW).after
        assert after.global_state == State(S.SUBSCRIBED)
        assert after.subscription == State(S.SUBSCRIBED)


@pytest.mark.parametrize("before", COLUMNS)
def test_a_double_opt_in_signup_asks_for_confirmation_only_when_a_click_would_change_something(
    before: Status | None,
) -> None:
    outcome = apply(
        Signup(), Snapshot(State(S.SUBSCRIBED), state(before), resource_named=True), NOW
    )
    wanted = before in (None, S.UNCONFIRMED, *LIFTED_BY_CONFIRMATION)
    assert outcome.send_confirmation is wanted


def test_a_single_opt_in_signup_after_an_unsubscribe_asks_for_confirmation() -> None:
    snapshot = Snapshot(State(S.UNSUBSCRIBED), None, resource_named=True)
    outcome = apply(Signup(double_opt_in=False), snapshot, NOW)
    assert outcome.send_confirmation
    assert outcome.after.global_state == State(S.UNSUBSCRIBED)


@pytest.mark.parametrize(
    "before", [None, State(S.SUBSCRIBED)], ids=["an address optin never knew", "a subscriber"]
)
def test_a_single_opt_in_signup_of_a_suppressed_address_waits_for_the_click(
    before: State | None,
) -> None:
    """Only a confirmed opt-in takes an address off the suppression list (rule 5): signed up
    to a single-opt-in resource, a hard-bounced address would otherwise be `subscribed` while
    every send to it is blocked, and the profile would say one thing and the send check
    another."""
    snapshot = Snapshot(before, None, suppressed=True, resource_named=True)
    outcome = apply(Signup(double_opt_in=False), snapshot, NOW)
    assert outcome.send_confirmation
    assert outcome.after.subscription == State(S.UNCONFIRMED)
    assert outcome.after.suppressed
    assert outcome.after.global_state == (before or State(S.UNCONFIRMED))


def test_an_unsubscribe_from_a_resource_never_touches_the_global_status() -> None:
    snapshot = Snapshot(State(S.SUBSCRIBED), State(S.SUBSCRIBED), resource_named=True)
    outcome = apply(Unsubscribe(), snapshot, NOW)
    assert outcome.after.global_state == State(S.SUBSCRIBED)
    assert [c.scope for c in outcome.changes] == ["subscription"]


def test_a_global_unsubscribe_leaves_every_subscription_as_it_is() -> None:
    # Rule 3: the service applies a global unsubscribe to the profile alone; the pure rule has no
    # subscription in its snapshot, so there is nothing it could change.
    outcome = apply(Unsubscribe(), Snapshot(State(S.SUBSCRIBED)), NOW)
    assert [c.scope for c in outcome.changes] == ["global"]


# --- Explicit statuses: admin, API, import ------------------------------------------------------


@pytest.mark.parametrize("before", COLUMNS)
@pytest.mark.parametrize("target", list(S))
def test_an_admin_may_set_any_status(before: Status | None, target: Status) -> None:
    until = LATER + timedelta(days=1) if target is S.SUSPENDED else None
    for resource_named in (False, True):
        snapshot = (
            Snapshot(State(S.SUBSCRIBED), state(before), resource_named=True)
            if resource_named
            else Snapshot(state(before))
        )
        after = apply(SetStatus(target, Cause.ADMIN, until), snapshot, NOW).after
        changed = after.subscription if resource_named else after.global_state
        assert changed is not None and changed.status is target


def is_api_consent(action: Action) -> bool:
    """`subscribed` with proof of consent through the API: a confirmed opt-in (rule 5)."""
    return (
        isinstance(action, SetStatus)
        and action.cause is Cause.API
        and action.status is S.SUBSCRIBED
        and action.consent_proof
    )


def api_may(before: Status | None, target: Status, consent: bool, cause: Cause) -> bool:
    """SPEC §1 for the API and imports, written out: they lower statuses freely; only a confirmed
    opt-in (which the API's `subscribed` with proof of consent is) or an admin lifts a stopped
    one; only time or an admin ends a suspension; subscribed needs proof of consent."""
    if before is target:
        return True
    if before is S.INVALID:
        return False
    if (
        cause is Cause.API
        and consent
        and target is S.SUBSCRIBED
        and before in LIFTED_BY_CONFIRMATION
    ):
        return True
    if before in STOPPED and target not in STOPPED:
        return False
    if before is S.SUSPENDED and target not in (*STOPPED, S.SUSPENDED):
        return False
    return not (target is S.SUBSCRIBED and not consent)


@pytest.mark.parametrize("cause", [Cause.API, Cause.IMPORT])
@pytest.mark.parametrize("before", COLUMNS)
@pytest.mark.parametrize("target", list(S))
@pytest.mark.parametrize("consent", [False, True])
def test_the_api_and_imports_lower_but_never_lift(
    cause: Cause, before: Status | None, target: Status, consent: bool
) -> None:
    until = LATER + timedelta(days=1) if target is S.SUSPENDED else None
    action = SetStatus(target, cause, until, consent_proof=consent)
    snapshot = Snapshot(State(S.SUBSCRIBED), state(before), resource_named=True)
    if api_may(before, target, consent, cause):
        after = apply(action, snapshot, NOW).after.subscription
        assert after is not None and after.status is target
    else:
        with pytest.raises(TransitionRefused):
            apply(action, snapshot, NOW)


@pytest.mark.parametrize(
    ("until", "status"),
    [(None, S.SUSPENDED), (EARLIER, S.SUSPENDED), (NOW, S.SUSPENDED), (LATER, S.SUBSCRIBED)],
)
def test_a_suspension_needs_an_end_in_the_future_and_nothing_else_takes_one(
    until: datetime | None, status: Status
) -> None:
    with pytest.raises(TransitionRefused):
        apply(SetStatus(status, Cause.ADMIN, until), Snapshot(State(S.SUBSCRIBED)), NOW)


def test_a_consented_subscription_makes_a_never_confirmed_profile_subscribed() -> None:
    snapshot = Snapshot(State(S.UNCONFIRMED), None, resource_named=True)
    after = apply(SetStatus(S.SUBSCRIBED, Cause.API, consent_proof=True), snapshot, NOW).after
    assert after.global_state == State(S.SUBSCRIBED)
    assert after.subscription == State(S.SUBSCRIBED)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("subscribed", S.SUBSCRIBED),
        (" Unsubscribed ", S.UNSUBSCRIBED),
        ("complained", S.COMPLAINER),
        (0, S.SUBSCRIBED),
        (1, S.UNSUBSCRIBED),
        (2, S.COMPLAINER),
        (3, S.HARDBOUNCED),
        (4, S.UNCONFIRMED),
        ("5", S.SUSPENDED),
        (6, S.INVALID),
        (2.0, S.COMPLAINER),  # JSON Schema's integer, as a JSON parser may hand it over
    ],
)
def test_statuses_are_read_as_words_or_altcraft_numbers(given: object, expected: Status) -> None:
    assert parse_status(given) is expected


@pytest.mark.parametrize(
    "given", ["", "active", 7, -1, True, None, 2.5, 7.0, float("nan"), "subscribed!"]
)
def test_an_unknown_status_is_refused(given: object) -> None:
    with pytest.raises(UnknownStatus):
        parse_status(given)


# --- The send decision (rule 1) -----------------------------------------------------------------

STATE_CHOICES: list[State | None] = [
    None,
    *(State(status) for status in S if status is not S.SUSPENDED),
    State(S.SUSPENDED, suspended_until=LATER, resume_status=S.SUBSCRIBED),
    State(S.SUSPENDED, suspended_until=EARLIER, resume_status=S.SUBSCRIBED),
    State(S.SUSPENDED, suspended_until=EARLIER, resume_status=S.UNSUBSCRIBED),
]


def sendable_now(value: State | None) -> bool:
    """Written out from SPEC §1: `subscribed`, or a suspension already over that gave it back."""
    if value is None:
        return False
    if value.status is S.SUSPENDED:
        assert value.suspended_until is not None
        return value.suspended_until <= NOW and value.resume_status is S.SUBSCRIBED
    return value.status is S.SUBSCRIBED


@pytest.mark.parametrize("global_state", STATE_CHOICES)
@pytest.mark.parametrize("subscription", STATE_CHOICES)
@pytest.mark.parametrize("suppressed", [False, True])
@pytest.mark.parametrize("resource_named", [False, True])
def test_the_send_decision_for_every_combination(
    global_state: State | None,
    subscription: State | None,
    suppressed: bool,
    resource_named: bool,
) -> None:
    decision = can_send(
        global_state, subscription, suppressed=suppressed, resource_named=resource_named, now=NOW
    )
    expected = (
        not suppressed
        and sendable_now(global_state)
        and (not resource_named or sendable_now(subscription))
    )
    assert decision.allowed is expected
    if suppressed:
        assert decision.reason == "suppressed"
    elif global_state is None:
        assert decision.reason == "unknown_profile"
    elif not sendable_now(global_state):
        assert decision.reason.startswith("global_")
    elif resource_named and not sendable_now(subscription):
        assert decision.reason in {"no_subscription"} or decision.reason.startswith("subscription_")


def test_a_global_status_that_forbids_wins_over_subscribed_subscriptions() -> None:
    decision = can_send(
        State(S.UNSUBSCRIBED),
        State(S.SUBSCRIBED),
        suppressed=False,
        resource_named=True,
        now=NOW,
    )
    assert (decision.allowed, decision.reason) == (False, "global_unsubscribed")
    assert decision.subscription_status is S.SUBSCRIBED


# --- Properties over random sequences of actions ------------------------------------------------

future = st.integers(min_value=1, max_value=90).map(lambda days: NOW + timedelta(days=days))
statuses = st.sampled_from(list(S))
actions: st.SearchStrategy[Action] = st.one_of(
    st.builds(Signup, st.booleans()),
    st.just(Confirm()),
    st.builds(Unsubscribe, st.sampled_from(UNSUBSCRIBE_CAUSES)),
    st.just(Complaint()),
    st.just(HardBounce()),
    st.builds(Pause, future, st.sampled_from([Cause.PREFERENCES, Cause.BOUNCE])),
    st.builds(
        lambda status, cause, until, consent: SetStatus(
            status, cause, until if status is S.SUSPENDED else None, consent
        ),
        statuses,
        st.sampled_from([Cause.ADMIN, Cause.API, Cause.IMPORT]),
        future,
        st.booleans(),
    ),
)
steps = st.lists(st.tuples(actions, st.booleans()), min_size=1, max_size=25)


def run(sequence: list[tuple[Action, bool]]):  # type: ignore[no-untyped-def]
    """Apply a sequence to one profile with one subscription; yield each applied outcome. The
    boolean says whether the action names the resource."""
    global_state: State | None = None
    subscription: State | None = None
    suppressed = False
    for action, resource_named in sequence:
        snapshot = Snapshot(
            global_state, subscription if resource_named else None, suppressed, resource_named
        )
        try:
            outcome = apply(action, snapshot, NOW)
        except TransitionRefused:
            continue
        global_state = outcome.after.global_state
        if resource_named:
            subscription = outcome.after.subscription
        suppressed = outcome.after.suppressed
        yield action, outcome


@settings(max_examples=400)
@given(steps)
def test_repeating_an_action_changes_nothing_and_records_nothing(
    sequence: list[tuple[Action, bool]],
) -> None:
    for action, outcome in run(sequence):
        again = apply(action, outcome.after, NOW)
        assert again.changes == ()
        assert again.after == outcome.after


@settings(max_examples=400)
@given(steps)
def test_every_change_is_one_event_and_every_event_a_change(
    sequence: list[tuple[Action, bool]],
) -> None:
    for action, outcome in run(sequence):
        pairs = [
            ("global", outcome.before.global_state, outcome.after.global_state),
            ("subscription", outcome.before.subscription, outcome.after.subscription),
        ]
        changed = [scope for scope, old, new in pairs if old != new]
        assert [c.scope for c in outcome.changes] == changed
        assert all(c.cause is action.cause for c in outcome.changes)


@settings(max_examples=400)
@given(steps)
def test_only_a_confirmed_opt_in_or_an_admin_lifts_a_stopped_status(
    sequence: list[tuple[Action, bool]],
) -> None:
    for action, outcome in run(sequence):
        for change in outcome.changes:
            if change.old in LIFTED_BY_CONFIRMATION and change.new not in STOPPED:
                assert change.cause in (Cause.CONFIRM, Cause.ADMIN) or is_api_consent(action)
            if change.old is S.INVALID:
                assert change.cause is Cause.ADMIN
            if change.old is S.SUSPENDED and change.new not in STOPPED | {S.SUSPENDED}:
                assert change.cause is Cause.ADMIN
        if outcome.suppression_lifted:
            assert isinstance(action, Confirm) or is_api_consent(action)


@settings(max_examples=400)
@given(steps)
def test_the_decision_allows_only_what_rule_one_allows(sequence: list[tuple[Action, bool]]) -> None:
    for _action, outcome in run(sequence):
        after = outcome.after
        for resource_named in (False, True):
            subscription = after.subscription if resource_named else None
            decision = can_send(
                after.global_state,
                subscription,
                suppressed=after.suppressed,
                resource_named=resource_named,
                now=NOW,
            )
            g = effective(after.global_state, NOW)
            s = effective(subscription, NOW)
            expected = (
                not after.suppressed
                and g is not None
                and g.status is S.SUBSCRIBED
                and (not resource_named or (s is not None and s.status is S.SUBSCRIBED))
            )
            assert decision.allowed is expected


# --- The admin view's menu (status.admin_targets) -------------------------------------------------

ADMIN_MENU = """
current:      offered
none:         subscribed unsubscribed complainer suspended invalid
subscribed:   unsubscribed complainer suspended invalid
unsubscribed: subscribed complainer invalid
complainer:   subscribed unsubscribed invalid
hardbounced:  subscribed unsubscribed complainer invalid
unconfirmed:  subscribed unsubscribed complainer suspended invalid
suspended:    subscribed unsubscribed complainer suspended invalid
invalid:      subscribed unsubscribed complainer
"""


@pytest.mark.parametrize("current", COLUMNS)
def test_the_admin_menu_follows_the_table(current: Status | None) -> None:
    expected = parse_table(ADMIN_MENU)["none" if current is None else current.value]
    assert [target.value for target in admin_targets(current)] == expected


@settings(max_examples=400)
@given(steps, statuses, st.booleans(), future)
def test_every_change_the_admin_menu_offers_is_applied_as_offered(
    sequence: list[tuple[Action, bool]], pick: Status, resource_named: bool, until: datetime
) -> None:
    """Whatever a profile went through, each status the menu offers is accepted by the rules,
    becomes the status of that scope alone, and records one admin event; the menu never offers
    `hardbounced` or `unconfirmed`, nor a suspension of a stopped status."""
    global_state: State | None = State(S.SUBSCRIBED)
    subscription: State | None = State(S.UNCONFIRMED)
    for _action, outcome in run(sequence):
        global_state = outcome.after.global_state or global_state
        subscription = outcome.after.subscription or subscription
    current = effective(subscription if resource_named else global_state, NOW)
    offered = admin_targets(current.status if current else None)
    assert S.HARDBOUNCED not in offered and S.UNCONFIRMED not in offered
    if current is not None and current.status in STOPPED:
        assert S.SUSPENDED not in offered
    target = pick if pick in offered else (offered[0] if offered else None)
    assert target is not None
    snapshot = settle(
        Snapshot(global_state, subscription if resource_named else None, False, resource_named),
        NOW,
    ).after
    if current is not None and current.suspended_until == until:
        until += timedelta(days=1)  # the same end time again would be no change
    action = SetStatus(target, Cause.ADMIN, until if target is S.SUSPENDED else None)
    outcome = apply(action, snapshot, NOW)
    changed = outcome.after.subscription if resource_named else outcome.after.global_state
    assert changed is not None and changed.status is target
    scope = "subscription" if resource_named else "global"
    assert [c for c in outcome.changes if c.scope == scope] == [
        Change(scope, current.status if current else None, target, Cause.ADMIN)
    ]


def test_stored_rows_read_back_as_the_states_they_hold() -> None:
    until = datetime(2026, 12, 1, tzinfo=UTC)
    assert stored_state(None, None, None) is None
    for status in Status:
        if status is not Status.SUSPENDED:
            assert stored_state(status.value, None, None) == State(status)
    suspended = stored_state("suspended", until, "subscribed")
    assert suspended == State(Status.SUSPENDED, until, Status.SUBSCRIBED)
    with pytest.raises(ValueError):
        stored_state("suspended", None, None)  # a suspension without its end is no state


# --- Issue 14: an imported bounce suppresses; consent through the API is a confirmed opt-in ----


@pytest.mark.parametrize("before", COLUMNS)
def test_an_imported_hardbounced_row_suppresses_the_address_as_a_bounce_does(
    before: Status | None,
) -> None:
    snapshot = Snapshot(state(before), None, resource_named=True)
    outcome = apply(SetStatus(S.HARDBOUNCED, Cause.IMPORT), snapshot, NOW)
    bounced = apply(HardBounce(), Snapshot(state(before)), NOW) if before else None
    assert outcome.suppression_added
    assert outcome.after.subscription == State(S.HARDBOUNCED)
    expected = bounced.after.global_state if bounced else State(S.HARDBOUNCED)
    assert outcome.after.global_state == expected


def test_an_import_still_leaves_an_address_on_the_suppression_list_alone() -> None:
    snapshot = Snapshot(State(S.HARDBOUNCED), None, suppressed=True, resource_named=True)
    with pytest.raises(TransitionRefused):
        apply(SetStatus(S.UNSUBSCRIBED, Cause.IMPORT), snapshot, NOW)


@pytest.mark.parametrize("stopped", sorted(LIFTED_BY_CONFIRMATION))
@pytest.mark.parametrize("where", ["global", "subscription", "both"])
def test_a_subscription_with_consent_through_the_api_lifts_a_stop_as_a_confirmation_does(
    stopped: Status, where: str
) -> None:
    g = State(stopped) if where != "subscription" else State(S.SUBSCRIBED)
    s = State(stopped) if where != "global" else State(S.UNCONFIRMED)
    snapshot = Snapshot(g, s, suppressed=True, resource_named=True)
    outcome = apply(SetStatus(S.SUBSCRIBED, Cause.API, consent_proof=True), snapshot, NOW)
    confirmed = apply(Confirm(), snapshot, NOW)
    assert outcome.after == confirmed.after
    assert outcome.after.global_state == outcome.after.subscription == State(S.SUBSCRIBED)
    assert outcome.suppression_lifted


@pytest.mark.parametrize("kept", [S.INVALID, S.SUSPENDED])
def test_consent_through_the_api_lifts_neither_invalid_nor_a_suspension(kept: Status) -> None:
    held = State(kept) if kept is S.INVALID else State(kept, LATER, S.SUBSCRIBED)
    action = SetStatus(S.SUBSCRIBED, Cause.API, consent_proof=True)
    with pytest.raises(TransitionRefused):
        apply(action, Snapshot(State(S.SUBSCRIBED), held, resource_named=True), NOW)
    after = apply(action, Snapshot(held, None, resource_named=True), NOW).after
    assert after.global_state == held and after.subscription == State(S.SUBSCRIBED)


def test_consent_dates_in_an_import_lift_nothing() -> None:
    snapshot = Snapshot(State(S.UNSUBSCRIBED), State(S.UNSUBSCRIBED), resource_named=True)
    with pytest.raises(TransitionRefused):
        apply(SetStatus(S.SUBSCRIBED, Cause.IMPORT, consent_proof=True), snapshot, NOW)


def test_an_imported_bounce_may_still_lower_a_suppressed_profile_but_never_make_one() -> None:
    action = SetStatus(S.HARDBOUNCED, Cause.IMPORT)
    existing = Snapshot(State(S.HARDBOUNCED), None, suppressed=True, resource_named=True)
    assert apply(action, existing, NOW).after.subscription == State(S.HARDBOUNCED)
    with pytest.raises(TransitionRefused):  # an erased address: only its hash is left
        apply(action, Snapshot(None, None, suppressed=True, resource_named=True), NOW)
