"""`flask db upgrade` builds, from the Alembic migrations alone, exactly the schema the models
describe, on SQLite and on PostgreSQL; and the migrations go down and up again."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from app import create_app
from app.extensions import db
from tests.scratch import scratch_database


@pytest.fixture
def empty_database_url() -> Iterator[str]:
    """A database with nothing in it: a new SQLite file, or a new PostgreSQL database, with a
    name of its own and removed after the test, however the test ends (tests/scratch.py)."""
    with scratch_database("optin_migrations", os.environ.get("TEST_DATABASE_URL")) as url:
        yield url


def test_each_migration_test_gets_a_database_of_its_own(empty_database_url: str) -> None:
    """Never the suite's own database (nor CI's): a scratch one, made for this test."""
    name = make_url(empty_database_url).database
    server = os.environ.get("TEST_DATABASE_URL")
    assert server is None or name != make_url(server).database
    assert name is not None and "optin_migrations" in name


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


def test_the_search_keys_migration_folds_the_names_and_addresses_already_there(
    empty_database_url: str,
) -> None:
    """0011 fills the admin search's keys of existing profiles with Python's case folding, the
    same the app writes (addresses.search_key)."""
    from sqlalchemy import text

    from app.addresses import search_key

    people = [("straße@example.de", "Élodie Σοφία"), ("p2@example.com", None)]
    app = create_app({"TESTING": True, "DATABASE_URL": empty_database_url})
    with app.app_context():
        upgrade(revision="0010")
        with db.engine.begin() as connection:
            for email, name in people:
                connection.execute(
                    text(
                        "INSERT INTO profiles (email, email_hash, name, global_status, created_at,"
                        " updated_at, link_key) VALUES (:email, 'h', :name, 'subscribed',"
                        " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, :key)"
                    ),
                    {"email": email, "name": name, "key": email[:2] * 16},
                )
        upgrade()
        with db.engine.connect() as connection:
            keys = connection.execute(
                text("SELECT email_key, name_key FROM profiles ORDER BY id")
            ).all()
        assert [tuple(row) for row in keys] == [
            (search_key(email), search_key(name)) for email, name in people
        ]
        assert keys[0] == ("strasse@example.de", "élodie σοφία")
        downgrade(revision="0010")
        upgrade()
        db.engine.dispose()
