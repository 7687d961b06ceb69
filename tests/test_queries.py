"""The one bulk query that writes the send rule in SQL must agree with ``can_send``: a table test
over every combination of global state, subscription state and suppression."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from app import queries
from app.addresses import email_hash
from app.extensions import db
from app.models import Profile, Resource, Subscription, Suppression
from app.services.eligibility import decide_many
from app.status import State, Status, can_send

NOW = datetime.now(UTC)
STATES: list[State] = [
    *(State(status) for status in Status if status is not Status.SUSPENDED),
    State(Status.SUSPENDED, NOW + timedelta(days=3), Status.SUBSCRIBED),
    State(Status.SUSPENDED, NOW - timedelta(days=3), Status.SUBSCRIBED),
    State(Status.SUSPENDED, NOW - timedelta(days=3), Status.UNSUBSCRIBED),
]


def test_the_audience_query_agrees_with_can_send_for_every_combination(
    newsletter: Resource, brand: Resource
) -> None:
    expected: set[str] = set()
    combinations = itertools.product(STATES, [*STATES, None], [False, True])
    for number, (global_state, subscription_state, suppressed) in enumerate(combinations):
        email = f"p{number}@example.com"
        profile = Profile(email=email, email_hash=email_hash(email))
        profile.state = global_state
        db.session.add(profile)
        db.session.flush()
        if subscription_state is not None:
            subscription = Subscription(
                profile_id=profile.id, resource_id=newsletter.id, channel="email"
            )
            subscription.state = subscription_state
            db.session.add(subscription)
        # Noise the query must ignore: the same profile on another resource and channel.
        other = Subscription(profile_id=profile.id, resource_id=brand.id, channel="sms")
        other.state = State(Status.SUBSCRIBED)
        db.session.add(other)
        if suppressed:
            db.session.add(Suppression(email_hash=profile.email_hash, email=email, reason="bounce"))
        if can_send(
            global_state, subscription_state, suppressed=suppressed, resource_named=True, now=NOW
        ).allowed:
            expected.add(email)
    db.session.commit()

    streamed = [row.email for row in queries.stream_audience(newsletter.id, "email", NOW)]
    assert sorted(streamed) == sorted(expected)
    assert len(streamed) == len(set(streamed))
    assert len(expected) == 4  # subscribed or ended suspension, on both levels, not suppressed

    # The batch decision, which reads row by row and asks can_send, gives the same answer.
    emails = [f"p{n}@example.com" for n in range(len(STATES) * (len(STATES) + 1) * 2)]
    allowed = {email for email, d in decide_many(emails, "newsletter", now=NOW) if d.allowed}
    assert allowed == expected


def test_the_audience_streams_in_batches_without_loading_everything(newsletter: Resource) -> None:
    for number in range(250):
        email = f"r{number}@example.com"
        profile = Profile(email=email, email_hash=email_hash(email))
        profile.state = State(Status.SUBSCRIBED)
        db.session.add(profile)
        db.session.flush()
        subscription = Subscription(
            profile_id=profile.id, resource_id=newsletter.id, channel="email"
        )
        subscription.state = State(Status.SUBSCRIBED)
        db.session.add(subscription)
    db.session.commit()
    rows = queries.stream_audience(newsletter.id, "email", NOW, batch_size=7)
    first = next(rows)
    assert first.email == "r0@example.com"
    assert 1 + sum(1 for _ in rows) == 250
