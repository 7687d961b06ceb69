"""The import benchmark: a 1,000,000-row CSV imported into an empty database, beside its floor.

optin imports the file as ``flask import FILE --resource newsletter`` does
(``services.imports.import_file``: the row count, then chunks of 10,000 rows decided with the rules
of status.py and written with bulk statements). The floor is the raw driver doing the least the
same result needs: ``csv.reader``, a lower-cased address and its SHA-256, and ``executemany`` of
the same profiles, subscriptions, status events and consent records into the same tables (made by
the app's migrations), in chunks of 10,000 with one transaction each, with the same connection
settings. Each runs in its own process, so its peak RSS is its own; optin's RSS is also sampled
after each chunk, to show that memory stays flat as the rows go by.

    python -m bench.imports                       # 1,000,000 rows, SQLite (and PostgreSQL if up)
    python -m bench.imports --rows 100000 --no-postgres

The CSV and the databases live under bench/.data/import/ (git-ignored); never in /work/shared.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import resource
import secrets
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.dataset import DATA_DIR, log
from bench.machine import describe, postgres_version, source_revision

STATE = DATA_DIR / "import"
CHUNK = 10_000  # as services/imports.py
TARGET_ROWS_PER_SECOND = 50_000
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/optin_bench_import"
# A database the benchmark may drop and fill; never the test suite's or the server's own.
FORBIDDEN = {"test", "postgres", "template0", "template1", "optin", "optin_test"}

STATUS_WORDS = {
    "subscribed": "subscribed",
    "0": "subscribed",
    "unsubscribed": "unsubscribed",
    "1": "unsubscribed",
    "complainer": "complainer",
    "hardbounced": "hardbounced",
    "unconfirmed": "unconfirmed",
    "invalid": "invalid",
}


# --- The file ---------------------------------------------------------------------------------


def csv_path(rows: int) -> Path:
    return STATE / f"subscribers-{rows}.csv"


def status_of(i: int) -> str:
    """A mix like an export from another tool: most subscribed, some stopped."""
    slot = i % 100
    if slot < 80:
        return "subscribed"
    if slot < 88:
        return "unsubscribed"
    if slot < 90:
        return "1"  # Altcraft's number for unsubscribed
    if slot < 94:
        return "unconfirmed"
    if slot < 96:
        return "complainer"
    if slot < 98:
        return "hardbounced"
    return "invalid"


def write_csv(rows: int) -> Path:
    """The file, made once per size: about 1 in 200 rows malformed, 1 in 200 a duplicate, 1 in
    500 subscribed without a consent date (refused by the rules)."""
    path = csv_path(rows)
    if path.exists():
        return path
    STATE.mkdir(parents=True, exist_ok=True)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    partial = path.with_suffix(".partial")
    with open(partial, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["Email Address", "First Name", "Status", "Consent Date"])
        for i in range(rows):
            status = status_of(i)
            consent = (start + timedelta(minutes=i % 500_000)).isoformat()
            if status != "subscribed" or i % 500 == 3:
                consent = ""
            email = f"Person{i}@Example{i % 7}.com"
            if i % 200 == 17:
                email = f"person{i}.example.com"
            elif i % 200 == 99:
                email = f"Person{i - 1}@Example{(i - 1) % 7}.com"
            writer.writerow([email, f"Person {i}", status, consent])
    partial.rename(path)
    return path


# --- The databases ----------------------------------------------------------------------------


def fresh_sqlite(name: str) -> str:
    path = STATE / f"{name}.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path}"


def fresh_postgres(url: str) -> str:
    import psycopg

    base, name = url.rsplit("/", 1)
    if name in FORBIDDEN:
        raise SystemExit(f"refusing to drop and fill database {name!r}")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        connection.execute(f'CREATE DATABASE "{name}"')
    return url


def make_schema(url: str) -> None:
    """The app's migrations and its own resource service, as production has them."""
    import flask_migrate

    from app import create_app
    from app.extensions import db
    from app.services.resources import create_resource

    app = create_app({"DATABASE_URL": url})
    with app.app_context():
        flask_migrate.upgrade()
        create_resource("newsletter", "Newsletter")
        db.session.remove()
        db.engine.dispose()


# --- The two measurements, each in its own process --------------------------------------------


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_optin(url: str, path: str) -> dict[str, Any]:
    from app import create_app
    from app.services import imports

    app = create_app({"DATABASE_URL": url})
    with app.app_context():
        samples: list[tuple[int, float]] = []
        done = 0

        def progress(rows: int) -> None:
            nonlocal done
            done += rows
            samples.append((done, rss_mib()))

        before = rss_mib()
        started = time.perf_counter()
        job = imports.import_file(path, "newsletter", actor="bench", on_progress=progress)
        seconds = time.perf_counter() - started
        assert job.state == "done", job.error
        return {
            "seconds": seconds,
            "rows": job.processed_rows,
            "imported": job.imported_rows,
            "rejected": job.rejected_rows,
            "rss_start": before,
            "rss_samples": samples,
            "peak_rss": peak_rss_mib(),
        }


def _floor_rows(path: str) -> Any:
    """The rows as the floor reads them: the least checking that gives optin's good rows."""
    seen: set[str] = set()
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        for email, name, status, consent in reader:
            address = email.strip().lower()
            word = STATUS_WORDS.get(status.strip().lower())
            if "@" not in address or word is None or address in seen:
                continue
            if word == "subscribed" and not consent:
                continue
            seen.add(address)
            yield address, name, word, consent


def run_floor(url: str, path: str) -> dict[str, Any]:
    """Raw driver, same tables and rows: profiles, subscriptions, two events a row, consent."""
    now = datetime.now(UTC)
    postgres = url.startswith("postgresql")
    if postgres:
        import psycopg

        connection: Any = psycopg.connect(url.replace("postgresql+psycopg", "postgresql"))
        mark = "%s"
        stamp: Any = now
    else:
        connection = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        # optin's connection settings (app/database.py), and the import's checkpoint interval.
        pragmas = ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON")
        for pragma in (*pragmas, "wal_autocheckpoint=20000"):
            connection.execute(f"PRAGMA {pragma}")
        mark = "?"
        stamp = now.replace(tzinfo=None).isoformat(" ")

    def sql(table: str, columns: str) -> str:
        marks = ", ".join([mark] * len(columns.split(",")))
        return f"INSERT INTO {table} ({columns}) VALUES ({marks})"

    profiles = sql(
        "profiles",
        "id, email, email_hash, name, global_status, created_at, updated_at, link_key",
    )
    subscriptions = sql(
        "subscriptions",
        "id, profile_id, resource_id, channel, status, created_at, updated_at, confirmed_at",
    )
    events = sql(
        "status_events",
        "profile_id, resource_id, channel, old_status, new_status, cause, actor, occurred_at",
    )
    consents = sql("consent_records", "subscription_id, confirmed_at, form")

    def consent_time(text: str) -> Any:
        moment = datetime.fromisoformat(text)
        return moment if postgres else moment.replace(tzinfo=None).isoformat(" ")

    started = time.perf_counter()
    cursor = connection.cursor()
    cursor.execute("SELECT id FROM resources WHERE slug = 'newsletter'")
    resource_id = cursor.fetchone()[0]
    if postgres:
        connection.commit()
    next_id = 1
    inserted = 0
    rows = _floor_rows(path)
    while True:
        chunk = [row for _, row in zip(range(CHUNK), rows, strict=False)]
        if not chunk:
            break
        if not postgres:
            cursor.execute("BEGIN IMMEDIATE")
        ids = range(next_id, next_id + len(chunk))
        next_id += len(chunk)
        profile_rows, subscription_rows, event_rows, consent_rows = [], [], [], []
        for new_id, (address, name, status, consent) in zip(ids, chunk, strict=True):
            hashed = hashlib.sha256(address.encode()).hexdigest()
            global_status = "subscribed" if status == "subscribed" else "unconfirmed"
            # Each profile's link key, as optin makes it (NOT NULL since issue 9).
            key = secrets.token_hex(16)
            profile_rows.append((new_id, address, hashed, name, global_status, stamp, stamp, key))
            confirmed = consent_time(consent) if consent else None
            subscription_rows.append(
                (new_id, new_id, resource_id, "email", status, stamp, stamp, confirmed)
            )
            event_rows.append((new_id, None, None, None, global_status, "import", "bench", stamp))
            event_rows.append(
                (new_id, resource_id, "email", None, status, "import", "bench", stamp)
            )
            if confirmed is not None:
                consent_rows.append((new_id, confirmed, "import"))
        cursor.executemany(profiles, profile_rows)
        cursor.executemany(subscriptions, subscription_rows)
        cursor.executemany(events, event_rows)
        cursor.executemany(consents, consent_rows)
        if postgres:
            connection.commit()
        else:
            cursor.execute("COMMIT")
        inserted += len(chunk)
    seconds = time.perf_counter() - started
    connection.close()
    return {"seconds": seconds, "imported": inserted, "peak_rss": peak_rss_mib()}


def child(kind: str, url: str, path: str) -> dict[str, Any]:
    """Run one measurement in a fresh process and read its JSON answer."""
    answer = subprocess.run(
        [sys.executable, "-m", "bench.imports", "--child", kind, "--url", url, "--csv", path],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=Path(__file__).resolve().parent.parent,
    )
    if answer.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{answer.stderr[-3000:]}")
    return json.loads(answer.stdout.strip().splitlines()[-1])


def measure(database: str, make_url: Any, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    log(f"{database}: optin's import")
    url = make_url("optin")
    make_schema(url)
    ours = child("optin", url, path)
    log(f"{database}: the floor")
    url = make_url("floor")
    make_schema(url)
    floor = child("floor", url, path)
    if ours["imported"] != floor["imported"]:
        raise SystemExit(f"optin imported {ours['imported']} rows, the floor {floor['imported']}")
    return ours, floor


def table(rows: int, results: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> str:
    lines = [
        f"Import of a {rows:,}-row CSV into an empty database "
        f"({results[0][1]['imported']:,} rows land, {results[0][1]['rejected']:,} rejected)",
        "",
        "| database | optin rows/s | floor rows/s | ratio (optin time / floor time) "
        "| optin peak RSS | RSS after 10% / 50% / 100% of rows | floor peak RSS | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for database, ours, floor in results:
        samples = ours["rss_samples"]

        def at(share: float, samples: list[Any] = samples, rows: int = ours["rows"]) -> str:
            wanted = share * rows
            return f"{next(rss for done, rss in samples if done >= wanted):.0f}"

        lines.append(
            f"| {database} | {ours['rows'] / ours['seconds']:,.0f} "
            f"({ours['seconds']:.1f} s) | {ours['rows'] / floor['seconds']:,.0f} "
            f"({floor['seconds']:.1f} s) | {ours['seconds'] / floor['seconds']:.2f}x "
            f"| {ours['peak_rss']:.0f} MiB | {at(0.1)} / {at(0.5)} / {at(1.0)} MiB "
            f"| {floor['peak_rss']:.0f} MiB | ≥ {TARGET_ROWS_PER_SECOND:,} rows/s, flat memory |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--postgres", default=os.environ.get("BENCH_IMPORT_DATABASE_URL"))
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--child", choices=["optin", "floor"])
    parser.add_argument("--url")
    parser.add_argument("--csv")
    args, _unknown = parser.parse_known_args()

    if args.child:
        run = run_optin if args.child == "optin" else run_floor
        print(json.dumps(run(args.url, args.csv)))
        return

    path = str(write_csv(args.rows))
    results = []
    if not args.no_sqlite:
        results.append(("SQLite", *measure("SQLite", fresh_sqlite, path)))
    pg_version = None
    postgres = None if args.no_postgres else (args.postgres or POSTGRES_URL)
    if postgres:
        try:
            pg_version = postgres_version(postgres.rsplit("/", 1)[0] + "/postgres")
        except Exception as error:  # the server is optional
            log(f"PostgreSQL not measured: {error}")
        else:
            base = postgres.rsplit("/", 1)[0]
            name = postgres.rsplit("/", 1)[1]
            results.append(
                (
                    "PostgreSQL",
                    *measure(
                        "PostgreSQL", lambda kind: fresh_postgres(f"{base}/{name}_{kind}"), path
                    ),
                )
            )
    print(table(args.rows, results))
    print()
    print(describe(pg_version) + f"; optin at {source_revision()}")


if __name__ == "__main__":
    main()
