"""`flask upkeep`: the periodic jobs (`statuses expire`: suspensions that are over, and the
retention purge of rule 8) on a schedule, so that production needs no cron.

Any number of copies may run (one per machine, say). On PostgreSQL each run first takes an
advisory lock on a connection of its own and is skipped when another copy holds it, so the work
is done once per interval however many copies there are. On SQLite there is one machine and the
work's write transactions (``BEGIN IMMEDIATE``) serialise the copies: the second finds nothing
left to do. A database that goes away never ends the loop: it logs one line when the outage
starts and one when it ends, and tries again with backoff in between.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import InterfaceError, OperationalError

from app.extensions import db
from app.outages import Outage, wait_before_try
from app.services.maintenance import ExpiryReport, expire

log = logging.getLogger(__name__)

# The key of upkeep's PostgreSQL advisory lock: any fixed 64-bit number no other code uses
# ("optin-upkeep" in ASCII, truncated), so a DBA reading pg_locks can tell whose it is.
ADVISORY_LOCK_KEY = 0x6F7074696E2D75


@dataclass(frozen=True)
class UpkeepRun:
    """What one run did: ``report`` is None when another copy held the lock and this one skipped."""

    report: ExpiryReport | None

    @property
    def skipped(self) -> bool:
        return self.report is None


@contextmanager
def _exclusive() -> Iterator[bool]:
    """Whether this copy may run now: on PostgreSQL, whether it got the advisory lock (held on
    its own connection for the whole run, so the work's transactions can commit as they go; a
    copy that dies loses its connection and with it the lock). Elsewhere always."""
    if db.engine.dialect.name != "postgresql":
        yield True
        return
    with db.engine.connect() as connection:
        held = connection.execute(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
        ).scalar_one()
        connection.commit()
        try:
            yield bool(held)
        finally:
            if held:
                connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY}
                )
                connection.commit()


def run_once(retention_days: int) -> UpkeepRun:
    """One run of the periodic jobs, unless another copy is running them right now."""
    with _exclusive() as mine:
        if not mine:
            return UpkeepRun(None)
        return UpkeepRun(expire(retention_days))


def run_forever(
    interval: float,
    retention_days: int,
    *,
    on_run: Callable[[UpkeepRun], None] = lambda _run: None,
    sleep: Callable[[float], None] = time.sleep,
    keep_going: Callable[[], bool] = lambda: True,
) -> None:
    """Run the jobs every ``interval`` seconds while ``keep_going()``. A database error is an
    outage, not a reason to exit: one log line when it starts, retries with the outbox worker's
    backoff (0.5, 1, 2 ... seconds, at most ``interval``), one line when the database answers
    again."""
    database = Outage("upkeep: database", log)
    failures = 0
    while keep_going():
        try:
            run = run_once(retention_days)
        except (OperationalError, InterfaceError) as error:
            db.session.remove()  # the session's connection is dead; the next run takes a new one
            database.failed(error)
            failures += 1
            sleep(wait_before_try(failures, longest=interval))
            continue
        failures = 0
        database.recovered()
        on_run(run)
        sleep(interval)
