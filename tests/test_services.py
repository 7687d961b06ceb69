"""The service layer on a real database (SQLite, or PostgreSQL with TEST_DATABASE_URL): each
action is one transaction, writes one event per status change, and refuses bad input whole."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, update

from app import queries
from app.addresses import email_hash
from app.database import write_transaction
from app.extensions import db
from app.models import Profile, Resource, StatusEvent, Subscription, Suppression
from app.services.eligibility import decide, decide_many
from app.services.errors import (
    InvalidEmail,
    TransitionRefused,
    UnknownChannel,
    UnknownProfile,
    UnknownResource,
    UnknownStatus,
)
from app.services.maintenance import expire
from app.services.statuses import Actor
from app.status import Cause, Status
from tests import factories
from tests.conftest import on_postgres

ALICE = "Alice@Example.COM"


def event_count() -> int:
    return db.session.scalar(select(func.count()).select_from(StatusEvent)) or 0


def history(email: str) -> list[tuple[str, str | None, str | None, str, str]]:
    """The events of a profile as (scope, old, new, cause, actor) rows, oldest first."""
    profile = queries.profile_by_email(email.lower())
    assert profile is not None
    slugs = {r.id: r.slug for r in queries.all_resources()}
    return [
        (
            slugs[e.resource_id] if e.resource_id else "global",
            e.old_status,
            e.new_status,
            e.cause,
            e.actor or "",
        )
        for e in queries.events_of_profile(profile.id)
    ]


def snapshot_of_everything() -> list[tuple]:
    """Every row that a refused action must leave untouched."""
    rows: list[tuple] = []
    for model in (Profile, Subscription, StatusEvent, Suppression):
        rows += [tuple(sorted(vars(row).items(), key=str)) for row in db.session.query(model)]
    db.session.rollback()
    return [tuple((k, v) for k, v in row if k != "_sa_instance_state") for row in rows]


def test_signup_then_confirm_records_the_whole_story(newsletter: Resource) -> None:
    result = factories.signup(ALICE, "newsletter", name="Alice", actor=Actor(ip="192.0.2.1"))
    assert result.outcome.send_confirmation
    profile = queries.profile_by_email("alice@example.com")
    assert profile is not None and profile.name == "Alice"
    assert profile.email_hash == email_hash("alice@example.com")
    assert decide(ALICE, "newsletter").reason == "global_unconfirmed"

    factories.confirm(ALICE, "newsletter")
    assert decide(ALICE, "newsletter").allowed
    subscription = queries.subscription_of(profile.id, newsletter.id, "email")
    assert subscription is not None and subscription.confirmed_at is not None
    assert history(ALICE) == [
        ("global", None, "unconfirmed", "signup", ""),
        ("newsletter", None, "unconfirmed", "signup", ""),
        ("global", "unconfirmed", "subscribed", "confirm", ""),
        ("newsletter", "unconfirmed", "subscribed", "confirm", ""),
    ]
    first = queries.events_of_profile(profile.id)[0]
    assert first.ip == "192.0.2.1"


def test_repeating_an_action_records_nothing_new(newsletter: Resource) -> None:
    factories.signup(ALICE, "newsletter")
    factories.confirm(ALICE, "newsletter")
    before = event_count()
    assert not factories.confirm(ALICE, "newsletter").changed
    factories.unsubscribe(ALICE, "newsletter")
    after_unsubscribe = event_count()
    assert not factories.unsubscribe(ALICE, "newsletter").changed
    assert (before + 1, after_unsubscribe) == (after_unsubscribe, event_count())


def test_a_signup_never_knocks_a_subscriber_back_to_unconfirmed(newsletter: Resource) -> None:
    factories.signup(ALICE, "newsletter")
    factories.confirm(ALICE, "newsletter")
    again = factories.signup(ALICE.lower(), "newsletter", name="Mallory")
    assert not again.changed and not again.outcome.send_confirmation
    assert decide(ALICE, "newsletter").allowed
    profile = queries.profile_by_email("alice@example.com")
    assert profile is not None and profile.name is None  # a stranger cannot rename it either


def test_a_signup_to_a_single_opt_in_resource_subscribes_at_once(offers: Resource) -> None:
    result = factories.signup(ALICE, "offers")
    assert not result.outcome.send_confirmation
    assert decide(ALICE, "offers").allowed


def test_a_global_unsubscribe_stops_everything_and_keeps_the_subscriptions(
    newsletter: Resource, brand: Resource
) -> None:
    for slug in ("newsletter", "brand"):
        factories.signup(ALICE, slug)
        factories.confirm(ALICE, slug)
    factories.unsubscribe(ALICE, None, cause=Cause.ONE_CLICK)
    for slug in ("newsletter", "brand"):
        decision = decide(ALICE, slug)
        assert (decision.allowed, decision.reason) == (False, "global_unsubscribed")
        assert decision.subscription_status is Status.SUBSCRIBED
    assert decide(ALICE).reason == "global_unsubscribed"
    # Rule 5: a new confirmed opt-in brings the profile back.
    factories.signup(ALICE, "newsletter")
    factories.confirm(ALICE, "newsletter")
    assert decide(ALICE, "newsletter").allowed and decide(ALICE, "brand").allowed


def test_an_unsubscribe_from_one_resource_leaves_the_others(
    newsletter: Resource, brand: Resource
) -> None:
    for slug in ("newsletter", "brand"):
        factories.signup(ALICE, slug)
        factories.confirm(ALICE, slug)
    factories.unsubscribe(ALICE, "brand")
    assert decide(ALICE, "brand").reason == "subscription_unsubscribed"
    assert decide(ALICE, "newsletter").allowed
    assert decide(ALICE).allowed


def test_subscriptions_are_per_channel(brand: Resource) -> None:
    factories.signup(ALICE, "brand", channel="sms")
    factories.confirm(ALICE, "brand", channel="sms")
    assert decide(ALICE, "brand", "sms").allowed
    assert decide(ALICE, "brand", "email").reason == "no_subscription"


def test_a_hard_bounce_suppresses_the_address_everywhere(
    newsletter: Resource, brand: Resource
) -> None:
    for slug in ("newsletter", "brand"):
        factories.signup(ALICE, slug)
        factories.confirm(ALICE, slug)
    factories.hard_bounce(ALICE, actor=Actor(name="api:ses"))
    assert queries.suppression_of(email_hash("alice@example.com")) is not None
    for slug in ("newsletter", "brand", None):
        assert decide(ALICE, slug).reason == "suppressed"
    assert history(ALICE)[-1] == ("global", "subscribed", "hardbounced", "bounce", "api:ses")
    # The confirmation click proves the mailbox exists again.
    factories.confirm(ALICE, "newsletter")
    assert queries.suppression_of(email_hash("alice@example.com")) is None
    assert decide(ALICE, "newsletter").allowed


def test_a_hard_bounce_for_an_unknown_address_suppresses_it(newsletter: Resource) -> None:
    factories.hard_bounce("nobody@example.com")
    assert queries.profile_by_email("nobody@example.com") is None
    assert decide("nobody@example.com").reason == "suppressed"
    # A later signup is accepted and asks for a confirmation, which lifts the suppression.
    factories.signup("nobody@example.com", "newsletter")
    assert decide("nobody@example.com", "newsletter").reason == "suppressed"
    factories.confirm("nobody@example.com", "newsletter")
    assert decide("nobody@example.com", "newsletter").allowed


def test_a_complaint_makes_a_complainer(newsletter: Resource) -> None:
    factories.signup(ALICE, "newsletter")
    factories.confirm(ALICE, "newsletter")
    factories.complaint(ALICE, "newsletter")
    assert decide(ALICE, "newsletter").reason == "global_complainer"
    assert [row[:3] for row in history(ALICE)[-2:]] == [
        ("global", "subscribed", "complainer"),
        ("newsletter", "subscribed", "complainer"),
    ]


def test_a_suspension_ends_by_itself_and_expire_records_it(newsletter: Resource) -> None:
    now = datetime.now(UTC)
    factories.signup(ALICE, "newsletter", now=now)
    factories.confirm(ALICE, "newsletter", now=now)
    until = now + timedelta(days=14)
    factories.set_status(ALICE, "suspended", suspended_until=until, actor=Actor(name="admin:bob"))
    assert decide(ALICE, "newsletter", now=now).reason == "global_suspended"
    # The decision needs no job to have run: past the end, the suspension is over.
    assert decide(ALICE, "newsletter", now=until).allowed

    report = expire(30, now=until + timedelta(seconds=1))
    assert report.suspensions_ended == 1
    assert history(ALICE)[-2:] == [
        ("global", "subscribed", "suspended", "admin", "admin:bob"),
        ("global", "suspended", "subscribed", "suspension_ended", "system"),
    ]
    assert expire(30, now=until + timedelta(seconds=2)).suspensions_ended == 0


def test_a_paused_subscription_comes_back_after_the_pause(newsletter: Resource) -> None:
    now = datetime.now(UTC)
    factories.signup(ALICE, "newsletter", now=now)
    factories.confirm(ALICE, "newsletter", now=now)
    factories.pause(ALICE, "newsletter", now + timedelta(days=30), now=now)
    assert decide(ALICE, "newsletter", now=now).reason == "subscription_suspended"
    later = now + timedelta(days=31)
    # Any later action on the profile first records the end of the pause.
    factories.signup(ALICE, "newsletter", now=later)
    assert history(ALICE)[-1] == (
        "newsletter",
        "suspended",
        "subscribed",
        "suspension_ended",
        "system",
    )


def test_retention_deletes_old_unconfirmed_signups_and_keeps_every_proof(
    newsletter: Resource, brand: Resource
) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=31)
    factories.signup("ghost@example.com", "newsletter", now=long_ago, actor=Actor(ip="192.0.2.9"))
    factories.signup("half@example.com", "newsletter", now=long_ago)
    factories.signup("half@example.com", "brand", now=long_ago)
    factories.confirm("half@example.com", "brand")
    factories.signup("fresh@example.com", "newsletter")
    events_before = event_count()

    report = expire(30)
    assert (report.subscriptions_deleted, report.profiles_deleted) == (2, 1)
    assert queries.profile_by_email("ghost@example.com") is None
    assert queries.profile_by_email("fresh@example.com") is not None
    assert decide("half@example.com", "brand").allowed
    assert decide("half@example.com", "newsletter").reason == "no_subscription"
    # The ghost's events stay for the counts, with nothing that points at a person.
    assert event_count() == events_before
    orphans = db.session.scalars(select(StatusEvent).where(StatusEvent.profile_id.is_(None))).all()
    assert len(orphans) == 2 and all(e.ip is None and e.user_agent is None for e in orphans)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: factories.set_status(ALICE, "paused"), UnknownStatus),
        (lambda: factories.set_status(ALICE, 9), UnknownStatus),
        (lambda: factories.signup("not-an-address", "newsletter"), InvalidEmail),
        (lambda: factories.signup("a@b@example.com", "newsletter"), InvalidEmail),
        (lambda: factories.signup("x" * 250 + "@example.com", "newsletter"), InvalidEmail),
        (
            lambda: factories.signup("eve@example.com\r\nBcc: x@example.com", "newsletter"),
            InvalidEmail,
        ),
        (lambda: factories.signup(ALICE, "no-such-resource"), UnknownResource),
        (lambda: factories.signup(ALICE, "newsletter", channel="sms"), UnknownChannel),
        (lambda: factories.signup(ALICE, "newsletter", channel="fax"), UnknownChannel),
        (lambda: factories.set_status(ALICE, "suspended"), TransitionRefused),
        (
            lambda: factories.set_status(
                ALICE, "suspended", suspended_until=datetime.now(UTC) - timedelta(days=1)
            ),
            TransitionRefused,
        ),
        (lambda: factories.set_status(ALICE, "subscribed", cause=Cause.API), TransitionRefused),
        (lambda: factories.unsubscribe("stranger@example.com", None), UnknownProfile),
        (lambda: factories.confirm(ALICE, "brand"), TransitionRefused),
    ],
)
def test_bad_input_gets_a_clear_error_and_changes_nothing(
    newsletter: Resource, brand: Resource, call, error: type[Exception]
) -> None:
    factories.signup(ALICE, "newsletter")
    factories.set_status(ALICE, "unsubscribed", actor=Actor(name="admin:bob"))
    before = snapshot_of_everything()
    with pytest.raises(error):
        call()
    assert snapshot_of_everything() == before


def test_neither_an_import_nor_the_api_without_consent_lifts_what_the_customer_stopped(
    newsletter: Resource,
) -> None:
    factories.signup(ALICE, "newsletter")
    factories.confirm(ALICE, "newsletter")
    factories.unsubscribe(ALICE, "newsletter")
    with pytest.raises(TransitionRefused):
        factories.set_status(ALICE, "subscribed", resource="newsletter", cause=Cause.API)
    with pytest.raises(TransitionRefused):
        factories.set_status(
            ALICE, 0, resource="newsletter", cause=Cause.IMPORT, consent_proof=True
        )
    assert decide(ALICE, "newsletter").reason == "subscription_unsubscribed"
    # New consent the platform proves is a confirmed opt-in (rule 5): that lifts it.
    factories.set_status(
        ALICE, "subscribed", resource="newsletter", cause=Cause.API, consent_proof=True
    )
    assert decide(ALICE, "newsletter").allowed


def test_a_batch_decision_answers_every_address_in_order(newsletter: Resource) -> None:
    factories.signup("a@example.com", "newsletter")
    factories.confirm("a@example.com", "newsletter")
    factories.signup("b@example.com", "newsletter")
    factories.hard_bounce("c@example.com")
    asked = ["A@example.com", "b@example.com", "c@example.com", "d@example.com", "bad address"]
    answers = decide_many(asked, "newsletter")
    assert [(email, d.allowed, d.reason) for email, d in answers] == [
        ("a@example.com", True, "subscribed"),
        ("b@example.com", False, "global_unconfirmed"),
        ("c@example.com", False, "suppressed"),
        ("d@example.com", False, "unknown_profile"),
        ("bad address", False, "invalid_email"),
    ]


# --- Concurrency: two changes to one profile at once ---------------------------------------------


def run_together(app: Flask, *calls) -> list[BaseException]:  # type: ignore[no-untyped-def]
    """Run each call in its own thread, app context and database connection, started together."""
    barrier = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def worker(call) -> None:  # type: ignore[no-untyped-def]
        with app.app_context():
            try:
                barrier.wait()
                call()
            except BaseException as error:  # reported to the test below
                errors.append(error)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_two_concurrent_changes_to_one_profile_both_land(
    app: Flask, newsletter: Resource, brand: Resource
) -> None:
    for slug in ("newsletter", "brand"):
        factories.signup(ALICE, slug)
        factories.confirm(ALICE, slug)
    db.session.remove()
    for round_number in range(5):
        until = datetime.now(UTC) + timedelta(days=1 + round_number)
        # Both change the global status: without a lock, each would overwrite the other's.
        errors = run_together(
            app,
            lambda: factories.unsubscribe(ALICE, None),
            lambda until=until: factories.set_status(
                ALICE, "suspended", suspended_until=until, actor=Actor(name="admin:bob")
            ),
        )
        assert errors == []
        # Either order is fine; the end state must be the later change applied to the earlier.
        assert decide(ALICE, "newsletter").reason in {"global_suspended", "global_unsubscribed"}
        db.session.remove()
        factories.set_status(ALICE, "subscribed", actor=Actor(name="admin:bob"))
        db.session.remove()
    events = history(ALICE)
    assert sum(1 for e in events if e[3] == "unsubscribe_link") == 5
    assert sum(1 for e in events if e[2] == "suspended" and e[3] == "admin") == 5
    # Every event follows on from the one before it in its scope: no update was lost.
    last: dict[str, str | None] = {}
    for scope, old, new, _cause, _actor in events:
        assert last.get(scope) == old
        last[scope] = new


@pytest.mark.skipif(not on_postgres(), reason="SQLite's BEGIN IMMEDIATE lets no other writer in")
def test_the_locked_read_sees_a_change_committed_while_it_waited(
    app: Flask, newsletter: Resource
) -> None:
    """A transaction that read a profile before locking it (as the admin view's change does)
    must not decide on that earlier copy: the lock's read brings the committed change in."""
    factories.signup(ALICE, "newsletter")
    factories.confirm(ALICE, "newsletter")
    db.session.remove()
    with write_transaction():
        profile = queries.profile_by_email(ALICE.lower())
        assert profile is not None and profile.status == "subscribed"
        with db.engine.begin() as other:  # another request, committed before our lock
            other.execute(
                update(Profile).where(Profile.email == ALICE.lower()).values(status="unsubscribed")
            )
        locked = queries.profile_by_email(ALICE.lower(), for_update=True)
        assert locked is profile
        assert locked.status == "unsubscribed"


def test_two_first_signups_of_one_address_make_one_profile(
    app: Flask, newsletter: Resource, brand: Resource
) -> None:
    db.session.remove()
    errors = run_together(
        app,
        lambda: factories.signup("new@example.com", "newsletter"),
        lambda: factories.signup("new@example.com", "brand"),
    )
    assert errors == []
    assert db.session.scalar(select(func.count()).select_from(Profile)) == 1
    events = history("new@example.com")
    assert events.count(("global", None, "unconfirmed", "signup", "")) == 1
    assert {e[0] for e in events} == {"global", "newsletter", "brand"}


# --- Property: the service records exactly the changes the rules make ----------------------------

service_steps = st.lists(
    st.tuples(
        st.sampled_from(
            ["signup", "confirm", "unsubscribe", "complaint", "bounce", "pause", "admin"]
        ),
        st.sampled_from(["newsletter", None]),
        st.sampled_from(list(Status)),
    ),
    min_size=1,
    max_size=12,
)


def perform(verb: str, email: str, slug: str | None, status: Status, now: datetime):  # type: ignore[no-untyped-def]
    """One step of a random sequence, through the same service functions the app uses."""
    later = now + timedelta(days=14)
    calls = {
        "signup": lambda: factories.signup(email, "newsletter", now=now),
        "confirm": lambda: factories.confirm(email, slug, now=now),
        "unsubscribe": lambda: factories.unsubscribe(email, slug, now=now),
        "complaint": lambda: factories.complaint(email, slug, now=now),
        "bounce": lambda: factories.hard_bounce(email, now=now),
        "pause": lambda: factories.pause(email, slug, later, now=now),
        "admin": lambda: factories.set_status(
            email,
            status,
            resource=slug,
            suspended_until=later if status is Status.SUSPENDED else None,
            now=now,
        ),
    }
    return calls[verb]()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=service_steps, number=st.integers(min_value=0, max_value=10**9))
def test_events_match_status_changes_for_any_sequence(
    newsletter: Resource, steps: list[tuple[str, str | None, Status]], number: int
) -> None:
    email = f"p{number}.{len(steps)}@example.com"
    now = datetime.now(UTC)
    for verb, slug, status in steps:
        before = event_count()
        try:
            result = perform(verb, email, slug, status, now)
        except (TransitionRefused, UnknownProfile):
            assert event_count() == before
            continue
        # One event per status change, and the events are exactly the changes.
        assert event_count() == before + len(result.events)
        # Rule 9: the same action again changes nothing and records nothing.
        assert perform(verb, email, slug, status, now).events == ()
        assert event_count() == before + len(result.events)


def test_an_entity_the_transaction_holds_reads_what_a_status_change_wrote(
    app: Flask, newsletter: Resource
) -> None:
    """change_status writes with Core statements: a profile or subscription entity that the
    session already holds must show the new status for the rest of the transaction, and the
    commit must not write its old one back."""
    from app.services import statuses
    from app.status import Channel, Unsubscribe

    factories.signup(ALICE, "newsletter")
    factories.confirm(ALICE, "newsletter")
    address = ALICE.lower()
    with write_transaction():
        profile = queries.profile_by_email(address)
        assert profile is not None
        subscription = queries.subscription_of(profile.id, newsletter.id, "email")
        assert subscription is not None
        statuses.change_status(address, Unsubscribe(Cause.ADMIN), "newsletter", Channel.EMAIL)
        assert subscription.status == Status.UNSUBSCRIBED.value
        statuses.change_status(address, Unsubscribe(Cause.ADMIN), None, Channel.EMAIL)
        assert profile.status == Status.UNSUBSCRIBED.value
        profile.name = "Alice"  # an entity's own change is still written with the commit
    db.session.expire_all()
    assert decide(address, "newsletter").reason == "global_unsubscribed"
    reread = queries.profile_by_email(address)
    assert reread is not None and reread.name == "Alice"
    assert [row[:3] for row in history(address)][-2:] == [
        ("newsletter", "subscribed", "unsubscribed"),
        ("global", "subscribed", "unsubscribed"),
    ]
