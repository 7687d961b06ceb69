"""``python -m bench.admin_search`` (``make bench-search``): the admin's profile search at
1,000,000 profiles, beside its floor.

The issue's figure: the p95 latency of a profile search for random prefixes of emails and names,
target under 50 ms. Two things are timed for each prefix, on the dataset of ``bench/dataset.py``:

- ours, the query: ``queries.search_profiles(term, limit=51)`` in an app context, the call the
  search page makes (a page of 50 and one more to know whether a next page exists);
- ours, the page: ``GET /admin/profiles?q=term`` through Flask's test client, logged in, so the
  whole request: the guard, the query, the template;
- the floor: the same two index ranges (the search keys of the email and the name) written as
  raw SQL through the driver alone (``sqlite3``, ``psycopg``), each returning the profile
  columns the page shows, merged in Python: what the search costs with the best index and no
  framework at all.

Every prefix is run once untimed first (a warm cache, as on a server that is in use), then timed.
The page needs an admin user: the benchmark adds ``bench-admin@example.com`` to the dataset's
database if it is missing (a row no other figure reads).
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import dataset, machine
from bench.__main__ import DEFAULT_POSTGRES, FULL_SIZE, Backend, Figure, backends, table
from bench.dataset import log

RESULTS = Path(__file__).resolve().parent / "results-admin-search.md"
TARGET_MS = 50.0
PAGE = 50
SEED = 5
DASHBOARD_RUNS = 5
BENCH_ADMIN = "bench-admin@example.com"
BENCH_PASSWORD = "bench admin password"


def random_prefixes(profiles: int, count: int) -> list[tuple[str, str]]:
    """(kind, prefix) pairs, half of emails and half of names of the dataset, each 1 to 8
    characters long and in a random case (the search ignores case)."""
    rng = random.Random(SEED)
    found: list[tuple[str, str]] = []
    for number in range(count):
        index = rng.randint(1, profiles)
        if number % 2 == 0:
            kind, text = "email", dataset.email_of(index)
        else:
            first = dataset.FIRST_NAMES[index % len(dataset.FIRST_NAMES)]
            last = dataset.LAST_NAMES[index % len(dataset.LAST_NAMES)]
            kind, text = "name", f"{first} {last}"
        prefix = text[: rng.randint(1, 8)]
        found.append((kind, prefix.upper() if rng.random() < 0.5 else prefix))
    return found


def timed(run: Callable[[str], Any], prefixes: list[str]) -> list[float]:
    """Milliseconds of each call, after one untimed pass over every prefix."""
    for prefix in prefixes:
        run(prefix)
    times = []
    for prefix in prefixes:
        started = time.perf_counter()
        run(prefix)
        times.append((time.perf_counter() - started) * 1000)
    return times


def p95(times: list[float]) -> float:
    return statistics.quantiles(times, n=20)[-1]


def next_prefix(prefix: str) -> str:
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


# --- The floor: raw SQL through the driver -----------------------------------------------------

FLOOR_COLUMNS = "id, email, name, global_status, suspended_until, created_at"
SQLITE_FLOOR = (
    f"SELECT email_key, {FLOOR_COLUMNS} FROM profiles WHERE email_key >= ? AND email_key < ? "
    "ORDER BY email_key, id LIMIT ?",
    f"SELECT name_key, {FLOOR_COLUMNS} FROM profiles WHERE name_key >= ? "
    "AND name_key < ? AND NOT (email_key >= ? AND email_key < ?) ORDER BY name_key, id LIMIT ?",
)
POSTGRES_FLOOR = (
    f'SELECT email_key COLLATE "C", {FLOOR_COLUMNS} FROM profiles '
    'WHERE email_key COLLATE "C" >= %(p)s AND email_key COLLATE "C" < %(n)s '
    'ORDER BY email_key COLLATE "C", id LIMIT %(l)s',
    f'SELECT name_key COLLATE "C", {FLOOR_COLUMNS} FROM profiles '
    'WHERE name_key COLLATE "C" >= %(p)s AND name_key COLLATE "C" < %(n)s '
    'AND NOT (email_key COLLATE "C" >= %(p)s AND email_key COLLATE "C" < %(n)s) '
    'ORDER BY name_key COLLATE "C", id LIMIT %(l)s',
)


def floor_search(backend: Backend) -> tuple[Callable[[str], Any], Callable[[], None]]:
    """The floor's search function for this backend, and how to close its connection."""
    if backend.kind == "sqlite":
        assert backend.path is not None
        connection = sqlite3.connect(backend.path)

        def search_sqlite(term: str) -> list[Any]:
            p = term.strip().casefold()
            n = next_prefix(p)
            email_rows = connection.execute(SQLITE_FLOOR[0], (p, n, PAGE + 1)).fetchall()
            name_rows = connection.execute(SQLITE_FLOOR[1], (p, n, p, n, PAGE + 1)).fetchall()
            return sorted(email_rows + name_rows, key=lambda row: (row[0], row[1]))[: PAGE + 1]

        return search_sqlite, connection.close

    import psycopg

    assert backend.conninfo is not None
    pg = psycopg.connect(backend.conninfo, autocommit=True)

    def search_postgres(term: str) -> list[Any]:
        p = term.strip().casefold()
        values = {"p": p, "n": next_prefix(p), "l": PAGE + 1}
        rows = pg.execute(POSTGRES_FLOOR[0], values).fetchall()
        rows += pg.execute(POSTGRES_FLOOR[1], values).fetchall()
        return sorted(rows, key=lambda row: (row[0], row[1]))[: PAGE + 1]

    return search_postgres, pg.close


# --- Ours ----------------------------------------------------------------------------------------


def measure(backend: Backend, prefixes: list[tuple[str, str]]) -> tuple[list[Figure], list[str]]:
    """The three timings on one backend, as the table's rows and notes."""
    from app import create_app, queries
    from app.extensions import db
    from app.models import AdminUser
    from app.services.admin_users import create_user
    from app.views.admin import SESSION_STARTED

    terms = [prefix for _, prefix in prefixes]
    app = create_app({"DATABASE_URL": backend.app_url, "RATELIMIT_ENABLED": False})
    with app.app_context():
        user = db.session.query(AdminUser).filter_by(email=BENCH_ADMIN).one_or_none()
        if user is None:
            user = create_user(BENCH_ADMIN, BENCH_PASSWORD)
        login_id = user.get_id()  # the id and session version the user loader checks

        def search_query(term: str) -> Any:
            found = queries.search_profiles(term, limit=PAGE + 1)
            db.session.rollback()  # as a request ends its read
            return found

        query_times = timed(search_query, terms)
        matches = [len(search_query(term)) for term in terms]
        db.session.remove()

    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = login_id
        session["_fresh"] = True
        session[SESSION_STARTED] = datetime.now(UTC).timestamp()

    def search_page(term: str) -> None:
        answer = client.get("/admin/profiles", query_string={"q": term})
        assert answer.status_code == 200, answer.status_code

    page_times = timed(search_page, terms)

    def dashboard(_: str) -> None:
        assert client.get("/admin/dashboard").status_code == 200

    dashboard_times = timed(dashboard, ["once"] * DASHBOARD_RUNS)
    with app.app_context():
        db.engine.dispose()

    run_floor, close_floor = floor_search(backend)
    try:
        floor_rows = [len(run_floor(term)) for term in terms]
        floor_times = timed(run_floor, terms)
    finally:
        close_floor()
    assert floor_rows == matches, "the floor and optin found different numbers of profiles"

    floor = p95(floor_times)
    n = len(terms)
    figures = []
    for what, times in (
        (f"search query (`queries.search_profiles`), {n} random prefixes", query_times),
        (f"the search page (`GET /admin/profiles?q=`, test client), {n} prefixes", page_times),
    ):
        ours = p95(times)
        figures.append(
            Figure(
                figure=f"{backend.name}: {what}",
                ours=f"p95 {ours:.2f} ms (p50 {statistics.median(times):.2f})",
                floor=f"p95 {floor:.2f} ms (p50 {statistics.median(floor_times):.2f})",
                ratio=ours / floor,
                target=f"p95 < {TARGET_MS:.0f} ms",
                met=ours < TARGET_MS,
            )
        )
    full = sum(1 for count in matches if count > PAGE)
    notes = [
        f"{backend.name}: {full} of {n} prefixes filled a page and had more (a next page); "
        f"{sum(1 for count in matches if count == 0)} matched nothing.",
        f"{backend.name}: the dashboard page (`GET /admin/dashboard`, no target, no floor) "
        f"takes {statistics.median(dashboard_times):.0f} ms (median of {DASHBOARD_RUNS}): its "
        "counts read the status and audience indexes whole; the dataset has no status events, "
        "so its charts cost nothing here.",
    ]
    return figures, notes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.admin_search", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--profiles", type=int, default=FULL_SIZE)
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=os.environ.get("BENCH_DATABASE_URL"),
        help=f"also run on this PostgreSQL database (default: $BENCH_DATABASE_URL, else "
        f"{DEFAULT_POSTGRES} when that server answers); the benchmark drops and refills it",
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--prefixes", type=int, default=200, help="searches (default: 200)")
    parser.add_argument("--regenerate", action="store_true", help="build the datasets again")
    parser.add_argument("--output", type=Path, help="where to write the table")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    load_at_start = os.getloadavg()[0]
    found, postgres_version = backends(args)
    prefixes = random_prefixes(args.profiles, args.prefixes)
    figures: list[Figure] = []
    notes: list[str] = []
    for backend in found:
        log(f"measuring the profile search on {backend.name} ...")
        measured = measure(backend, prefixes)
        figures += measured[0]
        notes += measured[1]
    sample = ", ".join(f"`{prefix}`" for _, prefix in prefixes[:8])
    report = "\n".join(
        [
            f"optin at commit {machine.source_revision()}. Dataset: {args.profiles:,} profiles "
            f"(bench/dataset.py, seed {dataset.SEED}, schema {dataset.schema_revision()}); "
            f"{len(prefixes)} prefixes, half of emails and half of names, 1 to 8 characters in "
            f"a random case (seed {SEED}; the first: {sample}).",
            "",
            table(figures),
            "",
            machine.describe(postgres_version),
            f"Load average (1 min): {load_at_start:.2f} at the start, {os.getloadavg()[0]:.2f} at "
            "the end.",
            "",
            "Ratio = ours / floor at p95 (lower is better). The floor runs the same two index "
            "ranges as raw SQL through the driver and returns the page's columns.",
            "",
            *(f"- {note}" for note in notes),
        ]
    )
    output = dataset.write_results(report, args.output, RESULTS, args.profiles, FULL_SIZE)
    print()
    print(report)
    print()
    log(f"written to {output} ({time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
