"""The CSV import service: each rejection with its line and reason, the status rules respected,
the events it records, and a second import of the same file changing nothing (rule 9)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from flask import Flask
from hypothesis import example, given
from hypothesis import strategies as st
from sqlalchemy import func, select

from app import queries
from app.addresses import email_hash
from app.database import lengthen_wal_checkpoint, write_transaction
from app.extensions import db
from app.models import (
    ConsentRecord,
    ImportJob,
    Profile,
    Resource,
    StatusEvent,
    Subscription,
    Suppression,
    SuppressionEvent,
)
from app.services import imports, statuses
from app.services.csv_injection import FORMULA_STARTS, spreadsheet_safe, unquoted
from app.services.eligibility import decide
from app.services.imports import ImportFileError
from app.services.subscriptions import request_signup
from app.status import Cause, SetStatus, Snapshot, State, Status, TransitionRefused, apply
from tests import factories
from tests.conftest import on_postgres
from tests.helpers import count, database_state

ADMIN = "admin@example.com"
HEADER = "email,name,status,resource,consent date\n"


def write(tmp_path: Path, text: str, name: str = "import.csv") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def run(path: str, slug: str | None = "newsletter") -> ImportJob:
    job = imports.import_file(path, slug, actor=ADMIN)
    db.session.rollback()
    return job


def rejected(job: ImportJob) -> list[tuple[int, str | None, str]]:
    return [(r.line, r.email, r.reason) for r in queries.import_rejections(job.id, limit=1000)]


def profile(email: str) -> Profile:
    found = queries.profile_by_email(email)
    assert found is not None, email
    return found


def subscription_status(email: str, resource: Resource) -> str | None:
    found = queries.subscription_of(profile(email).id, resource.id, "email")
    return found.status if found else None


def test_good_rows_land_with_their_events_consent_and_actor(
    tmp_path: Path, newsletter: Resource
) -> None:
    path = write(
        tmp_path,
        HEADER
        + "Ann@Example.com,Ann,subscribed,,2024-05-01\n"
        + "bob@example.com,Bob,unsubscribed,,\n"
        + "carl@example.com,,0,newsletter,2024-05-02T10:00:00Z\n",
    )
    job = run(path)
    assert (job.state, job.processed_rows, job.imported_rows, job.rejected_rows) == (
        "done",
        3,
        3,
        0,
    )
    ann = profile("ann@example.com")
    assert (ann.name, ann.status) == ("Ann", "subscribed")
    assert subscription_status("ann@example.com", newsletter) == "subscribed"
    # An unsubscribed row for a new address makes a profile that was never confirmed.
    assert profile("bob@example.com").status == "unconfirmed"
    assert subscription_status("bob@example.com", newsletter) == "unsubscribed"
    assert subscription_status("carl@example.com", newsletter) == "subscribed"

    events = db.session.scalars(
        select(StatusEvent).where(StatusEvent.profile_id == ann.id).order_by(StatusEvent.id)
    ).all()
    assert [(e.resource_id, e.old_status, e.new_status, e.cause, e.actor) for e in events] == [
        (None, None, "subscribed", "import", ADMIN),
        (newsletter.id, None, "subscribed", "import", ADMIN),
    ]
    record = db.session.scalars(select(ConsentRecord)).all()
    assert sorted((r.form, r.confirmed_at) for r in record) == [
        ("import", datetime(2024, 5, 1, tzinfo=UTC)),
        ("import", datetime(2024, 5, 2, 10, tzinfo=UTC)),
    ]
    assert queries.subscription_of(ann.id, newsletter.id, "email").confirmed_at == datetime(  # type: ignore[union-attr]
        2024, 5, 1, tzinfo=UTC
    )


def test_each_bad_row_is_rejected_with_its_line_and_reason(
    tmp_path: Path, newsletter: Resource
) -> None:
    factories.hard_bounce("bounced@example.com")
    future = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    path = write(
        tmp_path,
        HEADER
        + "good@example.com,Good,subscribed,,2024-01-01\n"  # line 2
        + "not-an-address,X,subscribed,,2024-01-01\n"  # 3
        + "a@example.com,A,maybe,,\n"  # 4
        + "b@example.com,B,,,\n"  # 5
        + "c@example.com,C,unsubscribed,nosuchlist,\n"  # 6
        + "good@example.com,Again,unsubscribed,,\n"  # 7
        + "d@example.com,D,subscribed,,yesterday\n"  # 8
        + f"e@example.com,E,subscribed,,{future}\n"  # 9
        + "f@example.com,F,subscribed,,\n"  # 10
        + "bounced@example.com,Z,subscribed,,2024-01-01\n"  # 11
        + "\n"  # 12: blank lines are skipped, and still counted as lines
        + '"g@example.com","Multi\nline",unsubscribed,,\n'  # 13-14
        + "h@example.com,H,suspended,,\n",  # 15
    )
    job = run(path)
    assert rejected(job) == [
        (3, "not-an-address", "malformed address"),
        (4, "a@example.com", "unknown status: maybe"),
        (5, "b@example.com", "missing status"),
        (6, "c@example.com", "unknown resource: nosuchlist"),
        (7, "good@example.com", "duplicate address (and resource) earlier in the file"),
        (8, "d@example.com", "malformed consent date: yesterday"),
        (9, "e@example.com", f"consent date in the future: {future}"),
        (
            10,
            "f@example.com",
            "refused by the rules: subscribed needs proof of consent or a confirmation",
        ),
        (11, "bounced@example.com", "refused by the rules: the address is on the suppression list"),
        (
            15,
            "h@example.com",
            "refused by the rules: suspended needs an end time (suspended_until)",
        ),
    ]
    assert (job.processed_rows, job.imported_rows, job.rejected_rows) == (12, 2, 10)
    assert profile("g@example.com").name == "Multi\nline"
    assert queries.profile_by_email("f@example.com") is None
    # The suppressed address was not brought back.
    assert queries.profile_by_email("bounced@example.com") is None


def test_an_import_never_lifts_what_only_a_customer_or_an_admin_may(
    tmp_path: Path, newsletter: Resource
) -> None:
    # One profile for each status an import must leave alone.
    factories.set_status(
        "unsub@example.com", "subscribed", resource="newsletter", consent_proof=True
    )
    factories.unsubscribe("unsub@example.com", "newsletter")
    factories.set_status(
        "gone@example.com", "subscribed", resource="newsletter", consent_proof=True
    )
    factories.unsubscribe("gone@example.com", None)
    factories.set_status("bad@example.com", "invalid")
    factories.set_status(
        "spam@example.com", "subscribed", resource="newsletter", consent_proof=True
    )
    factories.complaint("spam@example.com", "newsletter")
    factories.set_status("bounce@example.com", "subscribed", resource="newsletter")
    factories.hard_bounce("bounce@example.com")
    events = count(StatusEvent)

    path = write(
        tmp_path,
        HEADER
        + "unsub@example.com,,subscribed,,2024-01-01\n"
        + "gone@example.com,,subscribed,,2024-01-01\n"
        + "bad@example.com,,subscribed,,2024-01-01\n"
        + "spam@example.com,,subscribed,,2024-01-01\n"
        + "bounce@example.com,,unsubscribed,,\n",
    )
    job = run(path)
    reasons = [reason for _line, _email, reason in rejected(job)]
    assert reasons == [
        "refused by the rules: only a confirmed opt-in or an admin lifts unsubscribed",
        "refused by the rules: only a confirmed opt-in or an admin lifts complainer",
        "refused by the rules: the address is on the suppression list",
    ]
    assert profile("unsub@example.com").status == "subscribed"
    assert subscription_status("unsub@example.com", newsletter) == "unsubscribed"
    assert subscription_status("spam@example.com", newsletter) == "complainer"
    assert subscription_status("bounce@example.com", newsletter) == "subscribed"
    # A global unsubscribe stays (its subscription was subscribed already: nothing to do).
    assert profile("gone@example.com").status == "unsubscribed"
    assert job.unchanged_rows == 1
    # invalid stays invalid; the subscription the file names is recorded, and rule 1 keeps it
    # from mattering while the global status is invalid.
    assert profile("bad@example.com").status == "invalid"
    assert subscription_status("bad@example.com", newsletter) == "subscribed"
    assert job.imported_rows == 1
    assert count(StatusEvent) == events + 1


def test_an_import_may_lower_a_status_and_records_it(tmp_path: Path, newsletter: Resource) -> None:
    factories.set_status("ann@example.com", "subscribed", resource="newsletter", consent_proof=True)
    path = write(tmp_path, HEADER + "ann@example.com,,unsubscribed,,\n")
    job = run(path)
    assert job.imported_rows == 1
    assert subscription_status("ann@example.com", newsletter) == "unsubscribed"
    last = db.session.scalars(select(StatusEvent).order_by(StatusEvent.id.desc())).first()
    assert last is not None
    assert (last.old_status, last.new_status, last.cause, last.actor) == (
        "subscribed",
        "unsubscribed",
        "import",
        ADMIN,
    )


def test_a_second_import_of_the_same_file_changes_and_records_nothing(
    tmp_path: Path, newsletter: Resource, offers: Resource
) -> None:
    path = write(
        tmp_path,
        HEADER
        + "ann@example.com,Ann,subscribed,,2024-01-01\n"
        + "ann@example.com,Ann,unsubscribed,offers,\n"
        + "bob@example.com,,complainer,,\n"
        + "broken,,subscribed,,\n",
    )
    first = run(path)
    assert (first.imported_rows, first.rejected_rows) == (3, 1)
    after_first = database_state()
    events = count(StatusEvent)

    second = run(path)
    assert (second.imported_rows, second.unchanged_rows, second.rejected_rows) == (0, 3, 1)
    assert database_state() == after_first
    assert count(StatusEvent) == events
    assert count(ConsentRecord) == 1


def test_headers_are_matched_loosely_and_the_export_quote_comes_off(
    tmp_path: Path, newsletter: Resource
) -> None:
    path = write(
        tmp_path,
        "\ufeffE-Mail;First Name;Status;Opt-in date;Notes\n"
        + "ann@example.com;'=HYPERLINK(1);subscribed;2024-01-01;anything\n",
    )
    columns, _rows = imports.read_csv(path)
    assert dict(columns.mapping) == {
        "email": "E-Mail",
        "name": "First Name",
        "status": "Status",
        "resource": None,
        "channel": None,
        "consent_date": "Opt-in date",
    }
    assert columns.ignored == ["Notes"]
    run(path)
    assert profile("ann@example.com").name == "=HYPERLINK(1)"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "the file is empty"),
        (b"\n\n", "the file is empty"),
        (b"email,status\n\n", "a header row but no rows"),
        (b"name,status\nAnn,subscribed\n", "no email column"),
        (b"email,name\na@example.com,Ann\n", "no status column"),
        (b"email,status\n\xff\xfeb\x00a\x00d\x00\n", "not UTF-8"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not UTF-8"),
    ],
)
def test_a_file_that_is_no_import_is_refused_clearly(
    tmp_path: Path, newsletter: Resource, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(ImportFileError, match=message):
        imports.create_job(str(path), "bad.csv", "newsletter", ADMIN)
    assert count(ImportJob) == 0


def test_a_file_broken_after_its_start_fails_the_job_with_its_error(
    tmp_path: Path, newsletter: Resource
) -> None:
    path = tmp_path / "late.csv"
    # A whole chunk, then more rows: the damage is found while the second chunk is read.
    good = "".join(f"u{i}@example.com,unsubscribed\n" for i in range(imports.CHUNK + 1000))
    path.write_bytes(b"email,status\n" + good.encode() + b"x@example.com,\xff\n")
    # create_job's row count would see the damage at once: the job is made by hand.
    with write_transaction() as session:
        row = ImportJob(
            filename="late.csv",
            path=str(path),
            actor=ADMIN,
            state="queued",
            resource_id=newsletter.id,
        )
        session.add(row)
    job = imports.run_job(row.id)
    assert job.state == "failed"
    assert "not UTF-8" in (job.error or "")
    # The chunk before the damage was imported and stays.
    assert job.processed_rows == imports.CHUNK
    assert count(Profile) == imports.CHUNK


def test_the_preview_decides_every_row_and_writes_nothing(
    tmp_path: Path, newsletter: Resource
) -> None:
    factories.set_status("unsub@example.com", "unsubscribed", resource="newsletter")
    path = write(
        tmp_path,
        HEADER
        + "ann@example.com,Ann,subscribed,,2024-01-01\n"
        + "unsub@example.com,,subscribed,,2024-01-01\n"
        + "nope,,subscribed,,\n"
        + "ann@example.com,,subscribed,,2024-01-01\n",
    )
    before = database_state()
    preview = imports.preview(path, "newsletter", check_rows=1000)
    assert database_state() == before
    assert (preview.total_rows, preview.checked_rows, preview.would_import) == (4, 4, 1)
    assert [row.email for row in preview.sample] == ["ann@example.com"]
    assert [(r.line, r.kind) for r in preview.rejections] == [
        (3, "refused by the rules"),
        (4, "malformed address"),
        (5, "duplicate address (and resource) earlier in the file"),
    ]
    assert dict(preview.rejection_counts)["malformed address"] == 1


def test_rows_without_a_resource_need_a_default(tmp_path: Path, newsletter: Resource) -> None:
    path = write(tmp_path, "email,status\nann@example.com,unsubscribed\n")
    job = run(path, None)
    assert rejected(job) == [
        (2, "ann@example.com", "no resource (no resource column and no default resource)")
    ]


def test_an_unknown_default_resource_is_refused(tmp_path: Path, app: Flask) -> None:
    path = write(tmp_path, "email,status\nann@example.com,unsubscribed\n")
    with pytest.raises(Exception, match="no resource 'nope'"):
        imports.import_file(path, "nope")


@pytest.mark.slow
def test_a_100000_row_import_with_bad_rows_mixed_in(tmp_path: Path, newsletter: Resource) -> None:
    rows = 100_000
    bad: dict[int, str] = {}
    lines = ["email,name,status,consent date\n"]
    for i in range(rows):
        line = len(lines) + 1
        if i % 1000 == 7:
            lines.append(f"broken{i}.example.com,X,subscribed,2024-01-01\n")
            bad[line] = "malformed address"
        elif i % 1000 == 500:
            lines.append(f"user{i}@example.com,X,sometimes,2024-01-01\n")
            bad[line] = "unknown status: sometimes"
        elif i % 1000 == 999:
            lines.append(f"user{i - 1}@example.com,Dup,unsubscribed,\n")
            bad[line] = "duplicate address (and resource) earlier in the file"
        else:
            status = "subscribed" if i % 3 else "unsubscribed"
            lines.append(f"user{i}@example.com,User {i},{status},2024-01-01\n")
    path = write(tmp_path, "".join(lines), "big.csv")
    good = rows - len(bad)

    started = time.perf_counter()
    job = run(path)
    elapsed = time.perf_counter() - started
    assert (job.state, job.processed_rows, job.imported_rows) == ("done", rows, good)
    assert db.session.scalar(select(func.count()).select_from(Profile)) == good
    assert db.session.scalar(select(func.count()).select_from(Subscription)) == good
    assert {r.line: r.reason for r in queries.import_rejections(job.id, limit=rows)} == bad
    print(f"100,000 rows imported in {elapsed:.1f} s")

    state = database_state()
    again = run(path)
    assert (again.imported_rows, again.unchanged_rows, again.rejected_rows) == (0, good, len(bad))
    assert database_state() == state


# --- The pieces: the rule for imports, the quick address check --------------------------------


def test_the_rules_keep_an_import_off_a_suppressed_address() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    action = SetStatus(Status.SUBSCRIBED, Cause.IMPORT, consent_proof=True)
    with pytest.raises(TransitionRefused, match="suppression list"):
        apply(action, Snapshot(None, None, suppressed=True, resource_named=True), now)
    # Nothing to change is no change, suppressed or not (rule 9).
    same = Snapshot(State(Status.SUBSCRIBED), State(Status.SUBSCRIBED), True, True)
    assert apply(action, same, now).changes == ()
    # The API keeps its behaviour: only the import is held off.
    api = SetStatus(Status.SUBSCRIBED, Cause.API, consent_proof=True)
    assert apply(api, Snapshot(None, None, suppressed=True, resource_named=True), now).changes


@given(st.text())
@example("'=x")  # written so by hand: the import must not take its quote off
def test_a_cell_the_export_guards_against_formulas_imports_as_it_was(cell: str) -> None:
    # One guard for both directions (services/csv_injection.py): what the export writes never
    # starts a formula, and the import reads it back unchanged.
    guarded = spreadsheet_safe(cell)
    assert isinstance(guarded, str)
    assert not guarded.startswith(FORMULA_STARTS)
    assert unquoted(guarded) == cell


def test_times_go_to_sqlite_as_sqlalchemy_writes_them() -> None:
    from sqlalchemy.dialects import sqlite

    from app.database import UTCDateTime
    from app.services.imports import db_time

    dialect = sqlite.dialect()
    theirs = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    ours = db_time(dialect)
    assert theirs is not None and ours is not None
    berlin = timezone(timedelta(hours=2))
    for moment in (
        datetime(2024, 1, 1, tzinfo=UTC),
        datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC),
        datetime(2024, 5, 6, 7, 8, 9, tzinfo=berlin),
    ):
        assert ours(moment) == theirs(moment)


def test_the_seen_keys_are_an_exact_set_that_grows_when_it_must() -> None:
    seen = imports.SeenKeys(10)
    keys = [hash((f"user{i}@example.com", 1, "email")) for i in range(5000)] + [0, -1, 2**64 - 1]
    assert all(seen.add(key) for key in keys[:-1])  # -1 and 2**64 - 1 are the same 64 bits
    assert not seen.add(keys[-1])
    assert not any(seen.add(key) for key in keys)


@pytest.mark.skipif(on_postgres(), reason="a setting of SQLite's log")
def test_the_long_checkpoint_interval_of_an_import_never_reaches_a_web_request(
    tmp_path: Path, newsletter: Resource
) -> None:
    db.session.remove()
    engine = db.engine
    with engine.connect() as connection:
        lengthen_wal_checkpoint(connection, 20_000)
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 20_000
        used = connection.connection.dbapi_connection
    # The pool hands the same connection out again, with SQLite's default back.
    with engine.connect() as connection:
        assert connection.connection.dbapi_connection is used
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
    # And after a whole import, whichever connections it used.
    run(write(tmp_path, "email,status\na@example.com,unsubscribed\n"))
    db.session.remove()
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000


def test_an_imported_hardbounced_row_suppresses_the_address_platform_wide(
    tmp_path: Path, newsletter: Resource, offers: Resource
) -> None:
    """A "cleaned" row from another tool means the mailbox does not exist, whatever list it came
    from: rule 6, as a bounce event does it, with the import in the suppression history."""
    factories.set_status("carol@example.com", "subscribed", resource="offers", consent_proof=True)
    factories.hard_bounce("dave@example.com")  # on the list already: the import leaves it alone
    path = write(
        tmp_path,
        HEADER
        + "bob@example.com,Bob,hardbounced,,\n"
        + "bob@example.com,Bob,hardbounced,offers,\n"  # the same address from a second list
        + "carol@example.com,,3,,\n"  # Altcraft's number for hardbounced
        + "dave@example.com,,hardbounced,,\n"
        + "erin@example.com,,subscribed,,2024-01-01\n",
    )
    preview = imports.preview(path, "newsletter", check_rows=1000)
    assert preview.would_suppress == 2
    job = run(path)
    assert job.suppressed_addresses == 2
    assert rejected(job) == [
        (5, "dave@example.com", "refused by the rules: the address is on the suppression list")
    ]
    for address in ("bob@example.com", "carol@example.com"):
        assert profile(address).status == "hardbounced"
        listed = db.session.get(Suppression, email_hash(address))
        assert listed is not None and (listed.reason, listed.actor) == ("import", ADMIN)
        history = queries.suppression_events_of(email_hash(address))
        assert [(e.action, e.cause, e.actor) for e in history] == [("added", "import", ADMIN)]
        # Every resource, not only the one in the file: the address is blocked platform-wide.
        assert decide(address, "offers").reason == "suppressed"
        assert decide(address, None).reason == "suppressed"
    assert subscription_status("bob@example.com", offers) == "hardbounced"
    assert subscription_status("carol@example.com", newsletter) == "hardbounced"
    assert decide("erin@example.com", "newsletter").allowed

    again = run(path)  # rule 9: the second time nothing changes and nothing is recorded
    assert (again.suppressed_addresses, again.imported_rows) == (0, 0)
    assert count(SuppressionEvent) == 3  # bob, carol and dave's own bounce


def test_an_imported_bounce_then_a_confirmation_lifts_the_suppression(
    tmp_path: Path, newsletter: Resource
) -> None:
    run(write(tmp_path, HEADER + "bob@example.com,,hardbounced,,\n"))
    assert decide("bob@example.com", "newsletter").reason == "suppressed"
    factories.signup("bob@example.com", "newsletter")
    factories.confirm("bob@example.com", "newsletter")
    assert decide("bob@example.com", "newsletter").allowed
    history = queries.suppression_events_of(email_hash("bob@example.com"))
    assert [(e.action, e.cause) for e in history] == [("added", "import"), ("lifted", "confirm")]


def test_an_import_that_confirms_a_waiting_profile_voids_its_pending_link(
    tmp_path: Path, newsletter: Resource, offers: Resource
) -> None:
    """A row that changes an existing profile's global status clears the confirmation links
    still waiting, as every other global change does (the bulk statement once failed here)."""
    request_signup("ann@example.com", ["newsletter"], form="test", actor=statuses.CUSTOMER)
    pending = queries.subscription_of(profile("ann@example.com").id, newsletter.id, "email")
    assert pending is not None and pending.confirm_nonce is not None
    db.session.rollback()
    job = run(write(tmp_path, HEADER + "ann@example.com,,subscribed,offers,2024-01-01\n"))
    assert (job.state, job.imported_rows) == ("done", 1)
    assert profile("ann@example.com").status == "subscribed"
    waiting = queries.subscription_of(profile("ann@example.com").id, newsletter.id, "email")
    assert waiting is not None and waiting.confirm_nonce is None
