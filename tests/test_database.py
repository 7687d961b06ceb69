"""app/database.py on SQLite: a write transaction that finds SQLite's write lock taken by another
connection waits for it (first with its own short naps, then with SQLite's busy handler) and then
goes ahead; the connection keeps its 30 s busy timeout; an error other than "busy" is not
retried."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask import Flask
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import OperationalError

from app import database
from app.database import BUSY_TIMEOUT_MS, WRITE_OPTION
from app.extensions import db
from tests.conftest import on_postgres

pytestmark = pytest.mark.skipif(on_postgres(), reason="SQLite's write lock and busy handler")

# Generous: the machine may be busy with other test runs.
PATIENCE = 20.0


def statements_of(connection: Connection) -> list[str]:
    """Every statement the connection's SQLite runs from now on, as SQLite sees them (a busy
    handler's own tries inside one statement are not repeated here; our retries are)."""
    seen: list[str] = []
    driver = connection.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    driver.set_trace_callback(seen.append)
    return seen


@contextmanager
def write_lock_held_elsewhere(engine: Engine) -> Iterator[sqlite3.Connection]:
    """Another process's connection holding SQLite's write lock until the block ends."""
    holder = sqlite3.connect(engine.url.database or "", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("CREATE TABLE IF NOT EXISTS lock_order (who TEXT)")
        holder.execute("INSERT INTO lock_order VALUES ('holder')")
        yield holder
        holder.execute("COMMIT")
    finally:
        holder.close()


class Writer(threading.Thread):
    """A write transaction (as ``write_transaction`` opens it) in its own thread and connection:
    it records the order in which it wrote and the busy timeout it kept."""

    def __init__(self, engine: Engine, wake_at: str) -> None:
        super().__init__(daemon=True)
        self.engine = engine
        self.wake_at = wake_at  # the statement whose second sighting means "it is waiting"
        self.waiting = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.busy_timeout: int | None = None
        self.statements: list[str] = []

    def run(self) -> None:
        try:
            with self.engine.connect() as connection:
                self.statements = statements_of(connection)
                watch = threading.Thread(target=self._watch, daemon=True)
                watch.start()
                writer = connection.execution_options(**{WRITE_OPTION: True})
                with writer.begin():
                    writer.execute(text("INSERT INTO lock_order VALUES ('writer')"))
                self.busy_timeout = writer.exec_driver_sql("PRAGMA busy_timeout").scalar()
        except BaseException as error:  # reported to the test
            self.error = error
        finally:
            self.done.set()

    def _watch(self) -> None:
        while not self.done.is_set():
            if self.statements.count(self.wake_at) >= 2 or self._in_busy_handler():
                self.waiting.set()
                return
            self.done.wait(0.001)

    def _in_busy_handler(self) -> bool:
        """Whether the last BEGIN IMMEDIATE came after the busy timeout was put back."""
        restored = f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}"
        if self.wake_at != restored or restored not in self.statements:
            return False
        return "BEGIN IMMEDIATE" in self.statements[self.statements.index(restored) :]


def written_order(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.execute(text("SELECT who FROM lock_order ORDER BY rowid")).scalars())


@pytest.fixture
def engine(app: Flask) -> Iterator[Engine]:
    engine = db.engine
    yield engine
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS lock_order"))


def test_a_write_waits_briefly_for_the_lock_and_goes_ahead_once_it_is_free(engine: Engine) -> None:
    with write_lock_held_elsewhere(engine):
        writer = Writer(engine, wake_at="BEGIN IMMEDIATE")
        writer.start()
        # It found the lock taken and tried again itself, without SQLite's long sleeps.
        assert writer.waiting.wait(PATIENCE)
        assert not writer.done.is_set()
    assert writer.done.wait(PATIENCE)
    assert writer.error is None
    assert written_order(engine) == ["holder", "writer"]
    assert writer.busy_timeout == BUSY_TIMEOUT_MS


def test_a_write_waits_past_the_fast_window_with_sqlites_handler(engine: Engine) -> None:
    with write_lock_held_elsewhere(engine):
        writer = Writer(engine, wake_at=f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        writer.start()
        # Past the fast window it waits in SQLite's busy handler, not giving up.
        assert writer.waiting.wait(PATIENCE)
        assert not writer.done.wait(0.2)
    assert writer.done.wait(PATIENCE)
    assert writer.error is None
    assert written_order(engine) == ["holder", "writer"]
    assert writer.busy_timeout == BUSY_TIMEOUT_MS


def test_a_write_gives_up_after_the_busy_timeout_with_the_timeout_kept(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "BUSY_TIMEOUT_MS", 100)
    monkeypatch.setattr(database, "_FAST_WINDOW", 0.01)
    with write_lock_held_elsewhere(engine), engine.connect() as connection:
        driver = connection.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        writer = connection.execution_options(**{WRITE_OPTION: True})
        with pytest.raises(OperationalError, match="locked"):
            writer.begin()
        assert driver.execute("PRAGMA busy_timeout").fetchone() == (100,)


def test_an_error_other_than_busy_is_raised_at_once_and_the_timeout_is_kept(
    engine: Engine,
) -> None:
    with engine.connect() as connection:
        statements = statements_of(connection)
        driver = connection.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        driver.execute("BEGIN")  # a transaction SQLAlchemy does not know of: SQLITE_ERROR
        writer = connection.execution_options(**{WRITE_OPTION: True})
        with pytest.raises(OperationalError, match="within a transaction"):
            writer.begin()
        assert statements.count("BEGIN IMMEDIATE") == 1
        assert driver.execute("PRAGMA busy_timeout").fetchone() == (BUSY_TIMEOUT_MS,)
        driver.execute("ROLLBACK")
