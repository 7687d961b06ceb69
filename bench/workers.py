"""The measurements, each run in a fresh subprocess: ``python -m bench.workers`` reads one job
(a pickled dict) on stdin and writes its result as JSON on stdout.

A fresh process per measurement is what makes the memory figure honest: its peak RSS is that
measurement's alone, not left over from generating the dataset or from an earlier measurement.
The floor jobs import only the standard library and the database driver; optin's jobs import the
application, as a worker serving the audience would.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import sqlite3
import statistics
import sys
import time
import timeit
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from bench import floor_sql

MEMORY_METHOD = (
    "peak RSS = VmHWM of /proc/self/status in a fresh subprocess, reset with "
    "/proc/self/clear_refs just before the stream; growth = that peak minus VmRSS at the start"
)
STREAM_BATCH = 2000  # rows per fetch, as stream_audience's default batch_size


# --- memory --------------------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux 4.0+). Without it the peak is the process's
    lifetime peak, which is still an upper bound of the stream's."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def _measure_stream(rows: Callable[[], Iterable[Any]]) -> dict[str, Any]:
    """Consume every row, timing it and watching the peak memory of this process."""
    reset = _reset_peak()
    rss_before = _status_kib("VmRSS")
    started, cpu_started = time.perf_counter(), time.process_time()
    count = 0
    for _row in rows():
        count += 1
    seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        # This process's CPU time: steadier than wall time when other work shares the machine,
        # and all of the work on SQLite (PostgreSQL's server work is in another process).
        "cpu_seconds": time.process_time() - cpu_started,
        "rows": count,
        "rss_before_kib": rss_before,
        "peak_kib": _status_kib("VmHWM"),
        "peak_reset": reset,
    }


# --- 1. streaming the audience -------------------------------------------------------------------


def stream_ours(job: dict[str, Any]) -> dict[str, Any]:
    """optin's own path: ``queries.stream_audience`` inside an app context, every row consumed."""
    from app import create_app, queries

    app = create_app({"DATABASE_URL": job["url"]})
    with app.app_context():
        return _measure_stream(
            lambda: queries.stream_audience(job["resource_id"], job["channel"], job["now"])
        )


def stream_floor(job: dict[str, Any]) -> dict[str, Any]:
    """The same statement and parameters, sent by the driver alone: sqlite3's lazy cursor, or a
    psycopg server-side (named) cursor fetching as many rows at a time as optin does.

    ``settings`` (PostgreSQL only) are run first in the cursor's transaction, as
    ``stream_audience`` runs them, so that both get the same plan."""
    if job["backend"] == "sqlite":
        connection = sqlite3.connect(job["path"])
        try:
            return _measure_stream(lambda: connection.execute(job["sql"], job["params"]))
        finally:
            connection.close()

    import psycopg

    with psycopg.connect(job["dsn"]) as connection:

        def rows() -> Iterable[Any]:
            for setting in job.get("settings", ()):
                connection.execute(setting)
            with connection.cursor(name="audience_floor") as cursor:
                cursor.itersize = STREAM_BATCH
                cursor.execute(job["sql"], job["params"])
                yield from cursor

        return _measure_stream(rows)


# --- 2. deciding a batch -------------------------------------------------------------------------

FLOOR_ADDRESS = re.compile(r"[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+")


def _floor_decide(
    emails: Sequence[str], fetch: floor_sql.Fetch, postgres: bool, job: dict[str, Any], now: Any
) -> list[tuple[bool, str | None, str | None]]:
    """The batch as raw work: lower-case and a regex, one query per 5,000 addresses selecting
    the audience query's condition with the stored statuses, one lookup of the unknown
    addresses' hashes on the suppression list (optin makes it for its answer). No rule of its
    own: ``(allowed, global status, subscription status)`` per address, as stored."""
    normalized: list[str | None] = []
    for raw in emails:
        address = raw.strip().lower()
        normalized.append(address if FLOOR_ADDRESS.fullmatch(address) else None)
    known = list(dict.fromkeys(a for a in normalized if a is not None))
    rows = floor_sql.decision_rows(fetch, postgres, known, job["resource_id"], job["channel"], now)
    unknown = [hashlib.sha256(a.encode()).hexdigest() for a in known if a not in rows]
    floor_sql.suppressed_hashes(fetch, postgres, unknown)
    answers: list[tuple[bool, str | None, str | None]] = []
    for asked in normalized:
        row = rows.get(asked) if asked is not None else None
        answers.append((False, None, None) if row is None else (bool(row[1]), row[2], row[3]))
    return answers


def decide_batch(job: dict[str, Any]) -> dict[str, Any]:
    """``decide_many``, its floor and ``decide_many``'s profile lookup timed alone (to show where
    its time goes), run in turn round after round, so that none gets a warmer cache or a quieter
    minute than the others."""
    from app import create_app, queries
    from app.services.eligibility import decide_many

    emails: list[str] = job["emails"]
    resource, channel, now = job["resource"], job["channel"], job["now"]
    app = create_app({"DATABASE_URL": job["url"]})

    # The floor's own connection, opened once as a pool would keep it.
    raw: Any
    if job["backend"] == "sqlite":
        raw = sqlite3.connect(job["path"])
        floor_now = job["now_sqlite"]
    else:
        import psycopg

        # Never prepared server-side, like optin's statements: psycopg prepares a statement
        # after 5 runs but forgets it on ROLLBACK, which SQLAlchemy's pool sends whenever a
        # connection comes back. A prepared statement may switch to a generic plan, which may
        # differ from the plan optin gets, and the ratio would compare plans.
        raw = psycopg.connect(job["dsn"], autocommit=True, prepare_threshold=None)
        floor_now = now

    def fetch(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = raw.execute(sql, params).fetchall()
        return rows

    def ours() -> list[tuple[str, Any]]:
        with app.app_context():  # one request: its own session, removed at the end
            return decide_many(emails, resource, channel, now=now)

    def floor() -> list[tuple[bool, str | None, str | None]]:
        return _floor_decide(emails, fetch, job["backend"] == "postgres", job, floor_now)

    # Warm-up, and the agreement check: allowed or refused alike for every address, and the
    # statuses optin read (eligibility_rows) the floor read too. The reasons are optin's.
    ours_full = ours()
    ours_answers = [(decision.allowed, decision.reason) for _, decision in ours_full]
    known = [address for address, d in ours_full if d.reason != "invalid_email"]
    with app.app_context():
        stored = queries.eligibility_rows(known, job["resource_id"], channel)
    disagreements = []
    for (address, decision), (allowed, g, s) in zip(ours_full, floor(), strict=True):
        row = stored.get(address)
        read = (None, None) if row is None else (row.status, row.sub_status)
        if (decision.allowed, read) != (allowed, (g, s)):
            disagreements.append((address, decision, (allowed, g, s)))
    if disagreements:
        raise SystemExit(
            f"decide_many and the floor disagree on {len(disagreements)}: {disagreements[:5]}"
        )

    def eligibility_rows() -> None:
        with app.app_context():
            queries.eligibility_rows(known, job["resource_id"], channel)

    timed: list[tuple[str, Callable[[], object]]] = [
        ("decide_many", ours),
        ("floor", floor),
        ("eligibility_rows", eligibility_rows),
    ]
    runs: dict[str, list[float]] = {name: [] for name, _ in timed}
    cpu_runs: dict[str, list[float]] = {name: [] for name, _ in timed}
    for _ in range(job["runs"]):
        for name, call in timed:
            wall, cpu = _ms(call)
            runs[name].append(wall)
            cpu_runs[name].append(cpu)
    raw.close()
    medians = {name: statistics.median(values) for name, values in runs.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpu_runs.items()}
    reasons: dict[str, int] = {}
    for _allowed, reason in ours_answers:
        reasons[reason] = reasons.get(reason, 0) + 1
    return {
        "ours_ms": medians.pop("decide_many"),
        "floor_ms": medians.pop("floor"),
        "eligibility_rows_ms": medians.pop("eligibility_rows"),
        # This process's CPU time (see _measure_stream): on SQLite, all of the work.
        "cpu_ms": cpu_medians,
        "allowed": sum(1 for allowed, _ in ours_answers if allowed),
        "reasons": reasons,
    }


def _ms(call: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU milliseconds of one call."""
    started, cpu_started = time.perf_counter(), time.process_time()
    call()
    return (time.perf_counter() - started) * 1000, (time.process_time() - cpu_started) * 1000


# --- 3. one decision in process ------------------------------------------------------------------


Raw = tuple[str, Any, str | None]  # status, suspended until, resume status


def _raw_work(g: Raw, s: Raw, suppressed: bool, now: datetime) -> tuple[bool, ...]:
    """The floor of one decision: the comparisons a decision needs, each made once on plain
    tuples (each status and resume status against `subscribed`, each suspension's end against
    now). No rule decides which of them counts, and no answer is built: that is can_send's."""
    return (
        suppressed,
        g[0] == "subscribed",
        g[1] is not None and g[1] <= now,
        g[2] == "subscribed",
        s[0] == "subscribed",
        s[1] is not None and s[1] <= now,
        s[2] == "subscribed",
    )


def one_decision(job: dict[str, Any]) -> dict[str, Any]:
    """``status.can_send`` and its floor with timeit: the median of repeats, per call.

    Two cases: both statuses subscribed (the common answer, every check passed), and a
    subscription whose suspension has ended (the longest path: the state is recomputed)."""
    from datetime import timedelta

    from app.status import State, Status, can_send

    now: datetime = job["now"]
    ended = now - timedelta(days=1)
    cases = {
        "subscribed": (
            State(Status.SUBSCRIBED),
            State(Status.SUBSCRIBED),
            ("subscribed", None, None),
            ("subscribed", None, None),
        ),
        "suspension_ended": (
            State(Status.SUBSCRIBED),
            State(Status.SUSPENDED, ended, Status.SUBSCRIBED),
            ("subscribed", None, None),
            ("suspended", ended, "subscribed"),
        ),
    }
    number, repeat = job["number"], job["repeat"]
    result: dict[str, Any] = {"number": number, "repeat": repeat}
    for name, (g, s, raw_g, raw_s) in cases.items():
        space = {"can_send": can_send, "raw": _raw_work, "g": g, "s": s, "now": now}
        space |= {"rg": raw_g, "rs": raw_s}
        ours = timeit.Timer(
            "can_send(g, s, suppressed=False, resource_named=True, now=now)", globals=space
        ).repeat(repeat, number)
        floor = timeit.Timer("raw(rg, rs, False, now)", globals=space).repeat(repeat, number)
        result[name] = {
            "ours_us": statistics.median(ours) / number * 1e6,
            "floor_us": statistics.median(floor) / number * 1e6,
        }
    return result


JOBS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "stream_ours": stream_ours,
    "stream_floor": stream_floor,
    "decide_batch": decide_batch,
    "one_decision": one_decision,
}


def main() -> None:
    job: dict[str, Any] = pickle.loads(sys.stdin.buffer.read())
    result = JOBS[job["task"]](job)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
