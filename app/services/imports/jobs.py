"""The life of an import job: an uploaded file becomes a job that waits for its start
(``uploaded``), is queued, runs chunk by chunk (each chunk planned, bulk-written and counted on
the job in one transaction) and ends ``done`` or ``failed``; an upload never started may be
``discarded``. The uploaded file holds personal data and is deleted when the job ends."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

from flask import Flask, current_app
from sqlalchemy import update

from app import queries
from app.database import in_write_transaction, lengthen_wal_checkpoint, utcnow, write_transaction
from app.extensions import db
from app.models import ImportJob
from app.services.errors import InvalidInput, NotFound, UnknownResource
from app.services.imports.bulk_writer import write_plan, write_rejections
from app.services.imports.planning import Plan, Rules, plan_chunk
from app.services.imports.preview import resources_and_default
from app.services.imports.reading import ImportFileError, count_rows, read_header
from app.services.imports.rows import ImportRow, Rejection, RowParser, chunks
from app.services.statuses import Actor

# SQLite's write-ahead log is moved into the database every this many pages while an import runs
# (the pool puts SQLite's default of 1,000 back: database.lengthen_wal_checkpoint).
SQLITE_CHECKPOINT_PAGES = 20_000
CLI_ACTOR = "cli"


class JobState(StrEnum):
    """Where an import job is in its life (stored as the word in ``import_jobs.state``)."""

    # Waiting for the admin to look at the preview and start it.
    UPLOADED = "uploaded"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    DISCARDED = "discarded"


FINISHED = frozenset({JobState.DONE, JobState.FAILED, JobState.DISCARDED})


def upload_folder() -> str:
    """Where uploaded files wait for their import: under the instance folder, never public."""
    folder = os.path.join(current_app.instance_path, "imports")
    os.makedirs(folder, exist_ok=True)
    return folder


def save_upload(stream: Any, filename: str) -> str:
    """Store an uploaded file under a random name; returns its path."""
    path = os.path.join(upload_folder(), f"{uuid.uuid4().hex}.csv")
    with open(path, "wb") as out:
        while block := stream.read(1024 * 1024):
            out.write(block)
    return path


def _delete_upload(path: str | None) -> None:
    # Only files optin stored itself; the command line imports the user's own file in place.
    if path and os.path.dirname(os.path.abspath(path)) == upload_folder() and os.path.exists(path):
        os.remove(path)


def create_job(path: str, filename: str, default_slug: str | None, actor: str) -> ImportJob:
    """Record an import that waits for its start, after checking that the file is a CSV with an
    email and a status column and that the default resource exists. A bad file is deleted."""
    try:
        total = count_rows(path)
        if total == 0:
            raise ImportFileError("the file has a header row but no rows to import")
        _resources, default = resources_and_default(default_slug)
    except (ImportFileError, UnknownResource):
        _delete_upload(path)
        raise
    with write_transaction() as session:
        job = ImportJob(
            resource_id=default.id if default else None,
            filename=os.path.basename(filename)[:300] or "import.csv",
            path=path,
            actor=actor,
            state=JobState.UPLOADED,
            total_rows=total,
            created_at=utcnow(),
        )
        session.add(job)
    return job


def job_or_404(job_id: int) -> ImportJob:
    """The import ``job_id``; ``NotFound`` (a 404 page in the admin) when there is none."""
    job = queries.import_job(job_id)
    if job is None:
        raise NotFound(f"no import {job_id}")
    return job


def discard(job_id: int) -> None:
    """Drop an uploaded import that was not started, and its file."""
    with write_transaction():
        job = job_or_404(job_id)
        if job.state != JobState.UPLOADED:
            raise InvalidInput("only an import that has not started can be discarded")
        path, job.path, job.state, job.finished_at = job.path, None, JobState.DISCARDED, utcnow()
    _delete_upload(path)


def queue(job_id: int) -> bool:
    """Mark an uploaded import as queued; False when it was started already (a second click)."""
    with write_transaction():
        job = job_or_404(job_id)
        if job.state != JobState.UPLOADED:
            return False
        job.state, job.progressed_at = JobState.QUEUED, utcnow()
    return True


def start_in_background(job_id: int) -> bool:
    """Queue the import and run it in a thread of this process with its own app context (the
    embedded default). False when it had been started already."""
    if not queue(job_id):
        return False
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    thread = threading.Thread(
        target=_run_in_thread, args=(app, job_id), name=f"import-{job_id}", daemon=True
    )
    thread.start()
    return True


def _run_in_thread(app: Flask, job_id: int) -> None:
    with app.app_context():
        try:
            run_job(job_id)
        finally:
            db.session.remove()


def stalled(job: ImportJob, now: datetime, limit_seconds: int) -> bool:
    """Whether a queued or running import has stopped moving: its process ended (a restart,
    a crash) and nothing will finish it. Importing the file again does: the rows that landed
    count as unchanged the second time."""
    if job.state not in (JobState.QUEUED, JobState.RUNNING):
        return False
    last = job.progressed_at or job.started_at or job.created_at
    return (now - last).total_seconds() > limit_seconds


def run_job(
    job_id: int, *, on_progress: Callable[[int], None] | None = None, now: datetime | None = None
) -> ImportJob:
    """Run a queued (or uploaded) import to its end. Every failure is recorded on the job as
    `failed` with its error; the rows of the chunks before it stay imported."""
    with write_transaction():
        job = job_or_404(job_id)
        if job.state not in (JobState.UPLOADED, JobState.QUEUED):
            raise InvalidInput(f"this import is {job.state} already")
        job.state = JobState.RUNNING
        job.started_at = job.progressed_at = utcnow()
        path, actor_name, resource_id = job.path, job.actor, job.resource_id
    try:
        if path is None:
            raise ImportFileError("the file of this import is gone")
        _import_file(job_id, path, Actor(name=actor_name), resource_id, on_progress, now)
    except Exception as error:
        db.session.rollback()
        if not isinstance(error, ImportFileError | InvalidInput | NotFound):
            current_app.logger.exception("import %s failed", job_id)
        # The first line says what went wrong; the rest (SQL, parameters) is for the log.
        message = (str(error).strip().splitlines() or [""])[0][:500]
        _finish(job_id, JobState.FAILED, message or type(error).__name__)
    else:
        _finish(job_id, JobState.DONE, None)
    db.session.rollback()
    return job_or_404(job_id)


def _finish(job_id: int, state: JobState, error: str | None) -> None:
    with write_transaction():
        job = job_or_404(job_id)
        path = job.path
        job.state, job.error, job.finished_at, job.path = state, error, utcnow(), None
    # The file holds personal data and served its purpose.
    _delete_upload(path)


def _import_file(
    job_id: int,
    path: str,
    actor: Actor,
    resource_id: int | None,
    on_progress: Callable[[int], None] | None,
    now: datetime | None,
) -> None:
    default = queries.resource_by_id(resource_id) if resource_id else None
    columns = read_header(path)
    expected = job_or_404(job_id).total_rows
    parser = RowParser(columns, list(queries.all_resources()), default, expected_rows=expected)
    db.session.rollback()
    rules = Rules()
    jobs = ImportJob.__table__
    sqlite = db.session.get_bind().dialect.name == "sqlite"
    for rows, rejected, read in chunks(path, parser):

        def work(
            rows: list[ImportRow] = rows, rejected: list[Rejection] = rejected, read: int = read
        ) -> Plan:
            chunk_now = now or utcnow()
            if sqlite:
                # A chunk touches thousands of index pages spread over the whole table: moving
                # them into the database file every 1,000 pages of log (the default) rewrote the
                # same pages again and again; this is 1.3x faster at a million rows.
                lengthen_wal_checkpoint(db.session.connection(), SQLITE_CHECKPOINT_PAGES)
            plan = plan_chunk(rows, rules, actor, chunk_now, for_update=True)
            write_plan(plan, chunk_now)
            write_rejections(job_id, rejected + plan.rejections)
            db.session.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(
                    processed_rows=jobs.c.processed_rows + read,
                    imported_rows=jobs.c.imported_rows + len(plan.imported),
                    unchanged_rows=jobs.c.unchanged_rows + plan.unchanged,
                    rejected_rows=jobs.c.rejected_rows + len(rejected) + len(plan.rejections),
                    suppressed_addresses=jobs.c.suppressed_addresses + len(plan.suppressions),
                    progressed_at=utcnow(),
                )
            )
            return plan

        in_write_transaction(work)
        if on_progress is not None:
            on_progress(read)


def import_file(
    path: str, default_slug: str | None, *, actor: str = CLI_ACTOR, on_progress: Any = None
) -> ImportJob:
    """Import a file in this process, as the command line does: create the job, run it."""
    job = create_job(os.path.abspath(path), path, default_slug, actor)
    return run_job(job.id, on_progress=on_progress)
