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


def test_the_links_migration_keeps_every_row_and_gives_each_profile_its_own_key(
    empty_database_url: str,
) -> None:
    """0008 rebuilds the linked tables on SQLite (AUTOINCREMENT) without losing a row to the
    rebuild's DROP TABLE, and fills a random link key for every profile already there."""
    from sqlalchemy import text

    app = create_app({"TESTING": True, "DATABASE_URL": empty_database_url})
    with app.app_context():
        upgrade(revision="0007")
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO resources (slug, name, description, channels, public,"
                    " double_opt_in, created_at) VALUES ('news', 'News', '', 'email', true,"
                    " true, CURRENT_TIMESTAMP)"
                )
            )
            for number in (1, 2, 3):
                connection.execute(
                    text(
                        "INSERT INTO profiles (email, email_hash, global_status, created_at,"
                        " updated_at) VALUES (:email, 'h', 'subscribed', CURRENT_TIMESTAMP,"
                        " CURRENT_TIMESTAMP)"
                    ),
                    {"email": f"p{number}@example.com"},
                )
            connection.execute(
                text(
                    "INSERT INTO subscriptions (profile_id, resource_id, channel, status,"
                    " created_at, updated_at) SELECT profiles.id, resources.id, 'email',"
                    " 'subscribed', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP FROM profiles, resources"
                )
            )
        upgrade()
        with db.engine.begin() as connection:
            keys = connection.execute(text("SELECT link_key FROM profiles")).scalars().all()
            subscriptions = connection.execute(text("SELECT count(*) FROM subscriptions")).scalar()
            assert subscriptions == 3
            assert len(set(keys)) == 3
            assert all(len(key) == 32 and key == key.lower() for key in keys)
            assert int(keys[0], 16) >= 0  # hex digits
            # Mail already sent to these people has keyless unsubscribe links, which still work.
            legacy = connection.execute(text("SELECT legacy_links FROM profiles")).scalars().all()
            assert legacy == [True, True, True]
            # The newest profile deleted, the next one gets a new id (SQLite: AUTOINCREMENT).
            newest = connection.execute(text("SELECT max(id) FROM profiles")).scalar()
            connection.execute(text("DELETE FROM profiles WHERE id = :id"), {"id": newest})
            connection.execute(
                text(
                    "INSERT INTO profiles (email, email_hash, global_status, created_at,"
                    " updated_at, link_key) VALUES ('new@example.com', 'h', 'subscribed',"
                    " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, :key)"
                ),
                {"key": "0" * 32},
            )
            new_id = connection.execute(
                text("SELECT id FROM profiles WHERE email = 'new@example.com'")
            ).scalar()
        assert new_id is not None and new_id > newest
        with db.engine.connect() as connection:
            marked = connection.execute(
                text("SELECT legacy_links FROM profiles WHERE id = :id"), {"id": new_id}
            ).scalar()
        assert not marked  # a profile made after the upgrade never had a keyless link
        assert schema_differences() == []
        downgrade(revision="0007")
        with db.engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM subscriptions")).scalar() == 2
        db.engine.dispose()
