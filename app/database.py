"""How optin talks to its database: UTC timestamps everywhere, SQLite made safe for concurrent
writers, and the one way a service opens a write transaction."""

from __future__ import annotations

import functools
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from sqlalchemy import DateTime, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.pool import Pool
from sqlalchemy.types import TypeDecorator

from app.extensions import db

if TYPE_CHECKING:
    from flask import Flask

WRITE_OPTION = "optin_write"
# How long a SQLite statement waits for a lock another connection holds before it gives up.
BUSY_TIMEOUT_MS = 30000
# A unique-key race (two first signups of one address on PostgreSQL) is retried this many times.
ATTEMPTS = 3
T = TypeVar("T")
P = ParamSpec("P")


def unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the database cannot be reached right now (a restart, a network cut,
    a connection the server terminated), as opposed to a fault in what was asked of it. Callers
    answer 503 or wait and retry; the transaction it interrupted has been rolled back by the
    database, so nothing half-made stays behind."""
    if isinstance(error, OperationalError | InterfaceError):
        return True
    return isinstance(error, DBAPIError) and bool(error.connection_invalidated)


def let_go_of_dead_sessions(app: Flask) -> None:
    """End each request's session before Flask-SQLAlchemy's own teardown does, forgiving a
    connection the database dropped after the answer was made (a restart): ending the session
    rolls its read transaction back over that connection, which then fails, and an error raised
    in a teardown turns an answer already made into a 500. The pool has invalidated the
    connection by then; the session is only forgotten."""

    @app.teardown_appcontext
    def _let_go(_error: BaseException | None) -> None:
        try:
            db.session.remove()
        except DBAPIError as error:
            if not unreachable(error):
                raise
            db.session.registry.clear()


def system_time() -> datetime:
    """The machine's clock, timezone-aware, in UTC."""
    return datetime.now(UTC)


# Where ``utcnow`` reads the time. Tests swap in a clock they move forward (``clock`` in
# tests/conftest.py) instead of sleeping until a session or a link has expired.
clock: Callable[[], datetime] = system_time


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC: every rule and stamp in the app reads this."""
    return clock()


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; optin stores timezone-aware UTC times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@event.listens_for(Engine, "connect")
def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    # SQLAlchemy, not the sqlite3 module, decides where transactions begin (see _begin below).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()


# SQLite's default: the log is moved into the database file every 1,000 pages.
DEFAULT_WAL_CHECKPOINT = 1000
_LONG_CHECKPOINT = "optin_long_wal_checkpoint"


def lengthen_wal_checkpoint(connection: Connection, pages: int) -> None:
    """Let SQLite's log grow to ``pages`` before it is checkpointed, on this connection until it
    goes back to the pool (a bulk write touches index pages all over the file: checkpointing
    every 1,000 pages writes the same pages again and again). The pool puts the default back,
    so no web request inherits the long interval."""
    connection.exec_driver_sql(f"PRAGMA wal_autocheckpoint = {int(pages)}")
    connection.info[_LONG_CHECKPOINT] = True


@event.listens_for(Pool, "checkin")
def _restore_wal_checkpoint(dbapi_connection: Any, record: Any) -> None:
    if dbapi_connection is not None and record.info.pop(_LONG_CHECKPOINT, False):
        dbapi_connection.execute(f"PRAGMA wal_autocheckpoint = {DEFAULT_WAL_CHECKPOINT}")


@event.listens_for(Engine, "begin")
def _begin(connection: Connection) -> None:
    if connection.dialect.name != "sqlite":
        return
    # A write transaction takes SQLite's write lock before its first read, so two services that
    # read a profile and then change it run one after the other instead of losing an update.
    # (PostgreSQL gets the same from SELECT ... FOR UPDATE on the profile row.)
    if connection.get_execution_options().get(WRITE_OPTION):
        _begin_immediate(connection)
    else:
        connection.exec_driver_sql("BEGIN")


# SQLite's busy handler sleeps 1, 2, 5, 10, 15, 20, 25 ... ms between its tries, so a writer that
# finds the lock taken wakes long after the other worker's transaction (about 1 ms) has ended:
# under two gunicorn workers a third of the BEGIN IMMEDIATEs waited and the workers sat idle.
# Trying again ourselves after naps of 50 us growing to 1 ms halved that wait and raised the
# writes' throughput 7-9 % at the same CPU. Past the first 50 ms, SQLite's handler takes over,
# so a long wait still ends only at BUSY_TIMEOUT_MS.
_FAST_WINDOW = 0.05  # seconds
_FIRST_NAP = 50e-6
_NAP_GROWTH = 1.5
_LONGEST_NAP = 0.001


def _begin_immediate(connection: Connection) -> None:
    """Take SQLite's write lock: first with our own short naps, then with SQLite's handler.
    The fast tries go to the driver directly: each costs a few microseconds, where one through
    SQLAlchemy's execute costs some twenty (so statement counters no longer see this BEGIN)."""
    driver = cast(sqlite3.Connection, connection.connection.driver_connection)
    driver.execute("PRAGMA busy_timeout = 0")  # a taken lock answers SQLITE_BUSY at once
    try:
        taken = _took_write_lock_quickly(connection, driver)
    finally:
        driver.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if not taken:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _took_write_lock_quickly(connection: Connection, driver: sqlite3.Connection) -> bool:
    """Whether BEGIN IMMEDIATE got the lock within the fast window. Only SQLITE_BUSY (any of its
    extended codes, such as another process recovering the log) is tried again; any other error
    is raised at once, wrapped as SQLAlchemy wraps it, so ``unreachable`` still knows it."""
    deadline = time.monotonic() + _FAST_WINDOW
    nap = _FIRST_NAP
    while True:
        try:
            driver.execute("BEGIN IMMEDIATE")
            return True
        except sqlite3.Error as error:
            if not _busy(error):
                raise DBAPIError.instance(
                    "BEGIN IMMEDIATE", (), error, sqlite3.Error, dialect=connection.dialect
                ) from error
        if time.monotonic() + nap >= deadline:
            return False
        time.sleep(nap)
        nap = min(nap * _NAP_GROWTH, _LONGEST_NAP)


def _busy(error: sqlite3.Error) -> bool:
    """Whether ``error`` is SQLITE_BUSY: another connection holds the lock."""
    # The extended code (SQLITE_BUSY_RECOVERY is 261); errors Python raises itself have none.
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_BUSY


@contextmanager
def write_transaction() -> Iterator[Session]:
    """The transaction of one service call: everything in it is committed together or not at all.

    A read the caller began before is ended first, so the write starts from fresh data.
    """
    session = db.session()  # this request's (or thread's) session
    if session.in_transaction():
        session.commit()
    session.connection(execution_options={WRITE_OPTION: True})
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise


def in_write_transaction(work: Callable[[], T]) -> T:
    """Run ``work`` in one write transaction and commit it; run it again from the start if it lost
    a unique-key race to a concurrent transaction (the second run finds the winner's row)."""
    for attempt in range(ATTEMPTS):
        try:
            with write_transaction():
                return work()
        except IntegrityError:
            if attempt == ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def transactional(function: Callable[P, T]) -> Callable[P, T]:
    """Make a service function one write transaction: what it writes is committed when it
    returns and rolled back when it raises, and a lost unique-key race runs it again from the
    start (``in_write_transaction``). On the function, so a reader sees at its first line that
    the whole body is one transaction. A transactional function must not call another one: the
    inner call would commit the outer one's work half-done."""

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        return in_write_transaction(lambda: function(*args, **kwargs))

    return run
