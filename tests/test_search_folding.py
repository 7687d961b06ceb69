"""The admin's profile search folds case the same way on SQLite and PostgreSQL: by Python
(``str.casefold``, accents kept), stored as a search key beside the email and the name, kept up
to date by every write, and read as a prefix range of an index on both databases.

Before, SQLite's ``lower()`` folded ASCII only, so "é" did not find "Élodie" there while it did
on PostgreSQL; and neither folded "ß" to "ss" nor a final "ς" to "σ"."""

# The letters that look alike are the point of these tests (Turkish ı, Greek σ).
# ruff: noqa: RUF001, RUF002, RUF003

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, text

from app import queries
from app.addresses import search_key
from app.extensions import db
from app.models import Profile, Resource
from app.services import imports
from app.services.preferences import update_preferences
from app.services.statuses import Actor
from tests import factories
from tests.conftest import on_postgres

# (address, name): German, French, Turkish dotted and dotless i, Greek with its final sigma.
PEOPLE = [
    ("p1@example.com", "Straße Müller"),
    ("p2@example.com", "Ärger Äpfel"),
    ("p3@example.com", "Élodie Février"),
    ("p4@example.com", "elodie plain"),
    ("p5@example.com", "İstanbul İnci"),
    ("p6@example.com", "ılık Işık"),
    ("p7@example.com", "Νίκος Σοφία"),
    ("p8@example.com", "ΣΟΦΟΚΛΗΣ"),
    ("jürgen@example.com", None),
    ("straße@example.de", None),
    ("élodie@example.fr", None),
]

# The search term, and the addresses it finds: the same on both databases.
CASES = [
    ("strasse", {"p1@example.com", "straße@example.de"}),
    ("STRASSE", {"p1@example.com", "straße@example.de"}),
    ("Straß", {"p1@example.com", "straße@example.de"}),
    ("ä", {"p2@example.com"}),
    ("ÄRGER", {"p2@example.com"}),
    ("a", set()),  # accents are kept: "a" is not "ä"
    ("é", {"p3@example.com", "élodie@example.fr"}),
    ("ÉLODIE", {"p3@example.com", "élodie@example.fr"}),
    ("elodie", {"p4@example.com"}),
    ("İstanbul", {"p5@example.com"}),
    ("i̇stanbul", {"p5@example.com"}),  # the dotted i as casefold spells it: i + U+0307
    ("ı", {"p6@example.com"}),  # the dotless ı is its own letter
    ("ILIK", set()),  # Python folds I to i, never to ı
    ("νίκος", {"p7@example.com"}),  # a final ς is σ once folded
    ("ΝΊΚΟΣ", {"p7@example.com"}),
    ("σοφοκλης", {"p8@example.com"}),
    ("ΣΟΦΟΚΛΉΣ", set()),  # the accent counts
    ("JÜRGEN", {"jürgen@example.com"}),
    ("jü", {"jürgen@example.com"}),
]


def found(term: str) -> set[str]:
    return {profile.email for _key, profile in queries.search_profiles(term, limit=100)}


@pytest.fixture
def people(newsletter: Resource) -> None:
    for email, name in PEOPLE:
        factories.signup(email, "newsletter", name=name)


@pytest.mark.parametrize(("term", "expected"), CASES)
def test_search_folds_non_ascii_names_and_addresses_as_python_does(
    people: None, term: str, expected: set[str]
) -> None:
    assert found(term) == expected


def test_the_search_page_finds_an_accented_name_by_its_lower_case(
    admin_client: FlaskClient, people: None
) -> None:
    page = admin_client.get("/admin/profiles?q=%C3%A9").get_data(as_text=True)  # "é"
    assert "p3@example.com" in page and "Élodie Février" in page
    assert "p4@example.com" not in page


def test_every_write_of_a_name_keeps_its_search_key(tmp_path: Path, newsletter: Resource) -> None:
    factories.signup("ann@example.com", "newsletter", name="Ann")
    profile = queries.profile_by_email("ann@example.com")
    assert profile is not None
    # The preference page renames.
    update_preferences(profile.id, wanted=set(), name="Ännchen Σ", locale=None, actor=Actor())
    assert found("ÄNNCHEN") == {"ann@example.com"} and found("ann") == {"ann@example.com"}
    # An import names a profile that had no name, and makes new ones, with the bulk writer.
    factories.signup("bea@example.com", "newsletter")
    csv = tmp_path / "people.csv"
    csv.write_text(
        "email,name,status\nbea@example.com,Béatrice,unsubscribed\nçem@example.com,Çem,unsubscribed\n",
        encoding="utf-8",
    )
    imports.import_file(str(csv), "newsletter", actor="admin@example.com")
    db.session.rollback()
    assert found("BÉA") == {"bea@example.com"}
    assert found("Ç") == {"çem@example.com"}
    for row in db.session.query(Profile):
        assert (row.email_key, row.name_key) == (search_key(row.email), search_key(row.name))


def test_the_search_reads_its_two_indexes_on_this_database(people: None) -> None:
    """The plan of each half of the search uses its index (on PostgreSQL with sequential scans
    made unattractive, since a table this small would be read whole otherwise): the byte order
    of the query and the index's must match for the range to be read there."""
    email_key, name_key = queries.search_keys()

    halves = {
        "ix_profiles_email_key": select(Profile.id)
        .where(email_key >= "é", email_key < "ê")
        .order_by(email_key, Profile.id)
        .limit(50),
        "ix_profiles_name_key": select(Profile.id)
        .where(name_key >= "é", name_key < "ê")
        .order_by(name_key, Profile.id)
        .limit(50),
    }
    connection = db.session.connection()
    for index, query in halves.items():
        compiled = query.compile(connection, compile_kwargs={"literal_binds": True})
        if on_postgres():
            connection.execute(text("SET LOCAL enable_seqscan = off"))
            # A bitmap scan never reads in order; on a table this small the planner may pick one
            # (and then sort) by its statistics of the moment, which a test cannot pin.
            connection.execute(text("SET LOCAL enable_bitmapscan = off"))
            connection.execute(text("SET LOCAL enable_sort = off"))  # left in: no index has it
            plan = "\n".join(connection.execute(text(f"EXPLAIN {compiled}")).scalars())
            assert index in plan and "Sort" not in plan, plan
        else:
            rows = connection.execute(text(f"EXPLAIN QUERY PLAN {compiled}")).all()
            plan = "\n".join(str(row[-1]) for row in rows)
            assert f"USING INDEX {index}" in plan or f"USING COVERING INDEX {index}" in plan, plan
            assert "TEMP B-TREE" not in plan, plan
    db.session.rollback()
