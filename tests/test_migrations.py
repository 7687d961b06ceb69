"""`flask db upgrade` builds, from the Alembic migrations alone, exactly the schema the models
describe, on SQLite and on PostgreSQL; and the migrations go down and up again."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from app import create_app
from app.extensions import db


@pytest.fixture
def empty_database_url(tmp_path) -> Iterator[str]:
    """A database with nothing in it: a new SQLite file, or a new PostgreSQL database."""
    server = os.environ.get("TEST_DATABASE_URL")
    if not server:
        yield f"sqlite:///{tmp_path}/migrated.sqlite3"
        return
    url = make_url(server)
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(False)
    # A name of its own, so that two suites on one server never share (or drop) each other's.
    name = f"optin_migrations_{uuid.uuid4().hex}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")
    try:
        yield url.set(database=name).render_as_string(False)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def schema_differences() -> list:
    with db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, db.metadata)


def test_the_migrations_build_the_models_schema(empty_database_url: str) -> None:
    app = create_app({"TESTING": True, "DATABASE_URL": empty_database_url})
    with app.app_context():
        upgrade()
        assert schema_differences() == []
        downgrade(revision="base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        upgrade()
        assert schema_differences() == []
        db.engine.dispose()
