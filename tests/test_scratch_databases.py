"""Tests that make a database of their own can run beside another suite on the same server:
each database gets a name no other run uses, and it is gone afterwards, even when the test fails.
(On SQLite the same holds for the file; on PostgreSQL with TEST_DATABASE_URL, for the server.)"""

from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.scratch import postgres_database_exists, scratch_database

SERVER = os.environ.get("TEST_DATABASE_URL")


def exists(url: str) -> bool:
    found = make_url(url)
    if SERVER:
        return postgres_database_exists(SERVER, str(found.database))
    return os.path.exists(str(found.database))


class BodyFailed(Exception):
    pass


def test_two_scratch_databases_have_different_names_and_both_work() -> None:
    with (
        scratch_database("optin_side_by_side", SERVER) as first,
        scratch_database("optin_side_by_side", SERVER) as second,
    ):
        assert make_url(first).database != make_url(second).database
        for url in (first, second):
            engine = create_engine(url)
            with engine.begin() as connection:
                connection.execute(text("CREATE TABLE mine (id integer)"))
            engine.dispose()
    assert not exists(first) and not exists(second)


def test_a_scratch_database_is_gone_after_a_test_body_that_fails() -> None:
    made: list[str] = []
    with pytest.raises(BodyFailed), scratch_database("optin_side_by_side", SERVER) as url:
        made.append(url)
        engine = create_engine(url)
        with engine.connect() as connection:  # a connection still open when it fails
            connection.execute(text("SELECT 1"))
            assert exists(url)
            raise BodyFailed
    assert made and not exists(made[0])
