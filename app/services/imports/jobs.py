"""The life of an import job: an uploaded file becomes a job that waits for its start
(``uploaded``), is queued, runs chunk by chunk (each chunk planned, bulk-written and counted on
the job in one transaction) and ends ``done`` or ``failed``; an upload never started may be
``discarded``. The uploaded file holds personal data and is deleted when the job ends."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, cast

from flask import Flask, current_app
from sqlalchemy import or_, select, update

from app import queries
from app.database import (
    in_write_transaction,
    lengthen_wal_checkpoint,
    unreachable,
    utcnow,
    write_transaction,
)
from app.extensions import db
from app.models import ImportJob
from app.services.errors import InvalidInput, NotFound, UnknownResource
from app.services.imports.bulk_writer import write_plan, write_rejections
from app.services.imports.planning import Plan, Rules, plan_chunk
from app.services.imports.preview import resources_and_default
from app.services.imports.reading import ImportFileError, count_rows, read_header
from app.services.imports.rows import ImportRow, Rejection, RowParser, chunks
from app.services.statuses import Actor

if TYPE_CHECKING:
    from sqlalchemy.engine import CursorResult

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
    """Queue the import for a worker (``flask outbox work`` claims it). In the embedded default
    (OUTBOX_DELIVER_INLINE, no worker running) this process runs it in a thread of its own, as
    it sends its mail; if the process ends first, the lease runs out and the next claimer, or a
    second start, resumes it. False when it had been started already."""
    queued = queue(job_id)
    if current_app.config["OUTBOX_DELIVER_INLINE"]:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        thread = threading.Thread(
            target=_run_in_thread, args=(app, job_id), name=f"import-{job_id}", daemon=True
        )
        thread.start()
    return queued


def _run_in_thread(app: Flask, job_id: int) -> None:
    with app.app_context():
        try:
            claim = _claim(utcnow(), job_id=job_id)
            if claim is not None:
                run_claimed(claim)
        finally:
            db.session.remove()


def stalled(job: ImportJob, now: datetime, limit_seconds: int) -> bool:
    """Whether a queued or running import has stopped moving: no worker holds it (its lease ran
    out: the process ended) and none has taken it up for ``limit_seconds``, so no worker runs
    here. Starting it again resumes it where it stopped."""
    if job.state not in (JobState.QUEUED, JobState.RUNNING):
        return False
    if job.claimed_until is not None and job.claimed_until >= now:
        return False
    last = job.progressed_at or job.started_at or job.created_at
    return (now - last).total_seconds() > limit_seconds


# --- Claims -----------------------------------------------------------------------------------

# A job claimed this many times without finishing is failed rather than claimed again: what
# kills its workers may be the file itself.
MAX_CLAIMS = 5


class LeaseLost(Exception):
    """Another worker claimed the job after this one's lease ran out: this one writes no more."""


@dataclass(frozen=True)
class Claim:
    """A worker's hold on one job: the job's claim count when it was claimed is its identity."""

    job_id: int
    number: int


def lease() -> timedelta:
    """How long a claim holds without a chunk finishing, from IMPORT_LEASE_SECONDS."""
    return timedelta(seconds=current_app.config["IMPORT_LEASE_SECONDS"])


def claim_next(now: datetime | None = None) -> Claim | None:
    """Claim the oldest import that is queued, or running under a lease that ran out (its worker
    died). ``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so any number of workers can ask at once;
    on SQLite the write transaction keeps them in turn. None when there is nothing to do."""
    return _claim(now or utcnow())


def _claim(
    now: datetime,
    *,
    job_id: int | None = None,
    states: tuple[JobState, ...] = (JobState.QUEUED, JobState.RUNNING),
) -> Claim | None:
    gone: str | None = None
    with write_transaction() as session:
        query = (
            select(ImportJob)
            .where(
                ImportJob.state.in_([state.value for state in states]),
                or_(ImportJob.claimed_until.is_(None), ImportJob.claimed_until < now),
            )
            .order_by(ImportJob.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if job_id is not None:
            query = query.where(ImportJob.id == job_id)
        job = session.scalars(query).first()
        if job is None:
            return None
        job.claims += 1
        if job.claims > MAX_CLAIMS:
            gone, job.path = job.path, None
            job.state, job.finished_at = JobState.FAILED, now
            job.error = f"its worker stopped {MAX_CLAIMS} times before the end"
            claim = None
        else:
            job.state, job.claimed_until, job.progressed_at = JobState.RUNNING, now + lease(), now
            job.started_at = job.started_at or now
            claim = Claim(job.id, job.claims)
    _delete_upload(gone)
    return claim


def run_job(
    job_id: int, *, on_progress: Callable[[int], None] | None = None, now: datetime | None = None
) -> ImportJob:
    """Claim a queued (or uploaded) import and run it to its end in this process, as the command
    line does. Every failure is recorded on the job as `failed` with its error; the rows of the
    chunks before it stay imported."""
    job = job_or_404(job_id)
    claim = _claim(utcnow(), job_id=job_id, states=(JobState.UPLOADED, JobState.QUEUED))
    if claim is None:
        raise InvalidInput(f"this import is {job.state} already")
    run_claimed(claim, on_progress=on_progress, now=now)
    db.session.rollback()
    return job_or_404(job_id)


def run_claimed(
    claim: Claim,
    *,
    on_progress: Callable[[int], None] | None = None,
    between_chunks: Callable[[], bool] | None = None,
    now: datetime | None = None,
) -> JobState | None:
    """Run a claimed import from where it stopped (the rows its chunks counted are skipped) to
    its end: the state it ended in, or None when it did not end here (``between_chunks``
    answered False, and the claim was let go for the next worker; or another worker had taken
    the job over). A database outage is raised, not recorded: the lease runs out and the job
    is resumed."""
    job = job_or_404(claim.job_id)
    path, actor, resource_id = job.path, Actor(name=job.actor), job.resource_id
    done, total = job.processed_rows, job.total_rows
    db.session.rollback()
    steps = _import_chunks(claim, path, actor, resource_id, done, total, now)
    while True:
        try:
            read = next(steps, None)
        except LeaseLost:
            db.session.rollback()
            return None
        except Exception as error:
            db.session.rollback()
            if unreachable(error):
                raise
            if not isinstance(error, ImportFileError | InvalidInput | NotFound):
                current_app.logger.exception("import %s failed", claim.job_id)
            # The first line says what went wrong; the rest (SQL, parameters) is for the log.
            message = (str(error).strip().splitlines() or [""])[0][:500]
            return _finish(claim, JobState.FAILED, message or type(error).__name__)
        if read is None:
            return _finish(claim, JobState.DONE, None)
        if on_progress is not None:
            on_progress(read)
        if between_chunks is not None and not between_chunks():
            steps.close()
            _let_go(claim)
            return None


def _mine(claim: Claim) -> Any:
    jobs = ImportJob.__table__
    return (
        (jobs.c.id == claim.job_id)
        & (jobs.c.claims == claim.number)
        & (jobs.c.state == JobState.RUNNING.value)
    )


def _let_go(claim: Claim) -> None:
    # Stopped between two chunks (SIGTERM): the next worker need not wait out the lease.
    jobs = ImportJob.__table__
    with write_transaction() as session:
        session.execute(update(jobs).where(_mine(claim)).values(claimed_until=None))


def _finish(claim: Claim, state: JobState, error: str | None) -> JobState | None:
    jobs = ImportJob.__table__
    with write_transaction() as session:
        path = session.execute(select(jobs.c.path).where(_mine(claim)).with_for_update()).first()
        if path is None:
            return None  # another worker holds it now, and finishes it
        session.execute(
            update(jobs)
            .where(_mine(claim))
            .values(state=state.value, error=error, finished_at=utcnow(), path=None)
        )
    # The file holds personal data and served its purpose.
    _delete_upload(path[0])
    return state


def _import_chunks(
    claim: Claim,
    path: str | None,
    actor: Actor,
    resource_id: int | None,
    done: int,
    total: int,
    now: datetime | None,
) -> Generator[int, None, None]:
    """Import the file's rows after the first ``done``, a chunk a transaction, yielding the rows
    each chunk read once it is committed. Each chunk renews the claim first and counts its rows
    on the job in its own transaction, so a worker killed at any point leaves the job's count
    exactly at the last committed chunk: the next claimer skips those rows, and every row is
    imported exactly once."""
    if path is None:
        raise ImportFileError("the file of this import is gone")
    default = queries.resource_by_id(resource_id) if resource_id else None
    columns = read_header(path)
    parser = RowParser(columns, list(queries.all_resources()), default, expected_rows=total)
    db.session.rollback()
    rules = Rules()
    jobs = ImportJob.__table__
    sqlite = db.session.get_bind().dialect.name == "sqlite"
    for rows, rejected, read in chunks(path, parser, skip=done):

        def work(
            rows: list[ImportRow] = rows, rejected: list[Rejection] = rejected, read: int = read
        ) -> Plan:
            # First, as the job row's lock (PostgreSQL) or the write lock (SQLite): is the job
            # still ours? A worker that outlived its lease must not write a chunk twice.
            # An UPDATE's result is a CursorResult, which counts the rows it matched.
            held = cast(
                "CursorResult[Any]",
                db.session.execute(
                    update(jobs).where(_mine(claim)).values(claimed_until=utcnow() + lease())
                ),
            )
            if held.rowcount != 1:
                raise LeaseLost(claim.job_id)
            chunk_now = now or utcnow()
            if sqlite:
                # A chunk touches thousands of index pages spread over the whole table: moving
                # them into the database file every 1,000 pages of log (the default) rewrote the
                # same pages again and again; this is 1.3x faster at a million rows.
                lengthen_wal_checkpoint(db.session.connection(), SQLITE_CHECKPOINT_PAGES)
            plan = plan_chunk(rows, rules, actor, chunk_now, for_update=True)
            write_plan(plan, chunk_now)
            write_rejections(claim.job_id, rejected + plan.rejections)
            db.session.execute(
                update(jobs)
                .where(jobs.c.id == claim.job_id)
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
        yield read


def import_file(
    path: str, default_slug: str | None, *, actor: str = CLI_ACTOR, on_progress: Any = None
) -> ImportJob:
    """Import a file in this process, as the command line does: create the job, run it."""
    job = create_job(os.path.abspath(path), path, default_slug, actor)
    return run_job(job.id, on_progress=on_progress)
