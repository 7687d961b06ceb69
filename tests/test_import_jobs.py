"""Imports run as claimed jobs (issue 13): a worker claims an import with a lease, progress is
read from the database, and an import whose worker died (SIGKILL, a restart) is resumed by the
next claimer from its last committed chunk, every row imported exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from app import queries, worker
from app.database import utcnow
from app.extensions import db
from app.models import ImportJob, ImportRejection, Profile, Resource, StatusEvent, Subscription
from app.services import imports
from app.services.imports import rows as import_rows
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, make_app
from tests.helpers import count, csrf_token, submit

PROJECT = Path(__file__).resolve().parent.parent
ADMIN = "admin@example.com"


class WorkerKilled(Exception):
    """What a SIGKILL between two chunks looks like from inside: the worker stops, its lease
    still held, nothing more written."""


def csv_file(tmp_path: Path, rows: int, *, duplicate_of_first: bool = True) -> str:
    # The last row repeats the first: a resumed import must still know it saw that address.
    lines = [f"u{i}@example.com,unsubscribed\n" for i in range(rows)]
    if duplicate_of_first:
        lines.append("u0@example.com,unsubscribed\n")
    path = tmp_path / "people.csv"
    path.write_text("email,status\n" + "".join(lines), encoding="utf-8")
    return str(path)


def queued_job(path: str) -> int:
    job = imports.create_job(path, "people.csv", "newsletter", ADMIN)
    assert imports.queue(job.id)
    return job.id


def job(job_id: int) -> ImportJob:
    db.session.rollback()
    found = queries.import_job(job_id)
    assert found is not None
    return found


def assert_imported_exactly_once(job_id: int, addresses: int) -> None:
    done = job(job_id)
    assert done.state == "done", done.error
    assert done.processed_rows == done.total_rows == addresses + 1
    assert (done.imported_rows, done.unchanged_rows, done.rejected_rows) == (addresses, 0, 1)
    assert count(Profile) == count(Subscription) == addresses
    # Every profile has the events of one import of its row, none twice.
    per_profile = db.session.execute(
        select(func.count()).select_from(StatusEvent).group_by(StatusEvent.profile_id)
    ).scalars()
    assert set(per_profile) == {2}  # its global status and its subscription, unsubscribed
    rejections = db.session.scalars(select(ImportRejection.reason)).all()
    assert [reason.split(":")[0] for reason in rejections] == [import_rows.DUPLICATE]


def test_an_import_whose_worker_died_is_resumed_by_the_next_claimer_once_its_lease_ran_out(
    app: Flask, newsletter: Resource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(import_rows, "CHUNK", 10)
    job_id = queued_job(csv_file(tmp_path, 35))
    first = imports.claim_next()
    assert first is not None

    def die_after_two_chunks() -> bool:
        if job(job_id).processed_rows >= 20:
            raise WorkerKilled
        return True

    with pytest.raises(WorkerKilled):
        imports.run_claimed(first, between_chunks=die_after_two_chunks)
    assert (job(job_id).state, job(job_id).processed_rows) == ("running", 20)

    # Its lease holds: no one else takes the job while the worker may be alive.
    assert imports.claim_next() is None
    later = utcnow() + timedelta(seconds=app.config["IMPORT_LEASE_SECONDS"] + 1)
    second = imports.claim_next(later)
    assert second is not None and second.job_id == job_id
    assert imports.run_claimed(second) == imports.JobState.DONE
    assert_imported_exactly_once(job_id, 35)


def test_a_worker_that_outlived_its_lease_writes_nothing_more(
    app: Flask, newsletter: Resource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(import_rows, "CHUNK", 10)
    job_id = queued_job(csv_file(tmp_path, 25))
    slow = imports.claim_next()
    assert slow is not None
    later = utcnow() + timedelta(seconds=app.config["IMPORT_LEASE_SECONDS"] + 1)
    takeover = imports.claim_next(later)
    assert takeover is not None
    # The slow worker wakes up: its first chunk finds the job claimed again, and it stops.
    assert imports.run_claimed(slow) is None
    assert job(job_id).processed_rows == 0 and count(Profile) == 0
    assert imports.run_claimed(takeover) == imports.JobState.DONE
    assert_imported_exactly_once(job_id, 25)


@pytest.mark.slow  # real worker processes, one of them killed: about 8 s
def test_an_import_survives_its_worker_being_killed_and_another_worker_finishes_it(
    app: Flask, newsletter: Resource, database_url: str, tmp_path: Path
) -> None:
    # The "done when": a real worker process, SIGKILLed mid-import.
    addresses = 60_000
    job_id = queued_job(csv_file(tmp_path, addresses))
    db.session.remove()
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "OPTIN_INSTANCE_PATH": str(tmp_path),
        "SECRET_KEY": "test-secret",
        "OUTBOX_DELIVER_INLINE": "false",
        "IMPORT_LEASE_SECONDS": "2",
    }
    first = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", "outbox", "work", "--idle", "0.2"],
        cwd=PROJECT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while job(job_id).processed_rows < imports.CHUNK and time.monotonic() < deadline:
            time.sleep(0.02)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    killed = job(job_id)
    assert killed.state == "running", "the worker finished before it was killed"
    assert 0 < killed.processed_rows < killed.total_rows
    # The restart: another worker, once the dead one's lease has run out, finishes the job.
    time.sleep(2.5)
    worker.work(100, 0, once=True, echo=lambda _line: None)
    assert_imported_exactly_once(job_id, addresses)


def test_an_import_started_in_the_admin_survives_a_restart_of_the_web_process(
    admin_client: FlaskClient, newsletter: Resource, database_url: str, tmp_path: Path
) -> None:
    """Production (a worker running, OUTBOX_DELIVER_INLINE=false): the web process only queues
    the import, so nothing of it lives in that process. A web process started afterwards shows
    its progress from the database, and the worker finishes it."""
    token = csrf_token(admin_client, "/admin/imports")
    with open(csv_file(tmp_path, 3), "rb") as upload:
        uploaded = admin_client.post(
            "/admin/imports",
            data={"csrf_token": token, "resource": "newsletter", "file": (upload, "people.csv")},
            content_type="multipart/form-data",
        )
    job_path = uploaded.headers["Location"]
    job_id = int(job_path.rsplit("/", 1)[1])
    started = admin_client.post(
        f"{job_path}/start", data={"csrf_token": csrf_token(admin_client, job_path)}
    )
    assert started.status_code == 303
    assert f"import-{job_id}" not in {thread.name for thread in threading.enumerate()}
    db.session.remove()

    restarted = make_app(database_url, OUTBOX_DELIVER_INLINE=False)  # the new web process
    with restarted.app_context():
        browser = restarted.test_client()
        login = {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        assert submit(browser, "/admin/login", login).status_code == 303
        waiting = browser.get(job_path).get_data(as_text=True)
        assert "0 of 4 rows" in waiting and 'http-equiv="refresh"' in waiting
        worker.work(100, 0, once=True, echo=lambda _line: None)  # the worker process's round
        done = browser.get(job_path).get_data(as_text=True)
        assert "The import is done." in done
        db.session.remove()
    assert_imported_exactly_once(job_id, 3)
