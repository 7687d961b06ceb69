"""The change feed (issue 15): ``GET /api/v1/changes`` through the test client, as a platform
that mirrors statuses reads it: the shape, paging, a cursor that stays valid, the 400s, and
erasures. The concurrency proofs are in test_change_feed_concurrency.py."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.extensions import db
from app.models import Resource, StatusEvent
from app.openapi import openapi_document
from app.services import api_keys, preferences
from app.services.statuses import Actor
from tests import factories
from tests.helpers import ALICE, BOB, count
from tests.test_api import Api, conforms
from tests.test_migrations import empty_database_url  # noqa: F401  (a fixture)


@pytest.fixture
def api(client: FlaskClient, app: Flask) -> Api:
    _row, key = api_keys.create_key("mirror")
    return Api(client, key)


def page(api: Api, **args: Any) -> dict[str, Any]:
    answer = api("get", "/changes", query_string=args)
    assert answer.status_code == 200, answer.json
    conforms(answer.json, "ChangePage")
    body: dict[str, Any] = answer.json
    return body


def read_all(api: Api, expected: int, *, after: str | None = None, limit: int = 1000) -> tuple:
    """Every change after ``after``, page by page, and the last cursor. On PostgreSQL the feed
    waits for every older transaction of the server (other test runs share it) to end, so a
    reader polls a little until the changes it expects are there."""
    changes: list[dict[str, Any]] = []
    cursor = after
    deadline = time.monotonic() + 20
    while True:
        args = {"limit": limit} if cursor is None else {"after": cursor, "limit": limit}
        body = page(api, **args)
        changes += body["changes"]
        if not body["changes"]:
            assert body["next"] == cursor or cursor is None
            if len(changes) >= expected or time.monotonic() > deadline:
                return changes, body["next"]
            time.sleep(0.05)
        cursor = body["next"]


def summary(change: dict[str, Any]) -> tuple:
    return (
        change["kind"],
        change["email"],
        change["scope"],
        change["old_status"],
        change["new_status"],
        change["cause"],
    )


def test_the_feed_lists_each_status_change_in_the_order_it_happened(
    api: Api, newsletter: Resource
) -> None:
    factories.signup(ALICE, "newsletter")
    factories.confirm(ALICE, "newsletter")
    factories.unsubscribe(ALICE, None, actor=Actor(name="admin@example.com"))

    changes, _ = read_all(api, 5)

    assert [summary(c) for c in changes] == [
        ("status", ALICE, "global", None, "unconfirmed", "signup"),
        ("status", ALICE, "newsletter", None, "unconfirmed", "signup"),
        ("status", ALICE, "global", "unconfirmed", "subscribed", "confirm"),
        ("status", ALICE, "newsletter", "unconfirmed", "subscribed", "confirm"),
        ("status", ALICE, "global", "subscribed", "unsubscribed", "unsubscribe_link"),
    ]
    profile_id = factories.queries.profile_by_email(ALICE).id  # type: ignore[union-attr]
    assert {c["profile"] for c in changes} == {profile_id}
    assert changes[1]["resource"] == "newsletter" and changes[1]["channel"] == "email"
    assert changes[0]["resource"] is None and changes[0]["channel"] is None
    assert changes[-1]["actor"] == "admin@example.com"


def test_nothing_new_is_an_empty_list_and_the_same_cursor(api: Api, newsletter: Resource) -> None:
    empty = page(api)
    assert empty["changes"] == []
    assert page(api, after=empty["next"]) == empty

    factories.signup(ALICE, "newsletter")
    changes, cursor = read_all(api, 2, after=empty["next"])
    assert len(changes) == 2
    assert page(api, after=cursor) == {"changes": [], "next": cursor}


def test_pages_add_up_to_the_whole_feed_and_a_cursor_stays_valid(
    api: Api, newsletter: Resource
) -> None:
    for number in range(8):
        factories.signup(f"p{number}@example.com", "newsletter")  # two changes each
    whole, _ = read_all(api, 16)
    assert len(whole) == 16

    paged: list[dict[str, Any]] = []
    cursors: list[str] = []
    body = page(api, limit=5)
    while body["changes"]:
        assert len(body["changes"]) <= 5
        paged += body["changes"]
        cursors.append(body["next"])
        body = page(api, after=body["next"], limit=5)
    assert paged == whole
    assert [len(page(api, after=c, limit=1000)["changes"]) for c in cursors] == [11, 6, 1, 0]

    # Later changes come after every old cursor, which reads on exactly where it stopped.
    factories.confirm("p0@example.com", "newsletter")
    later, _ = read_all(api, 13, after=cursors[0])
    assert later[:11] == whole[5:]
    assert [summary(c)[4] for c in later[11:]] == ["subscribed", "subscribed"]


def test_the_default_page_is_a_hundred_changes(api: Api, newsletter: Resource) -> None:
    for number in range(51):
        factories.signup(f"p{number}@example.com", "newsletter")
    read_all(api, 102)
    assert len(page(api)["changes"]) == 100
    assert len(page(api, limit=1000)["changes"]) == 102


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"after": ""}, "after"),
        ({"after": "abc"}, "after"),
        ({"after": "1.2.3"}, "after"),
        ({"after": "1" * 19 + ".0.0.0"}, "after"),
        ({"after": "0.0.2.0"}, "after"),
        ({"after": "01.0.0.0"}, "after"),
        ({"after": "-1.0.0.0"}, "after"),
        ({"after": f"{2**63}.0.0.0"}, "after"),
        ({"after": "9" * 40 + ".0.0.0"}, "after"),
        ({"after": "\uff10.0.0.0"}, "after"),  # a full-width digit
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "-5"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"limit": "99999999999999999999"}, "limit"),
    ],
)
def test_a_malformed_cursor_or_limit_is_a_400_json_error(
    api: Api, args: dict[str, str], field: str
) -> None:
    answer = api("get", "/changes", query_string=args)
    assert answer.status_code == 400
    conforms(answer.json, "Error")
    assert answer.json["error"]["field"] == field
    assert answer.json["error"]["code"] == f"invalid_{'cursor' if field == 'after' else 'limit'}"


def test_the_feed_needs_an_api_key(client: FlaskClient) -> None:
    assert client.get("/api/v1/changes").status_code == 401


def test_an_erased_profile_appears_as_an_erasure_and_its_changes_without_an_address(
    api: Api, newsletter: Resource
) -> None:
    factories.signup(ALICE, "newsletter")
    factories.signup(BOB, "newsletter")
    before, cursor = read_all(api, 4)
    alice_id = before[0]["profile"]

    preferences.erase(alice_id, actor=Actor(name=f"admin for {ALICE}"))
    factories.confirm(BOB, "newsletter")

    # A mirror that had read on: the erasure, then what happened after it; nothing twice.
    after, _ = read_all(api, 3, after=cursor)
    assert [summary(c)[:2] for c in after] == [("erasure", None), ("status", BOB), ("status", BOB)]
    erasure = after[0]
    assert erasure["profile"] == alice_id and erasure["cause"] == "erasure"
    assert erasure["actor"] is None  # it named her address
    assert erasure["new_status"] is None and erasure["scope"] == "global"

    # A mirror starting now: her changes with neither address nor id, then her erasure.
    whole, _ = read_all(api, 7)
    assert [(c["kind"], c["email"], c["profile"]) for c in whole[:4]] == [
        ("status", None, None),
        ("status", None, None),
        ("status", BOB, before[2]["profile"]),
        ("status", BOB, before[2]["profile"]),
    ]
    assert whole[4:] == after
    assert ALICE not in str(whole)


def test_an_erasure_by_the_customer_names_no_actor_and_comes_once(
    api: Api, newsletter: Resource
) -> None:
    factories.signup(ALICE, "newsletter")
    alice_id = read_all(api, 2)[0][0]["profile"]
    preferences.erase(alice_id, actor=Actor(ip="192.0.2.1"))
    changes, _ = read_all(api, 3)
    assert [c["kind"] for c in changes] == ["status", "status", "erasure"]
    assert changes[2]["actor"] is None and changes[2]["profile"] == alice_id


def test_a_bounce_of_an_unknown_address_is_not_in_the_feed(api: Api) -> None:
    """It changes the suppression list only: no profile, no status, nothing to mirror."""
    factories.hard_bounce("stranger@example.com")
    assert page(api)["changes"] == []


def test_every_event_is_in_the_feed_once(api: Api, newsletter: Resource) -> None:
    """The feed and the event table agree, row for row (the import's bulk writer included:
    its events are placed by the same trigger, tests/test_change_feed_concurrency.py)."""
    for number in range(5):
        factories.signup(f"p{number}@example.com", "newsletter")
        factories.confirm(f"p{number}@example.com", "newsletter")
    changes, _ = read_all(api, 20)
    assert len(changes) == count(StatusEvent) == 20
    stored = db.session.scalars(db.select(StatusEvent).order_by(StatusEvent.id)).all()
    assert [c["at"] for c in changes] == [event.occurred_at.isoformat() for event in stored]


def test_the_openapi_document_describes_the_feed_and_the_change() -> None:
    document = openapi_document()
    operation = document["paths"]["/changes"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"after", "limit"}
    assert "Change" in document["components"]["schemas"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChangePage"
    }


def test_events_written_before_the_migration_come_first_in_id_order(
    empty_database_url: str,  # noqa: F811  (the fixture imported above)
) -> None:
    """Migration 0014 gives the events already there the place 0: they are final, and come
    before every later change, in the order of their ids."""
    from flask_migrate import upgrade
    from sqlalchemy import text

    from app import create_app
    from app.queries.changes import START
    from app.services import changes as change_feed

    app = create_app({"TESTING": True, "DATABASE_URL": empty_database_url})
    with app.app_context():
        upgrade(revision="0013")
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO profiles (email, email_hash, global_status, created_at,"
                    " updated_at, link_key) VALUES ('old@example.com', 'h', 'subscribed',"
                    " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 'k')"
                )
            )
            for status in ("subscribed", "unsubscribed"):
                connection.execute(
                    text(
                        "INSERT INTO status_events (profile_id, new_status, cause, occurred_at)"
                        " VALUES (1, :status, 'admin', CURRENT_TIMESTAMP)"
                    ),
                    {"status": status},
                )
        upgrade()
        factories.set_status("old@example.com", "complainer")

        places = db.session.execute(
            text("SELECT feed_xid FROM status_events ORDER BY id")
        ).scalars()
        assert list(places)[:2] == [0, 0]
        deadline = time.monotonic() + 20
        while True:
            db.session.rollback()
            changes = change_feed.changes_after(START, 10).changes
            if len(changes) == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert [(c["email"], c["new_status"]) for c in changes] == [
            ("old@example.com", "subscribed"),
            ("old@example.com", "unsubscribed"),
            ("old@example.com", "complainer"),
        ]
        db.session.remove()
        db.engine.dispose()
