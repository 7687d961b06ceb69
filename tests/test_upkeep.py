"""`flask upkeep`: the periodic jobs on a schedule, safe with several copies, alive through an
outage of the database (issue 10, item 2)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import func, select, text

from app import PROJECT_ROOT, create_app, queries
from app.extensions import db
from app.models import Resource, StatusEvent
from app.services.upkeep import ADVISORY_LOCK_KEY, UpkeepRun, run_forever
from tests import factories
from tests.conftest import on_postgres

LONG_AGO = datetime.now(UTC) - timedelta(days=40)


def _old_signups_and_ended_suspensions(n: int) -> None:
    """``n`` unconfirmed signups past retention, and ``n`` confirmed profiles whose pause ended."""
    for i in range(n):
        factories.signup(f"stale{i}@example.com", "newsletter", now=LONG_AGO)
        factories.signup(f"paused{i}@example.com", "newsletter", now=LONG_AGO)
        factories.confirm(f"paused{i}@example.com", "newsletter", now=LONG_AGO)
        factories.pause(f"paused{i}@example.com", None, LONG_AGO + timedelta(days=14), now=LONG_AGO)


def _suspensions_ended() -> int:
    db.session.rollback()
    return db.session.scalar(
        select(func.count()).select_from(StatusEvent).where(StatusEvent.cause == "suspension_ended")
    )


def test_upkeep_once_runs_the_periodic_jobs_and_stops(
    runner: FlaskCliRunner, newsletter: Resource
) -> None:
    _old_signups_and_ended_suspensions(1)
    result = runner.invoke(args=["upkeep", "--once"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == (
        "upkeep: suspensions ended: 1, unconfirmed subscriptions deleted: 1, profiles deleted: 1"
    )
    assert queries.profile_by_email("stale0@example.com") is None
    assert queries.profile_by_email("paused0@example.com").status == "subscribed"


def _upkeep_process(database_url: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test-secret",
        "GC_FREEZE": "false",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", "upkeep", "--once"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _reported(output: str) -> tuple[int, int, int]:
    """The three numbers of an `upkeep --once` line; a skipped run did nothing."""
    if "skipped" in output:
        return (0, 0, 0)
    numbers = [int(part.split(":")[-1]) for part in output.strip().split(",")]
    return (numbers[0], numbers[1], numbers[2])


@pytest.mark.slow
def test_two_upkeep_copies_at_once_do_the_work_once(
    app: Flask, database_url: str, newsletter: Resource
) -> None:
    _old_signups_and_ended_suspensions(60)
    db.session.commit()
    copies = [_upkeep_process(database_url) for _ in range(2)]
    outputs = []
    for copy in copies:
        out, err = copy.communicate(timeout=120)
        assert copy.returncode == 0, err
        outputs.append(out)
    done = [_reported(out) for out in outputs]
    # Between them the copies ended each suspension and deleted each row once, and each
    # profile's suspension_ended event exists once: no double work, no double count.
    assert tuple(map(sum, zip(*done, strict=True))) == (60, 60, 60), outputs
    assert _suspensions_ended() == 60
    assert queries.profile_by_email("stale0@example.com") is None


@pytest.mark.skipif(not on_postgres(), reason="the advisory lock is PostgreSQL's")
def test_an_upkeep_run_is_skipped_while_another_copy_holds_the_lock(
    runner: FlaskCliRunner, newsletter: Resource
) -> None:
    _old_signups_and_ended_suspensions(1)
    with db.engine.connect() as other_copy:
        other_copy.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        result = runner.invoke(args=["upkeep", "--once"])
        assert result.output.strip() == "upkeep: another copy is running it; skipped"
        assert queries.profile_by_email("stale0@example.com") is not None
        other_copy.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})
    result = runner.invoke(args=["upkeep", "--once"])
    assert "suspensions ended: 1" in result.output
    assert queries.profile_by_email("stale0@example.com") is None


def test_upkeep_outlives_an_outage_of_the_database_with_one_line_each_way(
    tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    """The database file's folder does not exist yet (SQLite cannot open it: the same
    OperationalError as a PostgreSQL server that is down); it appears after four failed runs."""
    folder = tmp_path / "later"
    app = create_app(
        {"TESTING": True, "SECRET_KEY": "x", "DATABASE_URL": f"sqlite:///{folder}/db.sqlite3"}
    )
    waits: list[float] = []
    runs: list[UpkeepRun] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 4:  # the database comes back
            folder.mkdir()
            db.create_all()

    with app.app_context(), caplog.at_level(logging.INFO, logger="app.services.upkeep"):
        run_forever(4, 30, on_run=runs.append, sleep=sleep, keep_going=lambda: len(waits) < 6)
        db.engine.dispose()
    # The outbox worker's backoff (0.5, 1, 2 s ...) capped at the interval (4 s); then the
    # interval between successful runs.
    assert waits == [0.5, 1, 2, 4, 4, 4]
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert "upkeep: database unreachable, retrying until it is back" in lines[0]
    assert "upkeep: database back after" in lines[1]
    assert [run.skipped for run in runs] == [False, False]
