"""``python -m bench`` (``make bench``): the foundation issue's figures, each beside its floor.

For SQLite always, and for PostgreSQL when a server is given or found at 127.0.0.1:5432:

1. streaming a resource's sendable audience (``queries.stream_audience``) against the very
   statement it sends, executed by the driver alone; time and peak memory;
2. deciding 10,000 addresses in one batch (``eligibility.decide_many``) against raw lookups and
   an inline rule;
3. one decision in process (``status.can_send``) against a plain function.

Each measurement runs in a fresh subprocess (see ``bench.workers``). The table is printed at the
end and written to ``bench/results-foundation.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import dataset, machine
from bench.dataset import NOW, log
from bench.workers import MEMORY_METHOD

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results-foundation.md"
FULL_SIZE = 1_000_000  # the size; only a run of it writes the committed results file
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/optin_bench"
JOB_TIMEOUT = 600  # seconds; no single measurement comes near it, so a hang cannot go unbounded

STREAM_RATIO_TARGET = 1.5
STREAM_MEMORY_TARGET_MB = 150
BATCH_TARGET_MS = 200
BATCH_SIZE = 10_000
DECISION_TARGET_US = 20


@dataclass(frozen=True)
class Backend:
    """One database the figures are measured on."""

    name: str  # "SQLite" or "PostgreSQL"
    kind: str  # "sqlite" or "postgres"
    app_url: str
    path: str | None = None  # SQLite file
    conninfo: str | None = None  # psycopg


@dataclass(frozen=True)
class Figure:
    """One row of the table."""

    figure: str
    ours: str
    floor: str
    ratio: float  # ours / floor
    target: str
    met: bool


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and return its JSON answer."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench.workers"],
        input=pickle.dumps(job),
        capture_output=True,
        cwd=PROJECT_ROOT,
        timeout=JOB_TIMEOUT,
        check=False,
    )
    if completed.returncode != 0:
        sys.stderr.write(completed.stderr.decode(errors="replace"))
        raise SystemExit(f"the {job['task']} measurement failed (exit {completed.returncode})")
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def audience_statement(backend: Backend) -> tuple[int, str, Any, list[str]]:
    """The newsletter's id, the SQL and parameters ``stream_audience`` hands the driver, and the
    settings it sends first (PostgreSQL's ``cursor_tuple_fraction``).

    They are captured from the app itself (a ``before_cursor_execute`` listener) rather than
    rewritten, so the floor runs exactly the statement optin runs, parameters processed by
    SQLAlchemy's types (on SQLite the time is the string the column stores)."""
    from sqlalchemy import event

    from app import create_app, queries
    from app.extensions import db

    app = create_app({"DATABASE_URL": backend.app_url})
    captured: list[tuple[str, Any]] = []
    with app.app_context():
        resource = queries.resource_by_slug(dataset.AUDIENCE_RESOURCE)
        assert resource is not None, "the dataset has no newsletter"
        resource_id = resource.id
        db.session.remove()

        def capture(_c: Any, _cur: Any, statement: str, parameters: Any, *_rest: Any) -> None:
            captured.append((statement, parameters))

        event.listen(db.engine, "before_cursor_execute", capture)
        rows = queries.stream_audience(resource_id, "email", NOW)
        next(rows)
        rows.close()
        event.remove(db.engine, "before_cursor_execute", capture)
        db.engine.dispose()
    statement, parameters = next((s, p) for s, p in captured if s.lstrip().startswith("SELECT"))
    settings = [s for s, _p in captured if s.lstrip().upper().startswith("SET")]
    return resource_id, statement, parameters, settings


def cpu_scope(backend: Backend) -> str:
    """What a process's CPU time covers: SQLite runs inside it, PostgreSQL's server does not."""
    return "all of the work" if backend.kind == "sqlite" else "the client's share"


def _mb(kib: int) -> float:
    return kib * 1024 / 1e6


def measure_stream(
    backend: Backend,
    resource_id: int,
    statement: str,
    parameters: Any,
    settings: list[str],
    repeat: int,
) -> tuple[list[Figure], list[str]]:
    """Figure 1: floor and ours alternated, each in a fresh process; the medians, and the
    highest peak memory of optin's runs."""
    ours_job = {
        "task": "stream_ours",
        "url": backend.app_url,
        "resource_id": resource_id,
        "channel": "email",
        "now": NOW,
    }
    floor_job = {
        "task": "stream_floor",
        "backend": backend.kind,
        "path": backend.path,
        "dsn": backend.conninfo,
        "sql": statement,
        "params": parameters,
        "settings": settings,
    }
    run_job(floor_job)  # warm the page cache for both
    ours_runs, floor_runs = [], []
    for number in range(1, repeat + 1):
        floor_runs.append(run_job(floor_job))
        ours_runs.append(run_job(ours_job))
        log(
            f"{backend.name} stream run {number}/{repeat}: ours {ours_runs[-1]['seconds']:.2f} s,"
            f" floor {floor_runs[-1]['seconds']:.2f} s"
        )
    counts = {run["rows"] for run in ours_runs + floor_runs}
    if len(counts) != 1:
        raise SystemExit(f"{backend.name}: ours and the floor streamed different rows: {counts}")
    rows = counts.pop()
    ours_s = statistics.median(run["seconds"] for run in ours_runs)
    floor_s = statistics.median(run["seconds"] for run in floor_runs)
    ours_peak = max(ours_runs, key=lambda run: run["peak_kib"])
    floor_peak = max(floor_runs, key=lambda run: run["peak_kib"])
    ratio = ours_s / floor_s
    peak_mb = _mb(ours_peak["peak_kib"])

    def memory(run: dict[str, Any]) -> str:
        growth = _mb(run["peak_kib"] - run["rss_before_kib"])
        # Without clear_refs the peak is the process's whole life's, an upper bound.
        kind = "peak RSS" if run["peak_reset"] else "lifetime peak RSS"
        return f"{_mb(run['peak_kib']):.0f} MB {kind} (+{growth:.1f} MB while streaming)"

    figures = [
        Figure(
            f"{backend.name}: stream the `{dataset.AUDIENCE_RESOURCE}` audience ({rows:,} rows)",
            f"{ours_s:.2f} s ({rows / ours_s / 1000:,.0f}k rows/s)",
            f"{floor_s:.2f} s ({rows / floor_s / 1000:,.0f}k rows/s)",
            ratio,
            f"≤ {STREAM_RATIO_TARGET}x floor",
            ratio <= STREAM_RATIO_TARGET,
        ),
        Figure(
            f"{backend.name}: memory while streaming",
            memory(ours_peak),
            memory(floor_peak),
            ours_peak["peak_kib"] / floor_peak["peak_kib"],
            f"< {STREAM_MEMORY_TARGET_MB} MB",
            peak_mb < STREAM_MEMORY_TARGET_MB,
        ),
    ]
    ours_list = ", ".join(f"{run['seconds']:.2f}" for run in ours_runs)
    floor_list = ", ".join(f"{run['seconds']:.2f}" for run in floor_runs)
    ours_cpu = statistics.median(run["cpu_seconds"] for run in ours_runs)
    floor_cpu = statistics.median(run["cpu_seconds"] for run in floor_runs)
    notes = [
        f"{backend.name} stream: median of {repeat} runs each, alternated after a warm-up; runs "
        f"ours {ours_list} s, floor {floor_list} s. CPU time of the streaming process ("
        f"{cpu_scope(backend)}): ours {ours_cpu:.2f} s, floor {floor_cpu:.2f} s, "
        f"{ours_cpu / floor_cpu:.2f}x. Floor: the captured "
        + (
            "statement through sqlite3's cursor."
            if backend.kind == "sqlite"
            else "SET and statement through a psycopg named (server-side) cursor, itersize 2000."
        )
    ]
    return figures, notes


def measure_batch(
    backend: Backend, resource_id: int, profiles: int, runs: int
) -> tuple[list[Figure], list[str]]:
    """Figure 2: ``decide_many`` on 10,000 addresses against raw lookups and an inline rule."""
    result = run_job(
        {
            "task": "decide_batch",
            "backend": backend.kind,
            "url": backend.app_url,
            "path": backend.path,
            "dsn": backend.conninfo,
            "emails": dataset.decision_batch(profiles, BATCH_SIZE),
            "resource": dataset.AUDIENCE_RESOURCE,
            "resource_id": resource_id,
            "channel": "email",
            "now": NOW,
            "now_sqlite": dataset.sqlite_time(NOW),
            "runs": runs,
        }
    )
    ours, floor = result["ours_ms"], result["floor_ms"]
    figure = Figure(
        f"{backend.name}: decide {BATCH_SIZE:,} addresses in one batch",
        f"{ours:.0f} ms",
        f"{floor:.0f} ms",
        ours / floor,
        f"< {BATCH_TARGET_MS} ms",
        ours < BATCH_TARGET_MS,
    )
    reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(result["reasons"].items()))
    cpu = result["cpu_ms"]
    lookup = "a join to `unnest(%s::text[])`" if backend.kind == "postgres" else "`IN (...)`"
    notes = [
        f"{backend.name} batch: median of {runs} rounds after a warm-up in which decide_many and "
        f"the floor agreed on every address (allowed or refused, the stored statuses; optin's "
        f"reasons: {reasons}). Floor: {lookup} over chunks of 5,000, as optin's queries do, "
        f"selecting the audience query's condition. CPU time of the process "
        f"({cpu_scope(backend)}): decide_many {cpu['decide_many']:.0f} ms, floor "
        f"{cpu['floor']:.0f} ms, {cpu['decide_many'] / cpu['floor']:.2f}x. decide_many's "
        f"queries.eligibility_rows alone: {result['eligibility_rows_ms']:.0f} ms."
    ]
    return [figure], notes


def measure_decision() -> tuple[list[Figure], list[str]]:
    """Figure 3: ``can_send`` in process; no database involved."""
    result = run_job({"task": "one_decision", "now": NOW, "number": 200_000, "repeat": 7})
    main, longest = result["subscribed"], result["suspension_ended"]
    figure = Figure(
        "in process: one decision (`status.can_send`, both subscribed)",
        f"{main['ours_us']:.2f} µs",
        f"{main['floor_us']:.2f} µs",
        main["ours_us"] / main["floor_us"],
        f"< {DECISION_TARGET_US} µs",
        main["ours_us"] < DECISION_TARGET_US,
    )
    notes = [
        f"One decision: timeit, median of {result['repeat']} repeats of {result['number']:,} "
        f"calls. Longest path (a subscription's suspension has ended): ours "
        f"{longest['ours_us']:.2f} µs, floor {longest['floor_us']:.2f} µs."
    ]
    return [figure], notes


def table(figures: list[Figure]) -> str:
    lines = [
        "| figure | ours | floor | ratio | target | met? |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        met = "yes" if f.met else "**no**"
        lines.append(f"| {f.figure} | {f.ours} | {f.floor} | {f.ratio:.2f}x | {f.target} | {met} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--profiles",
        type=int,
        default=FULL_SIZE,
        help="profiles in the dataset (default: %(default)s; try 100000 for a quick check)",
    )
    parser.add_argument(
        "--postgres",
        metavar="URL",
        default=os.environ.get("BENCH_DATABASE_URL"),
        help="also run on this PostgreSQL database (default: $BENCH_DATABASE_URL, else "
        f"{DEFAULT_POSTGRES} (suffixed _<profiles> for other sizes) when that server "
        "answers); the benchmark drops and refills that database",
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--repeat", type=int, default=5, help="stream runs of each (default: 5)")
    parser.add_argument("--runs", type=int, default=11, help="batch rounds (default: 11)")
    parser.add_argument(
        "--regenerate", action="store_true", help="build the datasets again even if cached"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help=f"where to write the table (default: {RESULTS.name} for {FULL_SIZE:,} profiles, "
        "else bench/.data/results-foundation-<profiles>.md)",
    )
    return parser.parse_args(argv)


def backends(args: argparse.Namespace) -> tuple[list[Backend], str | None]:
    """SQLite always; PostgreSQL when asked for, or when the default server answers. Each
    backend's dataset is made ready here. Returns the backends and the PostgreSQL version."""
    path = dataset.ensure_sqlite(args.profiles, regenerate=args.regenerate)
    found = [Backend("SQLite", "sqlite", f"sqlite:///{path}", path=str(path))]
    url = args.postgres
    if url is None and not args.no_postgres:
        if dataset.postgres_reachable(DEFAULT_POSTGRES):
            # One database per size, so that a quick check does not replace the full dataset.
            url = DEFAULT_POSTGRES
            if args.profiles != FULL_SIZE:
                url += f"_{args.profiles}"
        else:
            log(f"no PostgreSQL server answers at {DEFAULT_POSTGRES}: SQLite only")
    if url is None or args.no_postgres:
        return found, None
    target = dataset.PostgresTarget.from_url(url)
    dataset.ensure_postgres(target, args.profiles, regenerate=args.regenerate)
    found.append(
        Backend("PostgreSQL", "postgres", target.app_url, conninfo=target.conninfo),
    )
    return found, machine.postgres_version(target.conninfo)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.perf_counter()
    load_at_start = os.getloadavg()[0]
    found, postgres_version = backends(args)

    figures: list[Figure] = []
    notes: list[str] = []
    for backend in found:
        resource_id, statement, parameters, settings = audience_statement(backend)
        for measured in (
            measure_stream(backend, resource_id, statement, parameters, settings, args.repeat),
            measure_batch(backend, resource_id, args.profiles, args.runs),
        ):
            figures += measured[0]
            notes += measured[1]
    measured = measure_decision()
    figures += measured[0]
    notes += measured[1]

    sizes = dataset_summary(found[0])
    report = "\n".join(
        [
            f"optin at commit {machine.source_revision()}. Dataset: {sizes} (seed "
            f"{dataset.SEED}, generator v{dataset.VERSION}, schema {dataset.schema_revision()}); "
            f"`now` = {NOW.isoformat()}.",
            "",
            table(figures),
            "",
            machine.describe(postgres_version),
            f"Load average (1 min): {load_at_start:.2f} at the start, {os.getloadavg()[0]:.2f} at "
            "the end; above the CPU count, other work shared the machine and timings are noisier.",
            "",
            "Ratio = ours / floor (lower is better). Memory: " + MEMORY_METHOD + ".",
            "",
            *(f"- {note}" for note in notes),
        ]
    )
    output = dataset.write_results(report, args.output, RESULTS, args.profiles, FULL_SIZE)
    print()
    print(report)
    print()
    log(f"written to {output} ({time.perf_counter() - started:.0f} s in all)")


def dataset_summary(backend: Backend) -> str:
    """The row counts of the SQLite dataset (the PostgreSQL one is generated identically)."""
    import sqlite3

    assert backend.path is not None
    connection = sqlite3.connect(backend.path)
    try:
        counts = [
            connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("profiles", "subscriptions", "suppressions", "resources")
        ]
    finally:
        connection.close()
    return (
        f"{counts[0]:,} profiles, {counts[1]:,} subscriptions to {counts[3]} resources, "
        f"{counts[2]:,} suppressions"
    )


if __name__ == "__main__":
    main()
