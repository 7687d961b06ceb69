"""The benchmark's dataset: profiles, subscriptions and suppressions with realistic status mixes.

The schema is built through the application (its Alembic migration, and its own service for the
resources), so the benchmark measures the tables and indexes production has. The rows themselves
are written with the raw driver (sqlite3 ``executemany`` in one transaction, PostgreSQL ``COPY``)
because going through the ORM would take far longer than every measurement together.

Everything is drawn from one seeded generator, so two runs of the same size build the same
database, and the figures of two machines can be compared.
"""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import sys
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# Bump when the generator changes, so that a cached database of the old shape is not reused.
VERSION = 3  # 2: the admin search keys (email_key, name_key); 3: the link key
SEED = 20_251_126
# The benchmark's clock. Generation and measurement share it, so that a cached dataset's
# "future" suspensions stay in the future however long it is kept.
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "bench" / ".data"
CHUNK = 50_000  # profiles generated and written per round: bounds the generator's memory
MARKER_TABLE = "bench_dataset"  # one row naming the dataset, so that reruns can skip generation

DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com")
FIRST_NAMES = ("Anna", "Ben", "Chloé", "David", "Emma", "Felix", "Grace", "Hugo", "Ida", "Jonas")
LAST_NAMES = ("Meyer", "Smith", "Dubois", "Rossi", "Novak", "Berg", "Silva", "Kowalski")
LOCALES = ("en", "en", "de", "fr", None)


@dataclass(frozen=True)
class ResourceSpec:
    """One of the three resources; ``weight`` is how popular it is among subscribers."""

    slug: str
    name: str
    channels: tuple[str, ...]
    weight: float


RESOURCES = (
    ResourceSpec("newsletter", "Weekly newsletter", ("email",), 0.60),
    ResourceSpec("brand", "Brand news", ("email", "sms"), 0.25),
    ResourceSpec("offers", "Offers", ("email",), 0.15),
)
# The resource whose audience is streamed: the largest, so the worst case.
AUDIENCE_RESOURCE = "newsletter"
SMS_SHARE = 0.4  # of the brand's email subscribers, how many also take its SMS

# Status mixes, in parts per thousand. Global: most profiles confirmed once and stayed.
GLOBAL_MIX = {
    "subscribed": 865,
    "unsubscribed": 55,
    "unconfirmed": 30,
    "complainer": 5,
    "hardbounced": 8,
    "suspended": 20,
    "invalid": 17,
}
# Each subscription has its own status; unsubscribing from one resource is the common change.
SUBSCRIPTION_MIX = {
    "subscribed": 820,
    "unsubscribed": 100,
    "unconfirmed": 25,
    "complainer": 5,
    "hardbounced": 5,
    "suspended": 30,
    "invalid": 15,
}
# How many resources a profile subscribes to (1, 2 or 3), in parts per thousand.
RESOURCE_COUNT_MIX = {1: 550, 2: 300, 3: 150}
ADMIN_SUPPRESSED_PER_MILLE = 1  # subscribed profiles an admin put on the suppression list anyway


def _table(mix: dict[Any, int]) -> tuple[Any, ...]:
    """A thousand-entry lookup table: one ``random()`` draws from the mix without bisecting."""
    assert sum(mix.values()) == 1000, mix
    return tuple(value for value, parts in mix.items() for _ in range(parts))


GLOBAL_TABLE = _table(GLOBAL_MIX)
SUBSCRIPTION_TABLE = _table(SUBSCRIPTION_MIX)
RESOURCE_COUNT_TABLE = _table(RESOURCE_COUNT_MIX)


def email_of(index: int) -> str:
    """The normalised address of profile ``index`` (1-based, equal to its id)."""
    return f"user{index}@{DOMAINS[index % len(DOMAINS)]}"


def bounced_email(index: int) -> str:
    """An address without a profile that hard-bounced: suppressed, with the address kept."""
    return f"bounced{index}@example.net"


def erased_email(index: int) -> str:
    """An address whose profile was erased: suppressed by its hash alone."""
    return f"erased{index}@example.net"


def unknown_suppressed_count(profiles: int) -> int:
    """How many bounced and how many erased addresses (each) the dataset suppresses."""
    return max(10, profiles // 1000)


def search_key(text: str | None) -> str | None:
    """The admin search's key of an email or a name, as ``app.addresses.search_key`` makes it."""
    if text is None:
        return None
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).casefold())


def email_hash(address: str) -> str:
    """SHA-256 hex of a normalised address, as ``app.addresses.email_hash`` computes it."""
    return hashlib.sha256(address.encode("utf-8")).hexdigest()


def sqlite_time(moment: datetime) -> str:
    """A UTC time as SQLAlchemy writes a DateTime on SQLite: naive, always with microseconds.

    The audience query compares these strings with ``<=``, so the format must match exactly."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


@dataclass
class Chunk:
    """The rows of one round of profiles, in the column order of the INSERTs below."""

    profiles: list[tuple[Any, ...]] = field(default_factory=list)
    subscriptions: list[tuple[Any, ...]] = field(default_factory=list)
    suppressions: list[tuple[Any, ...]] = field(default_factory=list)


PROFILE_COLUMNS = (
    "id",
    "email",
    "email_hash",
    "name",
    "phone",
    "locale",
    "global_status",
    "suspended_until",
    "resume_status",
    "created_at",
    "updated_at",
    "email_key",
    "name_key",
    "link_key",
)
SUBSCRIPTION_COLUMNS = (
    "id",
    "profile_id",
    "resource_id",
    "channel",
    "status",
    "suspended_until",
    "resume_status",
    "created_at",
    "updated_at",
    "confirmed_at",
)
SUPPRESSION_COLUMNS = ("email_hash", "email", "reason", "actor", "created_at")
TIME_COLUMNS = {"suspended_until", "created_at", "updated_at", "confirmed_at"}

_YEARS_3 = 3 * 365 * 86400
_DAY = 86400


class Generator:
    """Draws the rows. Timestamps come out as naive UTC strings in SQLite's format; the
    PostgreSQL loader appends the zone."""

    def __init__(self, profiles: int, resource_ids: dict[str, int]) -> None:
        self.profiles = profiles
        self.resources = [(spec, resource_ids[spec.slug]) for spec in RESOURCES]
        self.rng = random.Random(SEED)
        self.subscription_id = 0

    def _time(self, seconds_before_now: float) -> str:
        return sqlite_time(NOW - timedelta(seconds=seconds_before_now))

    def _status(self, table: tuple[str, ...]) -> tuple[str, str | None, str | None]:
        """A status with its suspension: half the suspensions have ended, half have not."""
        rng = self.rng
        status = table[int(rng.random() * 1000)]
        if status != "suspended":
            return status, None, None
        if rng.random() < 0.5:
            until = NOW - timedelta(seconds=rng.uniform(_DAY, 60 * _DAY))
        else:
            until = NOW + timedelta(seconds=rng.uniform(_DAY, 90 * _DAY))
        resume = "subscribed" if rng.random() < 0.95 else "unconfirmed"
        return status, sqlite_time(until), resume

    def chunks(self) -> Iterator[Chunk]:
        """The dataset, ``CHUNK`` profiles at a time, then the suppressed unknown addresses."""
        chunk = Chunk()
        for index in range(1, self.profiles + 1):
            self._profile(index, chunk)
            if len(chunk.profiles) >= CHUNK:
                yield chunk
                chunk = Chunk()
        for j in range(unknown_suppressed_count(self.profiles)):
            bounced, erased = bounced_email(j), erased_email(j)
            at = self._time(self.rng.uniform(_DAY, _YEARS_3))
            chunk.suppressions.append((email_hash(bounced), bounced, "bounce", None, at))
            chunk.suppressions.append((email_hash(erased), None, "erasure", "admin", at))
        yield chunk

    def _profile(self, index: int, chunk: Chunk) -> None:
        rng = self.rng
        address = email_of(index)
        hashed = email_hash(address)
        status, until, resume = self._status(GLOBAL_TABLE)
        never_confirmed = status == "unconfirmed"
        # Rule 8 deletes what stays unconfirmed for 30 days, so such profiles are all recent.
        age = rng.uniform(_DAY, 30 * _DAY) if never_confirmed else rng.uniform(30 * _DAY, _YEARS_3)
        created = self._time(age)
        name = (
            f"{FIRST_NAMES[index % len(FIRST_NAMES)]} {LAST_NAMES[index % len(LAST_NAMES)]}"
            if rng.random() < 0.7
            else None
        )
        locale = LOCALES[int(rng.random() * len(LOCALES))]

        count = RESOURCE_COUNT_TABLE[int(rng.random() * 1000)]
        # Weighted choice without replacement (Efraimidis-Spirakis): popular resources first.
        chosen = sorted(self.resources, key=lambda item: rng.random() ** (1 / item[0].weight))
        phone = None
        for spec, resource_id in chosen[-count:]:
            channels = ["email"]
            if "sms" in spec.channels and rng.random() < SMS_SHARE:
                channels.append("sms")
                phone = phone or f"+4915{index:09d}"
            for channel in channels:
                self._subscription(index, resource_id, channel, age, never_confirmed, chunk)

        chunk.profiles.append(
            (
                index,
                address,
                hashed,
                name,
                phone,
                locale,
                status,
                until,
                resume,
                created,
                created,
                search_key(address),
                search_key(name),
                # The column is NOT NULL since issue 9; derived from the index, not drawn from
                # the generator, so every other value of the dataset stays as it was.
                hashlib.sha256(b"link key %d" % index).hexdigest()[:32],
            )
        )
        # Rule 6: a hard bounce puts the address on the suppression list.
        if status == "hardbounced" or rng.random() * 1000 < ADMIN_SUPPRESSED_PER_MILLE:
            reason, actor = ("bounce", None) if status == "hardbounced" else ("admin", "admin")
            chunk.suppressions.append((hashed, address, reason, actor, created))

    def _subscription(
        self,
        profile_id: int,
        resource_id: int,
        channel: str,
        profile_age: float,
        never_confirmed: bool,
        chunk: Chunk,
    ) -> None:
        rng = self.rng
        if never_confirmed:
            status, until, resume = "unconfirmed", None, None
        else:
            status, until, resume = self._status(SUBSCRIPTION_TABLE)
        if status == "unconfirmed":
            age = rng.uniform(0, min(profile_age, 30 * _DAY))
        else:
            age = rng.uniform(0, profile_age)
        created = self._time(age)
        confirmed = None if status == "unconfirmed" else self._time(max(0.0, age - 3600))
        self.subscription_id += 1
        chunk.subscriptions.append(
            (
                self.subscription_id,
                profile_id,
                resource_id,
                channel,
                status,
                until,
                resume,
                created,
                created,
                confirmed,
            )
        )


def log(message: str) -> None:
    """Progress on stderr, so that stdout carries only the results."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _schema_through_app(url: str) -> dict[str, int]:
    """Run the app's migrations and create the resources with its own service.

    Returns each resource's id by slug."""
    import flask_migrate

    from app import create_app
    from app.extensions import db
    from app.models import Resource
    from app.services.resources import create_resource

    app = create_app({"DATABASE_URL": url})
    with app.app_context():
        flask_migrate.upgrade()
        for spec in RESOURCES:
            create_resource(spec.slug, spec.name, channels=spec.channels)
        # The resources were created just now; date them like the rest of the dataset.
        for resource in db.session.query(Resource):
            resource.created_at = NOW - timedelta(days=3 * 365)
        db.session.commit()
        ids = {resource.slug: resource.id for resource in db.session.query(Resource)}
        db.session.remove()
        db.engine.dispose()  # the raw loader takes over the file or the database
    return ids


# --- SQLite --------------------------------------------------------------------------------------


def schema_revision() -> str:
    """The newest migration: a dataset built before a schema change is built again."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(PROJECT_ROOT / "migrations")).get_current_head()
    return head or "none"


def sqlite_path(profiles: int) -> Path:
    """Where the SQLite dataset of this size, generator version and schema is cached."""
    return DATA_DIR / f"optin-bench-v{VERSION}-{profiles}-schema{schema_revision()}.sqlite3"


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def _sqlite_key(path: Path) -> str | None:
    """The dataset a cached file holds, by its marker table; None if it is not a finished one
    (any connection to a missing path, the app's included, leaves an empty file behind)."""
    if not path.exists():
        return None
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = connection.execute(f"SELECT key FROM {MARKER_TABLE}").fetchone()
        finally:
            connection.close()
    except sqlite3.Error:
        return None
    return str(row[0]) if row else None


def ensure_sqlite(profiles: int, *, regenerate: bool = False) -> Path:
    """The cached SQLite dataset of this size, generated first if it is missing.

    It is written under a temporary name and renamed when complete, so an interrupted run never
    leaves a half-filled database behind; a marker table names the dataset, and a file without
    the expected one is built again. Files of this size for an older generator or schema are
    removed, since nothing reads them any more."""
    path = sqlite_path(profiles)
    if not regenerate and _sqlite_key(path) == dataset_key(profiles):
        log(f"SQLite dataset cached: {path}")
        return path
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    for stale in DATA_DIR.glob(f"optin-bench-v*-{profiles}-schema*.sqlite3*"):
        stale.unlink()
    partial = path.with_suffix(".partial")
    _remove_sqlite(partial)
    started = time.perf_counter()
    log(f"generating the SQLite dataset ({profiles:,} profiles) ...")
    resource_ids = _schema_through_app(f"sqlite:///{partial}")

    connection = sqlite3.connect(partial, isolation_level=None)
    try:
        # A throwaway file being filled: no journal and no fsync; it is renamed only when done.
        connection.execute("PRAGMA journal_mode=OFF")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute("PRAGMA cache_size=-524288")  # 512 MiB, for the index B-trees
        connection.execute("BEGIN")
        totals = [0, 0, 0]
        statements = (
            _insert_sql("profiles", PROFILE_COLUMNS),
            _insert_sql("subscriptions", SUBSCRIPTION_COLUMNS),
            _insert_sql("suppressions", SUPPRESSION_COLUMNS),
        )
        for chunk in Generator(profiles, resource_ids).chunks():
            for position, (statement, rows) in enumerate(
                zip(
                    statements,
                    (chunk.profiles, chunk.subscriptions, chunk.suppressions),
                    strict=True,
                )
            ):
                connection.executemany(statement, rows)
                totals[position] += len(rows)
        connection.execute(f"CREATE TABLE {MARKER_TABLE} (key TEXT NOT NULL)")
        connection.execute(f"INSERT INTO {MARKER_TABLE} (key) VALUES (?)", [dataset_key(profiles)])
        connection.execute("COMMIT")
        # No ANALYZE: optin never runs it, so the planner sees what it sees in production.
        connection.execute("PRAGMA journal_mode=WAL")  # what the app sets on every connection
    finally:
        connection.close()
    os.replace(partial, path)
    log(
        f"SQLite dataset ready in {time.perf_counter() - started:.0f} s: {totals[0]:,} profiles, "
        f"{totals[1]:,} subscriptions, {totals[2]:,} suppressions"
    )
    return path


# --- PostgreSQL ----------------------------------------------------------------------------------

DEFAULT_POSTGRES_DATABASE = "optin_bench"
# Databases the benchmark never fills: the test suite's, and the server's own.
FORBIDDEN_DATABASES = frozenset({"test", "postgres", "template0", "template1"})


@dataclass(frozen=True)
class PostgresTarget:
    """The benchmark database on a PostgreSQL server, as the app and as psycopg address it."""

    app_url: str  # for create_app's DATABASE_URL
    conninfo: str  # for psycopg
    admin_conninfo: str  # the server's maintenance database, to create and drop the bench one
    dbname: str

    @classmethod
    def from_url(cls, url: str) -> PostgresTarget:
        """A URL without a database name means ``optin_bench`` on that server."""
        from psycopg.conninfo import conninfo_to_dict, make_conninfo
        from sqlalchemy.engine import make_url

        dbname = str(conninfo_to_dict(url).get("dbname") or DEFAULT_POSTGRES_DATABASE)
        if dbname in FORBIDDEN_DATABASES:
            raise SystemExit(
                f"refusing to fill the database {dbname!r}: give the benchmark its own, "
                f"e.g. .../{DEFAULT_POSTGRES_DATABASE}"
            )
        app_url = make_url(url).set(drivername="postgresql+psycopg", database=dbname)
        return cls(
            app_url=app_url.render_as_string(hide_password=False),
            conninfo=make_conninfo(url, dbname=dbname),
            admin_conninfo=make_conninfo(url, dbname="postgres"),
            dbname=dbname,
        )


def postgres_reachable(url: str, timeout: int = 3) -> bool:
    """Whether a PostgreSQL server answers at ``url`` (its maintenance database)."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    try:
        with psycopg.connect(make_conninfo(url, dbname="postgres", connect_timeout=timeout)):
            return True
    except psycopg.Error:
        return False


def dataset_key(profiles: int) -> str:
    return f"optin bench v{VERSION} profiles={profiles} seed={SEED} schema={schema_revision()}"


def ensure_postgres(target: PostgresTarget, profiles: int, *, regenerate: bool = False) -> None:
    """The dataset in the benchmark database, generated first unless it is there already.

    The database is dropped and created afresh for a new dataset; one that holds tables but no
    benchmark marker is someone else's, and is left alone."""
    import psycopg
    from psycopg import sql

    key = dataset_key(profiles)
    with psycopg.connect(target.admin_conninfo, autocommit=True) as admin:
        exists = admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [target.dbname]
        ).fetchone()
    if exists:
        with psycopg.connect(target.conninfo) as connection:
            tables = {
                name
                for (name,) in connection.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            }
            current = None
            if MARKER_TABLE in tables:
                found = connection.execute(f"SELECT key FROM {MARKER_TABLE}").fetchone()
                current = found[0] if found else None
        if current == key and not regenerate:
            log(f"PostgreSQL dataset present in {target.dbname!r}")
            return
        if tables and MARKER_TABLE not in tables:
            raise SystemExit(
                f"the database {target.dbname!r} has tables but was not made by the benchmark; "
                "name another one (the benchmark drops and recreates its database)"
            )
    started = time.perf_counter()
    log(f"generating the PostgreSQL dataset in {target.dbname!r} ({profiles:,} profiles) ...")
    name = sql.Identifier(target.dbname)
    with psycopg.connect(target.admin_conninfo, autocommit=True) as admin:
        if exists:
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(name))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(name))
    resource_ids = _schema_through_app(target.app_url)

    totals = [0, 0, 0]
    with psycopg.connect(target.conninfo) as connection:
        # The generator's times are UTC without a zone; this session reads them as UTC.
        connection.execute("SET TimeZone = 'UTC'")
        connection.execute("SET synchronous_commit = off")
        tables = (
            ("profiles", PROFILE_COLUMNS),
            ("subscriptions", SUBSCRIPTION_COLUMNS),
            ("suppressions", SUPPRESSION_COLUMNS),
        )
        with connection.cursor() as cursor:
            for chunk in Generator(profiles, resource_ids).chunks():
                batches = (chunk.profiles, chunk.subscriptions, chunk.suppressions)
                for position, ((table, columns), rows) in enumerate(
                    zip(tables, batches, strict=True)
                ):
                    statement = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
                    with cursor.copy(statement) as copy:
                        for row in rows:
                            copy.write_row(row)
                    totals[position] += len(rows)
            # COPY gave the ids; the sequences must continue after them.
            for table in ("profiles", "subscriptions"):
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
            cursor.execute(f"CREATE TABLE {MARKER_TABLE} (key text NOT NULL)")
            cursor.execute(f"INSERT INTO {MARKER_TABLE} (key) VALUES (%s)", [key])
    with psycopg.connect(target.conninfo, autocommit=True) as connection:
        # What autovacuum does to a settled production table: statistics and a visibility map.
        connection.execute("VACUUM ANALYZE")
    log(
        f"PostgreSQL dataset ready in {time.perf_counter() - started:.0f} s: {totals[0]:,} "
        f"profiles, {totals[1]:,} subscriptions, {totals[2]:,} suppressions"
    )


# --- the batch of addresses to decide ------------------------------------------------------------

INVALID_FORMS = (
    "not-an-email-{k}",
    "user{k}@",
    "@example.com",
    "user{k}@@example.com",
    "user {k}@example.com",
)


def decision_batch(profiles: int, size: int = 10_000) -> list[str]:
    """What a sending platform would ask about: mostly known addresses (a tenth of them typed
    with other capitals or spaces), a tenth unknown (a fifth of those suppressed without a
    profile), and 2 % malformed, shuffled."""
    rng = random.Random(SEED + 1)
    invalid = size // 50
    unknown = size // 10
    emails: list[str] = []
    for _ in range(size - invalid - unknown):
        address = email_of(rng.randint(1, profiles))
        roll = rng.random()
        if roll < 0.05:
            address = address.upper()
        elif roll < 0.10:
            address = f"  {address.capitalize()} "
        emails.append(address)
    suppressed = unknown_suppressed_count(profiles)
    for k in range(unknown):
        roll = rng.random()
        if roll < 0.1:
            emails.append(bounced_email(rng.randrange(suppressed)))
        elif roll < 0.2:
            emails.append(erased_email(rng.randrange(suppressed)))
        else:
            emails.append(f"new{k}@example.com")
    emails.extend(INVALID_FORMS[k % len(INVALID_FORMS)].format(k=k) for k in range(invalid))
    rng.shuffle(emails)
    return emails


def write_results(
    report: str, output: Path | None, committed: Path, profiles: int, full_size: int
) -> Path:
    """Write a benchmark's table: to ``output`` if given, to the committed results file for a run
    at the issue's size, else beside the cached datasets (a quick check must not overwrite the
    committed figures). Returns where it went."""
    if output is None:
        output = (
            committed if profiles == full_size else DATA_DIR / f"{committed.stem}-{profiles}.md"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(report + "\n")
    return output
