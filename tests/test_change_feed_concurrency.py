"""The change feed never skips a change and keeps each profile's changes in order, under real
concurrency (issue 15): two real PostgreSQL connections whose transactions commit in the
opposite order of their ids, and a property test of a reader polling while threads write.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.engine import Connection

from app.changes import status_change_document
from app.database import utcnow
from app.extensions import db
from app.models import Profile, Resource, StatusEvent
from app.queries.changes import START, FeedKey
from app.services import changes as change_feed
from app.services import preferences
from app.services.errors import NotFound
from app.services.events import EventType, IncomingEvent, record_events
from app.services.statuses import Actor
from app.status import RuleError
from tests import factories
from tests.conftest import on_postgres
from tests.helpers import ALICE, BOB

postgres_only = pytest.mark.skipif(not on_postgres(), reason="needs TEST_DATABASE_URL")


def drain(after: FeedKey, expected: int, limit: int = 1000) -> tuple[list[dict[str, Any]], str]:
    """Every change after ``after``, and the last cursor. The feed waits for every older
    transaction of the PostgreSQL server (another test run may hold one for a moment), so a
    reader polls until it has the changes it expects, for at most 20 s."""
    found: list[dict[str, Any]] = []
    cursor = change_feed.format_cursor(after)
    deadline = time.monotonic() + 20
    while True:
        db.session.rollback()  # a fresh snapshot for each read, as each request has
        page = change_feed.changes_after(change_feed.parse_cursor(cursor), limit)
        found += page.changes
        cursor = page.next
        if not page.changes and (len(found) >= expected or time.monotonic() > deadline):
            return found, cursor


def end_of_feed() -> FeedKey:
    """The cursor after everything in the feed now."""
    _, cursor = drain(START, 0)
    return change_feed.parse_cursor(cursor)


def insert_event(connection: Connection, profile_id: int, new_status: str) -> int:
    """A status event written by hand in ``connection``'s open transaction, as a service would."""
    return int(
        connection.execute(
            text(
                "INSERT INTO status_events (profile_id, old_status, new_status, cause, occurred_at)"
                " VALUES (:profile, 'subscribed', :status, 'admin', now()) RETURNING id"
            ),
            {"profile": profile_id, "status": new_status},
        ).scalar_one()
    )


def naive_read(connection: Connection, after_id: int) -> list[int]:
    """A reader that pages by id alone: the events with a larger id than the last it saw."""
    found = connection.execute(
        text("SELECT id FROM status_events WHERE id > :after ORDER BY id"), {"after": after_id}
    )
    return [row[0] for row in found]


@pytest.fixture
def two_profiles(app: Flask, newsletter: Resource) -> tuple[int, int]:
    alice = factories.signup(ALICE, "newsletter").profile_id
    bob = factories.signup(BOB, "newsletter").profile_id
    assert alice is not None and bob is not None
    return alice, bob


@postgres_only
def test_a_transaction_that_commits_after_a_younger_one_is_not_skipped(
    app: Flask, two_profiles: tuple[int, int]
) -> None:
    alice, bob = two_profiles
    start = end_of_feed()
    naive_cursor = max(db.session.scalars(select(StatusEvent.id)))
    with db.engine.connect() as older, db.engine.connect() as younger, db.engine.connect() as naive:
        older.begin()
        older_id = insert_event(older, alice, "unsubscribed")
        younger.begin()
        younger_id = insert_event(younger, bob, "unsubscribed")
        assert older_id < younger_id
        younger.commit()

        # The younger one is committed and visible, the older one still running.
        seen_by_naive = naive_read(naive, naive_cursor)
        assert seen_by_naive == [younger_id]
        naive_cursor = seen_by_naive[-1]
        db.session.rollback()
        waiting = change_feed.changes_after(start, 1000)
        assert waiting.changes == []  # the feed waits for the older transaction
        assert waiting.next == change_feed.format_cursor(start)

        older.commit()
        assert naive_read(naive, naive_cursor) == []  # paging by id lost the older one for good

    changes, _ = drain(start, 2)
    assert [(c["email"], c["new_status"]) for c in changes] == [
        (ALICE, "unsubscribed"),
        (BOB, "unsubscribed"),
    ]


@postgres_only
def test_a_profile_s_changes_keep_their_order_when_an_older_transaction_writes_last(
    app: Flask, two_profiles: tuple[int, int]
) -> None:
    """An older transaction (it wrote first, elsewhere) that changes a profile after a younger
    one did, as a batch of provider events waiting on the profile's lock does: its change
    comes after the younger one's in the feed too."""
    alice, bob = two_profiles
    start = end_of_feed()
    with db.engine.connect() as older, db.engine.connect() as younger:
        older.begin()
        insert_event(older, bob, "complainer")  # the older transaction's id is taken here
        younger.begin()
        insert_event(younger, alice, "unsubscribed")
        younger.commit()
        insert_event(older, alice, "complainer")
        older.commit()

    changes, _ = drain(start, 3)
    alice_changes = [c["new_status"] for c in changes if c["email"] == ALICE]
    assert alice_changes == ["unsubscribed", "complainer"]
    assert len(changes) == 3


@postgres_only
def test_the_import_s_bulk_writer_gets_its_place_without_code(
    app: Flask, two_profiles: tuple[int, int]
) -> None:
    """The trigger fills the place of rows written by any writer, raw SQL included."""
    alice, _ = two_profiles
    with db.engine.begin() as connection:
        insert_event(connection, alice, "unsubscribed")
        current = connection.execute(text("SELECT pg_current_xact_id()::text::bigint")).scalar()
        place = connection.execute(text("SELECT max(feed_xid) FROM status_events")).scalar()
    assert place == current


# --- A reader polling while writers write ------------------------------------------------------


ADDRESSES = [f"racer{number}@example.com" for number in range(4)]
ACTION = st.one_of(
    st.tuples(st.just("signup"), st.sampled_from(ADDRESSES)),
    st.tuples(st.just("confirm"), st.sampled_from(ADDRESSES)),
    st.tuples(st.just("unsubscribe"), st.sampled_from(ADDRESSES), st.booleans()),
    # One transaction changing several profiles, as a provider's batch of events does.
    st.tuples(st.just("batch"), st.lists(st.sampled_from(ADDRESSES), min_size=2, max_size=4)),
)
# Refusals the rules may answer a random action with (confirming a stranger); anything else
# raised in a writer fails the test.
REFUSED = (NotFound, RuleError)


def perform(action: tuple[Any, ...]) -> None:
    kind, target, *rest = action
    if kind == "signup":
        factories.signup(target, "newsletter")
    elif kind == "confirm":
        factories.confirm(target, "newsletter")
    elif kind == "unsubscribe":
        factories.unsubscribe(target, None if rest[0] else "newsletter")
    else:
        events = [
            IncomingEvent(
                type=EventType.COMPLAINT if number % 2 else EventType.UNSUBSCRIBE,
                email=address,
                event_id=uuid.uuid4().hex,
                occurred_at=utcnow(),
            )
            for number, address in enumerate(sorted(set(target)))
        ]
        record_events(events, source="api", actor=Actor(name="api:racer"))


def in_thread(
    app: Flask, work: Callable[[], None], errors: list[BaseException]
) -> threading.Thread:
    def run() -> None:
        with app.app_context():
            try:
                work()
            except BaseException as error:  # handed to the test's thread, which fails on it
                errors.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def documents_since(last_id: int) -> list[tuple[int, dict[str, Any]]]:
    """Every event after ``last_id`` as the feed's document, with its id, read plainly."""
    rows = db.session.execute(
        select(StatusEvent, Profile.email, Resource.slug)
        .outerjoin(Profile, Profile.id == StatusEvent.profile_id)
        .outerjoin(Resource, Resource.id == StatusEvent.resource_id)
        .where(StatusEvent.id > last_id)
        .order_by(StatusEvent.id)
    )
    return [
        (event.id, status_change_document(event, email=email, resource_slug=slug))
        for event, email, slug in rows
    ]


def as_key(document: dict[str, Any]) -> str:
    return json.dumps(document, sort_keys=True)


@pytest.mark.slow
@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(writers=st.lists(st.lists(ACTION, min_size=1, max_size=6), min_size=2, max_size=4))
def test_a_reader_polling_during_concurrent_writes_sees_every_change_once_in_profile_order(
    app: Flask, newsletter: Resource, writers: list[list[tuple[Any, ...]]]
) -> None:
    db.session.rollback()
    start = end_of_feed()
    last_id = db.session.scalar(select(db.func.coalesce(db.func.max(StatusEvent.id), 0)))
    errors: list[BaseException] = []
    done = threading.Event()
    read: list[dict[str, Any]] = []

    def write(actions: list[tuple[Any, ...]]) -> Callable[[], None]:
        def work() -> None:
            for action in actions:
                try:
                    perform(action)
                except REFUSED:
                    db.session.rollback()

        return work

    def poll() -> None:
        cursor = start
        while not done.is_set():
            db.session.rollback()
            page = change_feed.changes_after(cursor, 3)  # small pages: many reads mid-write
            read.extend(page.changes)
            cursor = change_feed.parse_cursor(page.next)
        expected = len(documents_since(last_id))
        rest, _ = drain(cursor, expected - len(read))
        read.extend(rest)

    threads = [in_thread(app, write(actions), errors) for actions in writers]
    reader = in_thread(app, poll, errors)
    for thread in threads:
        thread.join(timeout=60)
    done.set()
    reader.join(timeout=60)
    assert errors == []
    assert not any(thread.is_alive() for thread in [*threads, reader])

    db.session.rollback()
    stored = documents_since(last_id)
    # Every change once: the same documents, each as often as it was stored (once).
    assert Counter(as_key(d) for d in read) == Counter(as_key(d) for _, d in stored)
    # Each profile's changes in the order they were written (under the profile's lock, so
    # in id order).
    by_profile_read: dict[str, list[str]] = defaultdict(list)
    by_profile_stored: dict[str, list[str]] = defaultdict(list)
    for document in read:
        by_profile_read[document["email"]].append(as_key(document))
    for _, document in stored:
        by_profile_stored[document["email"]].append(as_key(document))
    assert by_profile_read == by_profile_stored


@postgres_only
def test_an_erasure_waits_for_a_change_of_the_profile_in_flight_and_comes_after_it(
    app: Flask, two_profiles: tuple[int, int]
) -> None:
    """The erasure locks the profile first: a change committing meanwhile is scrubbed with the
    rest (without the lock its IP stayed, the erasure having updated the events before it), and
    the feed's erasure entry comes after it."""
    alice, _ = two_profiles
    start = end_of_feed()
    errors: list[BaseException] = []
    with db.engine.connect() as changing:
        changing.begin()
        changing.execute(text("SELECT id FROM profiles WHERE id = :id FOR UPDATE"), {"id": alice})
        changing.execute(
            text(
                "INSERT INTO status_events (profile_id, old_status, new_status, cause, occurred_at,"
                " ip) VALUES (:profile, 'unconfirmed', 'unsubscribed', 'preferences', now(),"
                " '198.51.100.7')"
            ),
            {"profile": alice},
        )
        eraser = in_thread(app, lambda: preferences.erase(alice, actor=Actor()), errors)
        time.sleep(1)  # the erasure is waiting for the profile's lock
        changing.commit()
    eraser.join(timeout=30)
    assert errors == [] and not eraser.is_alive()

    db.session.rollback()
    assert db.session.scalar(text("SELECT count(*) FROM status_events WHERE ip IS NOT NULL")) == 0
    changes, _ = drain(start, 2)
    assert [(c["kind"], c["new_status"], c["email"]) for c in changes] == [
        ("status", "unsubscribed", None),
        ("erasure", None, None),
    ]
