"""How optin talks to its database: UTC timestamps everywhere, SQLite made safe for concurrent
writers, and the one way a service opens a write transaction."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

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
    cursor.execute("PRAGMA busy_timeout=30000")
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
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        connection.exec_driver_sql("BEGIN")


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
