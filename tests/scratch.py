"""Databases a test makes for itself, each with a name of its own and gone afterwards.

Two suites may run at the same time against one PostgreSQL server (two engineers, CI beside a
developer): a fixed name would let one suite drop the database the other is using. So every
database a test creates gets a random name and is dropped in a ``finally``, also when the test
body fails.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy.engine import make_url


def server_admin_url(server: str) -> str:
    """The maintenance database of the server ``server`` names, where CREATE DATABASE runs."""
    return (
        make_url(server).set(drivername="postgresql", database="postgres").render_as_string(False)
    )


def postgres_database_exists(server: str, name: str) -> bool:
    """Whether the server ``server`` names has a database called ``name``."""
    with psycopg.connect(server_admin_url(server), autocommit=True) as connection:
        found = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        return found.fetchone() is not None


@contextmanager
def scratch_database(prefix: str, server: str | None = None) -> Iterator[str]:
    """The URL of a new, empty database: a SQLite file in a new temporary folder, or, when
    ``server`` (a PostgreSQL URL) is given, a new database on that server. Either is removed
    when the block ends, however it ends."""
    if not server:
        folder = tempfile.mkdtemp(prefix=f"{prefix}-")
        path = os.path.join(folder, "scratch.sqlite3")
        try:
            yield f"sqlite:///{path}"
        finally:
            for name in os.listdir(folder):  # the file and SQLite's -wal / -shm beside it
                os.remove(os.path.join(folder, name))
            os.rmdir(folder)
        return
    # A random name of its own: never one another suite on the same server uses (or drops).
    name = f"{prefix}_{uuid.uuid4().hex}"
    admin = server_admin_url(server)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    try:
        yield make_url(server).set(database=name).render_as_string(False)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
