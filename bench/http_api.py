"""``python -m bench.http_api``: the API issue's figures over HTTP, each beside its raw floor.

With the foundation benchmark's data set (``bench/dataset.py``, 1,000,000 profiles by default),
optin runs under gunicorn on 127.0.0.1 (``-w 2 -k sync``) beside ``bench/http_floor.py``, the same
three endpoints as a bare WSGI application on the database driver alone, under the same gunicorn
settings. In one run, for SQLite and (when it answers) PostgreSQL:

1. single ``GET /api/v1/eligibility``: requests/s, p50 and p95, with a bounded load generator
   (C threads with ``http.client``, N requests, random known and unknown addresses);
2. ``POST /api/v1/eligibility`` with 10,000 addresses: the median latency (target < 200 ms);
3. ``GET /api/v1/resources/newsletter/audience`` (NDJSON with every recipient's links) read to
   the end: seconds, rows, rows/s, and the serving worker's peak RSS (target < 10 s, memory flat).

Both servers must agree on every question (the address, allowed or refused, the stored statuses;
the audience byte for byte): the check runs before the timing.
The table is printed and written to ``bench/results-api.md`` (``bench/API_BENCH.md`` explains it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench import dataset, machine
from bench.dataset import log
from bench.http_client import (
    WORKER_TIMEOUT,
    WORKERS,
    LoadResult,
    Server,
    load,
    request,
    stream,
    timed_post,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results-api.md"
FULL_SIZE = 1_000_000
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/optin_bench"
SECRET_KEY = "bench-http-api-fixed-secret-not-for-production"
BASE_URL = "https://optin.example.com"
MAILTO = "unsubscribe@optin.example.com"
RESOURCE = dataset.AUDIENCE_RESOURCE
BATCH_SIZE = 10_000
BATCH_TARGET_MS = 200
STREAM_TARGET_S = 10
# "Flat": the serving worker grows by less than this while streaming the whole audience. The body
# is ~250 MB at 1,000,000 profiles, so a worker that buffered rows would grow by hundreds of MB.
FLAT_GROWTH_MB = 16
TOKEN_CHECKS = 50  # audience rows whose unsubscribe token optin's read_token must accept


@dataclass(frozen=True)
class Backend:
    name: str  # "SQLite" or "PostgreSQL"
    kind: str  # "sqlite" or "postgres"
    app_url: str  # DATABASE_URL for optin
    floor_database: str  # FLOOR_DATABASE for the floor: a file path or a conninfo


@dataclass(frozen=True)
class Figure:
    figure: str
    ours: str
    floor: str
    ratio: float  # ours / floor, in time (lower is better)
    target: str
    met: bool | None  # None: the issue names no target


# --- setup ----------------------------------------------------------------------------------------


@contextmanager
def app_context(backend: Backend, instance: Path) -> Iterator[Any]:
    """optin in this process, configured as the servers are, for the key and the checks."""
    os.environ["OPTIN_INSTANCE_PATH"] = str(instance)
    from app import create_app
    from app.extensions import db

    app = create_app(
        {
            "DATABASE_URL": backend.app_url,
            "SECRET_KEY": SECRET_KEY,
            "BASE_URL": BASE_URL,
            "UNSUBSCRIBE_MAILTO": MAILTO,
        }
    )
    with app.app_context():
        try:
            yield app
        finally:
            db.session.remove()
            db.engine.dispose()


def create_key(backend: Backend, instance: Path) -> tuple[str, str]:
    """A fresh API key, made by the app's own service. Returns its name and the key."""
    from app.services import api_keys

    name = f"bench-http-{os.getpid()}-{int(time.time())}"
    with app_context(backend, instance):
        _, key = api_keys.create_key(name)
    return name, key


def delete_key(backend: Backend, instance: Path, name: str) -> None:
    from sqlalchemy import delete

    from app.extensions import db
    from app.models import ApiKey

    with app_context(backend, instance):
        db.session.execute(delete(ApiKey).where(ApiKey.name == name))
        db.session.commit()


def audience_count(backend: Backend, instance: Path) -> tuple[int, int]:
    """The newsletter's resource id and how many rows ``audience_query`` gives right now."""
    from sqlalchemy import func, select

    from app import queries
    from app.database import utcnow
    from app.extensions import db

    with app_context(backend, instance):
        resource = queries.resource_by_slug(RESOURCE)
        assert resource is not None
        query = queries.audience_query(resource.id, "email", utcnow()).subquery()
        count = db.session.execute(select(func.count()).select_from(query)).scalar_one()
        return resource.id, int(count)


def check_tokens(backend: Backend, instance: Path, head: str, resource_id: int) -> int:
    """optin's own ``read_token`` must accept the first rows' unsubscribe tokens, for the
    recipient the row names."""
    from app import queries
    from app.tokens import Purpose, read_token

    checked = 0
    with app_context(backend, instance):
        for line in head.splitlines()[:TOKEN_CHECKS]:
            row = json.loads(line)
            token = row["unsubscribe_url"].rsplit("/", 1)[1]
            target = read_token(Purpose.UNSUBSCRIBE, token)
            profile = queries.profile_by_id(target.profile_id)
            if (
                profile is None
                or profile.email != row["email"]
                or target.resource_id != resource_id
            ):
                raise SystemExit(f"the audience row {row['email']} carries a token for {target}")
            preferences = read_token(Purpose.PREFERENCES, row["preferences_url"].rsplit("/", 1)[1])
            if preferences.profile_id != target.profile_id:
                raise SystemExit(
                    f"the audience row {row['email']}: preferences token {preferences}"
                )
            checked += 1
    return checked


def sqlite_copy(cached: Path, workdir: Path) -> Path:
    """The cached data set copied into the run's directory: the key is written into the copy, so
    the foundation benchmark's cache is never changed."""
    copy = workdir / "optin-bench-api.sqlite3"
    shutil.copyfile(cached, copy)
    wal = Path(f"{cached}-wal")
    if wal.exists() and wal.stat().st_size:
        shutil.copyfile(wal, Path(f"{copy}-wal"))
    return copy


def servers(backend: Backend, workdir: Path) -> list[Server]:
    """optin and the floor, with the same keys and the same data."""
    common = {"SECRET_KEY": SECRET_KEY, "BASE_URL": BASE_URL, "UNSUBSCRIBE_MAILTO": MAILTO}
    optin_env = {
        **common,
        "DATABASE_URL": backend.app_url,
        "OPTIN_INSTANCE_PATH": str(workdir / "instance"),
        "RATELIMIT_ENABLED": "false",
        "OUTBOX_DELIVER_INLINE": "false",
    }
    floor_env = {
        **common,
        "FLOOR_BACKEND": backend.kind,
        "FLOOR_DATABASE": backend.floor_database,
    }
    return [
        Server("optin", "app:create_app()", optin_env, workdir / "optin.log"),
        Server("floor", "bench.http_floor:application", floor_env, workdir / "floor.log"),
    ]


# --- the measurements -----------------------------------------------------------------------------


def single_addresses(profiles: int, count: int, seed: int) -> list[str]:
    """Random known addresses (80 %), unknown ones (18 %) and suppressed unknown ones (2 %)."""
    rng = random.Random(seed)
    suppressed = dataset.unknown_suppressed_count(profiles)
    found = []
    for k in range(count):
        roll = rng.random()
        if roll < 0.80:
            found.append(dataset.email_of(rng.randint(1, profiles)))
        elif roll < 0.98:
            found.append(f"nobody{seed}x{k}@example.com")
        else:
            found.append(dataset.bounced_email(rng.randrange(suppressed)))
    return found


def eligibility_path(address: str) -> str:
    return f"/api/v1/eligibility?email={quote(address)}&resource={RESOURCE}"


def agree(ours: dict[str, Any], floor: dict[str, Any]) -> bool:
    """optin's answer and the floor's agree: the same address, allowed or refused, and the stored
    statuses. The floor has no rule to name a reason with, nor to say what an ended suspension
    gave back, so a stored `suspended` is not compared (see bench/http_floor.py)."""
    statuses = ("global_status", "subscription_status")
    return (ours["email"], ours["allowed"]) == (floor["email"], floor["allowed"]) and all(
        ours[key] == floor[key] for key in statuses if floor[key] != "suspended"
    )


def same_answers(ours: Server, floor: Server, headers: dict[str, str], paths: list[str]) -> None:
    for path in paths:
        ours_answer = request(ours.port, "GET", path, headers)
        floor_answer = request(floor.port, "GET", path, headers)
        same = ours_answer[0] == floor_answer[0] and agree(
            json.loads(ours_answer[1]), json.loads(floor_answer[1])
        )
        if not same or ours_answer[0] != 200:
            raise SystemExit(f"GET {path}: optin {ours_answer!r} but the floor {floor_answer!r}")


def measure_single(
    backend: Backend,
    ours: Server,
    floor: Server,
    headers: dict[str, str],
    args: argparse.Namespace,
) -> tuple[list[Figure], list[str]]:
    checks = [eligibility_path(a) for a in single_addresses(args.profiles, 100, 1)]
    checks.append(eligibility_path("  " + dataset.email_of(7).upper()))
    same_answers(ours, floor, headers, checks)
    warm = [eligibility_path(a) for a in single_addresses(args.profiles, 200, 2)]
    for server in (ours, floor):
        load(server.port, warm, headers, args.concurrency, 30)
    paths = [eligibility_path(a) for a in single_addresses(args.profiles, args.requests, 3)]
    rounds = max(1, args.rounds)
    share = len(paths) // rounds
    results: dict[str, list[LoadResult]] = {"ours": [], "floor": []}
    for number in range(rounds):
        part = paths[number * share : (number + 1) * share]
        order = [("ours", ours), ("floor", floor)]
        if number % 2:
            order.reverse()
        for name, server in order:
            results[name].append(
                load(server.port, part, headers, args.concurrency, args.max_seconds / rounds)
            )
            got = results[name][-1]
            log(
                f"{backend.name} single round {number + 1}/{rounds} {name}: {got.rps:,.0f} req/s,"
                f" p95 {got.percentile(0.95):.1f} ms, {got.requests} requests, {got.errors} errors"
            )
    ours_r = LoadResult.merge(results["ours"])
    floor_r = LoadResult.merge(results["floor"])
    for name, got in (("optin", ours_r), ("floor", floor_r)):
        if got.errors:
            raise SystemExit(f"{backend.name}: {got.errors} failed single requests on {name}")
    shortened = [
        name for name, got in (("optin", ours_r), ("floor", floor_r)) if got.requests < len(paths)
    ]

    def cell(got: LoadResult) -> str:
        return f"{got.rps:,.0f} req/s"

    def latency(got: LoadResult) -> str:
        return f"p95 {got.percentile(0.95):.1f} ms (p50 {got.percentile(0.5):.1f})"

    figures = [
        Figure(
            f"{backend.name}: single `GET /eligibility`, C={args.concurrency}: throughput",
            cell(ours_r),
            cell(floor_r),
            floor_r.rps / ours_r.rps,
            "none named",
            None,
        ),
        Figure(
            f"{backend.name}: single `GET /eligibility`, C={args.concurrency}: latency",
            latency(ours_r),
            latency(floor_r),
            ours_r.percentile(0.95) / floor_r.percentile(0.95),
            "none named",
            None,
        ),
    ]
    notes = [
        f"{backend.name} single: {ours_r.requests:,} requests to optin and {floor_r.requests:,} "
        f"to the floor in {rounds} alternated rounds (80 % known addresses, 18 % unknown, 2 % "
        "suppressed without a profile, all for `resource=newsletter`), after 101 answers compared "
        "for agreement (address, allowed, statuses) and a warm-up of 200; 0 errors. p99: optin "
        f"{ours_r.percentile(0.99):.1f} ms, floor {floor_r.percentile(0.99):.1f} ms."
        + (f" Stopped at the time bound: {', '.join(shortened)}." if shortened else "")
    ]
    return figures, notes


def measure_batch(
    backend: Backend,
    ours: Server,
    floor: Server,
    headers: dict[str, str],
    args: argparse.Namespace,
) -> tuple[list[Figure], list[str]]:
    emails = dataset.decision_batch(args.profiles, BATCH_SIZE)
    body = json.dumps({"emails": emails, "resource": RESOURCE, "channel": "email"}).encode()
    post_headers = {**headers, "Content-Type": "application/json"}
    path = "/api/v1/eligibility"
    _, ours_answer = timed_post(ours.port, path, post_headers, body)
    _, floor_answer = timed_post(floor.port, path, post_headers, body)
    ours_rows = json.loads(ours_answer)["results"]
    floor_rows = json.loads(floor_answer)["results"]
    differ = [(a, b) for a, b in zip(ours_rows, floor_rows, strict=True) if not agree(a, b)]
    if differ:
        raise SystemExit(f"{backend.name} batch: optin and the floor differ: {differ[:3]}")
    reasons: dict[str, int] = {}
    for row in json.loads(ours_answer)["results"]:
        reasons[row["reason"]] = reasons.get(row["reason"], 0) + 1
    runs: dict[str, list[float]] = {"ours": [], "floor": []}
    for number in range(args.batch_runs):
        order = [("ours", ours), ("floor", floor)]
        if number % 2:
            order.reverse()
        for name, server in order:
            runs[name].append(timed_post(server.port, path, post_headers, body)[0])
    ours_ms = statistics.median(runs["ours"])
    floor_ms = statistics.median(runs["floor"])
    log(f"{backend.name} batch: optin {ours_ms:.0f} ms, floor {floor_ms:.0f} ms")
    figure = Figure(
        f"{backend.name}: `POST /eligibility`, {BATCH_SIZE:,} addresses",
        f"{ours_ms:.0f} ms",
        f"{floor_ms:.0f} ms",
        ours_ms / floor_ms,
        f"< {BATCH_TARGET_MS} ms",
        ours_ms < BATCH_TARGET_MS,
    )
    allowed = reasons.get("subscribed", 0)
    note = (
        f"{backend.name} batch: median of {args.batch_runs} alternated runs after a warm-up in "
        f"which both answered the same {len(body) / 1e6:.2f} MB request alike ({allowed:,} "
        f"allowed; optin's body {len(ours_answer) / 1e6:.2f} MB, the floor's "
        f'{len(floor_answer) / 1e6:.2f} MB, its refusals saying only "refused"); runs optin '
        + ", ".join(f"{v:.0f}" for v in runs["ours"])
        + " ms, floor "
        + ", ".join(f"{v:.0f}" for v in runs["floor"])
        + " ms (from sending the request to the last byte, a new connection each)."
    )
    return [figure], [note]


def measure_stream(
    backend: Backend,
    instance: Path,
    started: list[Server],
    headers: dict[str, str],
    args: argparse.Namespace,
) -> tuple[list[Figure], list[str]]:
    ours, floor = started[0], started[1]
    path = f"/api/v1/resources/{RESOURCE}/audience"
    stream_headers = {**headers, "Accept": "application/x-ndjson"}
    resource_id, count_before = audience_count(backend, instance)
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "floor": []}
    for number in range(args.stream_runs):
        order = [("floor", floor), ("ours", ours)]
        if number % 2:
            order.reverse()
        for name, server in order:
            got = stream(server.port, path, stream_headers, server.worker_pids())
            runs[name].append(got)
            log(
                f"{backend.name} stream {number + 1}/{args.stream_runs} {name}: {got['rows']:,} "
                f"rows in {got['seconds']:.2f} s, worker peak "
                f"{got['memory']['peak_kib'] / 1024:.0f} MiB, {got['bytes']:,} bytes, SHA-256 "
                f"{got['sha256'][:12]}"
            )
    _, count_after = audience_count(backend, instance)
    every = [(name, run) for name in runs for run in runs[name]]
    counts = {run["rows"] for _, run in every}
    digests = {run["sha256"] for _, run in every}
    # Time only adds rows (a suspension that ends); two streams of as many rows are the same rows.
    by_rows: dict[int, set[str]] = {}
    for _, run in every:
        by_rows.setdefault(run["rows"], set()).add(run["sha256"])
    if not counts <= {count_before, count_after} or any(len(d) > 1 for d in by_rows.values()):
        details = "; ".join(
            f"{name}: {run['rows']:,} rows, {run['bytes']:,} bytes, {run['sha256'][:12]}"
            for name, run in every
        )
        raise SystemExit(
            f"{backend.name} stream: the bodies disagree (audience_query counts {count_before:,} "
            f"before, {count_after:,} after): {details}"
        )
    checked = check_tokens(backend, instance, runs["ours"][0]["head"], resource_id)
    rows = runs["ours"][0]["rows"]

    def seconds(name: str) -> float:
        return statistics.median(run["seconds"] for run in runs[name])

    def cpu(name: str) -> float:
        return statistics.median(run["memory"]["cpu_seconds"] for run in runs[name])

    def stream_cell(wall: float, worker_cpu: float) -> str:
        return f"{wall:.2f} s ({rows / wall / 1000:,.0f}k rows/s; worker CPU {worker_cpu:.1f} s)"

    ours_s, floor_s = seconds("ours"), seconds("floor")
    log(f"{backend.name} stream: optin {ours_s:.2f} s, floor {floor_s:.2f} s")

    def worst(name: str) -> dict[str, Any]:
        memory: dict[str, Any] = max(
            (run["memory"] for run in runs[name]), key=lambda m: m["peak_kib"] - m["rss_before_kib"]
        )
        return memory

    def mib(kib: int) -> float:
        return kib / 1024

    def memory_cell(m: dict[str, Any]) -> str:
        growth = mib(m["peak_kib"] - m["rss_before_kib"])
        return f"{mib(m['peak_kib']):.0f} MiB peak RSS (+{growth:.1f} MiB while streaming)"

    ours_m, floor_m = worst("ours"), worst("floor")
    ours_growth = mib(ours_m["peak_kib"] - ours_m["rss_before_kib"])
    size_mb = runs["ours"][0]["bytes"] / 1e6
    figures = [
        Figure(
            f"{backend.name}: stream the `{RESOURCE}` audience over HTTP ({rows:,} rows, "
            f"{size_mb:,.0f} MB NDJSON)",
            stream_cell(ours_s, cpu("ours")),
            stream_cell(floor_s, cpu("floor")),
            ours_s / floor_s,
            f"< {STREAM_TARGET_S} s",
            ours_s < STREAM_TARGET_S,
        ),
        Figure(
            f"{backend.name}: the serving worker's memory while streaming",
            memory_cell(ours_m),
            memory_cell(floor_m),
            ours_m["peak_kib"] / floor_m["peak_kib"],
            f"flat (< {FLAT_GROWTH_MB} MiB growth)",
            ours_growth < FLAT_GROWTH_MB,
        ),
    ]

    def list_of(name: str, key: str) -> str:
        return ", ".join(f"{run[key]:.2f}" for run in runs[name])

    def rss_curve(m: dict[str, Any]) -> str:
        return " / ".join(
            f"{mib(m[k]):.0f}" for k in ("rss_before_kib", "rss_10_kib", "rss_50_kib", "rss_90_kib")
        )

    notes = [
        f"{backend.name} stream: median of {args.stream_runs} alternated runs; optin "
        f"{list_of('ours', 'seconds')} s, floor {list_of('floor', 'seconds')} s. Every run of "
        f"both gave {rows:,} rows (audience_query counts {count_before:,} before and "
        f"{count_after:,} after) and "
        + (
            "the same bytes"
            if len(digests) == 1
            else "the same bytes for the same number of rows (a suspension ended between runs)"
        )
        + f" (SHA-256 {runs['ours'][0]['sha256'][:12]}…); optin's read_token accepted the "
        f"unsubscribe and preferences tokens of the first {checked} rows. Server worker CPU "
        f"(utime+stime from /proc): optin "
        + ", ".join(f"{run['memory']['cpu_seconds']:.1f}" for run in runs["ours"])
        + " s, floor "
        + ", ".join(f"{run['memory']['cpu_seconds']:.1f}" for run in runs["floor"])
        + " s. The client's CPU reading and hashing the body: optin "
        f"{list_of('ours', 'client_cpu_seconds')} s, floor "
        f"{list_of('floor', 'client_cpu_seconds')} s. First byte after: optin "
        f"{list_of('ours', 'first_byte_seconds')} s, floor "
        f"{list_of('floor', 'first_byte_seconds')} s.",
        f"{backend.name} memory: VmHWM of the worker that served the stream, reset through "
        f"/proc/PID/clear_refs just before it (reset: {ours_m['peak_reset']}), and VmRSS sampled "
        f"every 50 ms; RSS before / at 10 % / 50 % / 90 % of the stream, MiB: optin "
        f"{rss_curve(ours_m)}, floor {rss_curve(floor_m)}. The run with the largest growth is "
        "shown.",
    ]
    return figures, notes


# --- one backend, the table -----------------------------------------------------------------------


def run_backend(
    backend: Backend, workdir: Path, args: argparse.Namespace
) -> tuple[list[Figure], list[str]]:
    instance = workdir / "instance"
    instance.mkdir(parents=True, exist_ok=True)
    key_name, key = create_key(backend, instance)
    headers = {"Authorization": f"Bearer {key}"}
    started: list[Server] = []
    try:
        for server in servers(backend, workdir):
            started.append(server)  # before it starts: stopped in any case below
            floor = "http_floor" in server.app
            server.start(PROJECT_ROOT, "/healthz" if floor else "/api/v1/openapi.json")
        log(
            f"{backend.name}: "
            + ", ".join(f"{s.name} on {s.port} (workers {s.worker_pids()})" for s in started)
        )
        figures: list[Figure] = []
        notes: list[str] = []
        for measured in (
            measure_single(backend, started[0], started[1], headers, args),
            measure_batch(backend, started[0], started[1], headers, args),
            measure_stream(backend, instance, started, headers, args),
        ):
            figures += measured[0]
            notes += measured[1]
        return figures, notes
    except BaseException:
        for server in started:  # the logs go with the run's directory: show their ends first
            tail = server.log_path.read_text(errors="replace").splitlines()[-25:]
            log(f"{server.name}'s log ends:\n" + "\n".join(tail))
        raise
    finally:
        for server in started:
            server.stop()
        if backend.kind == "postgres":
            delete_key(backend, instance, key_name)


def table(figures: list[Figure]) -> str:
    lines = [
        "| figure | ours | floor | ratio | target | met? |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        met = "—" if f.met is None else ("yes" if f.met else "**no**")
        lines.append(f"| {f.figure} | {f.ours} | {f.floor} | {f.ratio:.2f}x | {f.target} | {met} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.http_api", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--profiles", type=int, default=FULL_SIZE, help="default: %(default)s")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=os.environ.get("BENCH_DATABASE_URL"),
        help=f"also run on this PostgreSQL database (default: {DEFAULT_POSTGRES}, suffixed "
        "_<profiles> for other sizes, when that server answers)",
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--requests", type=int, default=5000, help="single GETs per server")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="alternated rounds of single GETs")
    parser.add_argument(
        "--max-seconds", type=float, default=60, help="bound on a server's single GETs"
    )
    parser.add_argument("--batch-runs", type=int, default=7, help="timed batch calls per server")
    parser.add_argument("--stream-runs", type=int, default=3, help="timed streams per server")
    parser.add_argument("--output", type=Path, help="where to write the table")
    return parser.parse_args(argv)


def backends(args: argparse.Namespace, workdir: Path) -> tuple[list[Backend], str | None]:
    cached = dataset.ensure_sqlite(args.profiles)
    copy = sqlite_copy(cached, workdir)
    log(f"SQLite: the dataset copied to {copy}")
    found = [Backend("SQLite", "sqlite", f"sqlite:///{copy}", str(copy))]
    url = args.postgres
    if url is None and not args.no_postgres:
        if dataset.postgres_reachable(DEFAULT_POSTGRES):
            url = DEFAULT_POSTGRES + ("" if args.profiles == FULL_SIZE else f"_{args.profiles}")
        else:
            log(f"no PostgreSQL server answers at {DEFAULT_POSTGRES}: SQLite only")
    if url is None or args.no_postgres:
        return found, None
    target = dataset.PostgresTarget.from_url(url)
    dataset.ensure_postgres(target, args.profiles)
    found.append(Backend("PostgreSQL", "postgres", target.app_url, target.conninfo))
    return found, machine.postgres_version(target.conninfo)


def code_version() -> str:
    """``git describe`` of the tree the servers ran: app/ may change between runs."""
    import subprocess

    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--exclude", "*"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return described.stdout.strip() or "unknown"


def versions() -> str:
    from importlib.metadata import version

    names = ("flask", "sqlalchemy", "gunicorn", "psycopg")
    return ", ".join(f"{name} {version(name)}" for name in names)


def busy(at_start: tuple[float, float, float]) -> str:
    """What the load averages say: the machine may be shared with other work."""
    cpus = len(os.sched_getaffinity(0))
    state = (
        "other work was running when it started; the figures are noisier"
        if at_start[0] > 0.5
        else "the machine was quiet when it started"
    )
    return f"{cpus} CPUs; {state}; the end's load includes this run's own servers and client"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    began = time.perf_counter()
    load_at_start = os.getloadavg()
    workdir = Path(tempfile.mkdtemp(prefix="optin-http-bench-"))
    try:
        found, postgres_version = backends(args, workdir)
        figures: list[Figure] = []
        notes: list[str] = []
        for backend in found:
            measured = run_backend(backend, workdir / backend.kind, args)
            figures += measured[0]
            notes += measured[1]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    load_at_end = os.getloadavg()
    minutes = (time.perf_counter() - began) / 60
    report = "\n".join(
        [
            f"Dataset: the foundation benchmark's, {args.profiles:,} profiles (seed "
            f"{dataset.SEED}, generator v{dataset.VERSION}); `now` = the servers' clock; optin "
            f"code {code_version()}.",
            f"Servers: gunicorn -w {WORKERS} -k sync --timeout {WORKER_TIMEOUT} on 127.0.0.1, "
            f"optin (`app:create_app()`) and the floor (`bench.http_floor:application`), "
            f"{versions()}. Client: {args.concurrency} threads of http.client in one process on "
            "the same machine.",
            "",
            table(figures),
            "",
            machine.describe(postgres_version),
            f"Load average (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in load_at_start)} at the "
            f"start, {', '.join(f'{v:.2f}' for v in load_at_end)} at the end "
            f"({busy(load_at_start)}). Whole run: {minutes:.1f} min.",
            "",
            "Ratio = ours / floor in time (for req/s: floor req/s / ours req/s), lower is better.",
            "",
            *(f"- {note}" for note in notes),
        ]
    )
    output = dataset.write_results(report, args.output, RESULTS, args.profiles, FULL_SIZE)
    print(report)
    log(f"written to {output}")


if __name__ == "__main__":
    sys.exit(main())
