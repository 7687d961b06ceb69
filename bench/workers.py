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
from dataclasses import dataclass
from datetime import datetime
from typing import Any

MEMORY_METHOD = (
    "peak RSS = VmHWM of /proc/self/status in a fresh subprocess, reset with "
    "/proc/self/clear_refs just before the stream; growth = that peak minus VmRSS at the start"
)
IN_CHUNK = 5000  # addresses per query in the floor, as app.queries.IN_CLAUSE_CHUNK
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


def _floor_effective(status: str | None, until: Any, resume: str | None, now: Any) -> str | None:
    if status == "suspended" and until is not None and until <= now:
        return resume or "subscribed"
    return status


Fetch = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]
FLOOR_COLUMNS = (
    "SELECT p.email, p.global_status, p.suspended_until, p.resume_status,"
    " s.status, s.suspended_until, s.resume_status,"
    " EXISTS (SELECT 1 FROM suppressions x WHERE x.email_hash = p.email_hash)"
)


@dataclass(frozen=True)
class Chunked:
    """The lookups as optin's queries write them: chunks of 5,000 addresses, each matched with
    ``IN (?, ?, ...)`` on SQLite and ``= ANY(%s)`` (one array parameter) on PostgreSQL."""

    fetch: Fetch
    backend: str  # "sqlite" or "postgres"
    resource_id: int
    channel: str

    def _one_of(self, column: str, chunk: list[str]) -> tuple[str, list[Any]]:
        if self.backend == "postgres":
            return f"{column} = ANY(%s)", [chunk]
        return f"{column} IN ({', '.join('?' * len(chunk))})", list(chunk)

    def rows(self, known: list[str]) -> list[tuple[Any, ...]]:
        found: list[tuple[Any, ...]] = []
        mark = "%s" if self.backend == "postgres" else "?"
        for start in range(0, len(known), IN_CHUNK):
            condition, values = self._one_of("p.email", known[start : start + IN_CHUNK])
            sql = (
                f"{FLOOR_COLUMNS} FROM profiles p LEFT JOIN subscriptions s"
                f" ON s.profile_id = p.id AND s.resource_id = {mark} AND s.channel = {mark}"
                f" WHERE {condition}"
            )
            found += self.fetch(sql, [self.resource_id, self.channel, *values])
        return found

    def suppressed(self, hashes: list[str]) -> list[tuple[Any, ...]]:
        found: list[tuple[Any, ...]] = []
        for start in range(0, len(hashes), IN_CHUNK):
            condition, values = self._one_of("email_hash", hashes[start : start + IN_CHUNK])
            found += self.fetch(f"SELECT email_hash FROM suppressions WHERE {condition}", values)
        return found


@dataclass(frozen=True)
class PostgresUnnest:
    """The profile lookup as a join: the batch as one array, turned into rows by ``unnest`` and
    joined to profiles, which PostgreSQL plans as one probe of the email index per address
    rather than a scan of the table filtered by the array."""

    fetch: Fetch
    resource_id: int
    channel: str

    def rows(self, known: list[str]) -> list[tuple[Any, ...]]:
        sql = (
            f"{FLOOR_COLUMNS} FROM unnest(%s::text[]) AS q(email)"
            " JOIN profiles p ON p.email = q.email LEFT JOIN subscriptions s"
            " ON s.profile_id = p.id AND s.resource_id = %s AND s.channel = %s"
        )
        return self.fetch(sql, [known, self.resource_id, self.channel])

    def suppressed(self, hashes: list[str]) -> list[tuple[Any, ...]]:
        sql = "SELECT email_hash FROM suppressions WHERE email_hash = ANY(%s)"
        return self.fetch(sql, [hashes])


def _floor_decide(
    emails: Sequence[str], lookup: Chunked | PostgresUnnest, now: Any
) -> list[tuple[bool, str]]:
    """The batch decision as plainly as it can be written: lower-case and a regex, one query
    joining profile, subscription and suppression, one for the suppressed unknown addresses,
    then the rule inline."""
    normalized: list[str | None] = []
    for raw in emails:
        address = raw.strip().lower()
        normalized.append(address if FLOOR_ADDRESS.fullmatch(address) else None)
    known = list(dict.fromkeys(a for a in normalized if a is not None))
    rows = {row[0]: row for row in lookup.rows(known)}
    unknown = {hashlib.sha256(a.encode()).hexdigest(): a for a in known if a not in rows}
    suppressed_unknown = {unknown[row[0]] for row in lookup.suppressed(list(unknown))}

    answers: list[tuple[bool, str]] = []
    for address in normalized:
        if address is None:
            answers.append((False, "invalid_email"))
            continue
        row = rows.get(address)
        if row is None:
            suppressed = address in suppressed_unknown
            answers.append((False, "suppressed" if suppressed else "unknown_profile"))
            continue
        if row[7]:
            answers.append((False, "suppressed"))
            continue
        g = _floor_effective(row[1], row[2], row[3], now)
        if g != "subscribed":
            answers.append((False, f"global_{g}"))
            continue
        s = _floor_effective(row[4], row[5], row[6], now)
        if s is None:
            answers.append((False, "no_subscription"))
        elif s != "subscribed":
            answers.append((False, f"subscription_{s}"))
        else:
            answers.append((True, "subscribed"))
    return answers


def decide_batch(job: dict[str, Any]) -> dict[str, Any]:
    """``decide_many`` and its floor, a variant of the floor that backs a recommendation in
    bench/README.md, and ``decide_many``'s profile lookup timed alone (to show where its time
    goes), all run in turn round after round, so that none gets a warmer cache or a quieter
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
        # connection comes back. A prepared statement may switch to a generic plan, which for
        # `= ANY(array)` differs from the plan optin gets, and the ratio would compare plans.
        raw = psycopg.connect(job["dsn"], autocommit=True, prepare_threshold=None)
        floor_now = now

    def fetch(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = raw.execute(sql, params).fetchall()
        return rows

    def ours() -> list[tuple[str, Any]]:
        with app.app_context():  # one request: its own session, removed at the end
            return decide_many(emails, resource, channel, now=now)

    chunked = Chunked(fetch, job["backend"], job["resource_id"], channel)
    unnest = PostgresUnnest(fetch, job["resource_id"], channel)
    variants: list[tuple[str, Callable[[], list[tuple[bool, str]]]]] = [
        ("floor", lambda: _floor_decide(emails, chunked, floor_now)),
    ]
    if job["backend"] == "postgres":
        variants.append(("floor, unnest join", lambda: _floor_decide(emails, unnest, floor_now)))

    # Warm-up, and the agreement check: all must answer every address alike.
    ours_full = ours()
    ours_answers = [(decision.allowed, decision.reason) for _, decision in ours_full]
    for name, variant in variants:
        disagreements = [
            (emails[i], a, b)
            for i, (a, b) in enumerate(zip(ours_answers, variant(), strict=True))
            if a != b
        ]
        if disagreements:
            raise SystemExit(
                f"decide_many and {name} disagree on {len(disagreements)}: {disagreements[:5]}"
            )

    known = [address for address, d in ours_full if d.reason != "invalid_email"]

    def eligibility_rows() -> None:
        with app.app_context():
            queries.eligibility_rows(known, job["resource_id"], channel)

    timed: list[tuple[str, Callable[[], object]]] = [
        ("decide_many", ours),
        *variants,
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
        "variants_ms": medians,
        "allowed": sum(1 for allowed, _ in ours_answers if allowed),
        "reasons": reasons,
    }


def _ms(call: Callable[[], object]) -> tuple[float, float]:
    """Wall and CPU milliseconds of one call."""
    started, cpu_started = time.perf_counter(), time.process_time()
    call()
    return (time.perf_counter() - started) * 1000, (time.process_time() - cpu_started) * 1000


# --- 3. one decision in process ------------------------------------------------------------------


def _raw_can_send(
    g: tuple[str, Any, str | None] | None,
    s: tuple[str, Any, str | None] | None,
    suppressed: bool,
    resource_named: bool,
    now: datetime,
) -> tuple[bool, str]:
    """The same check as plain code on tuples: no dataclasses, no enums, no result object."""
    if suppressed:
        return False, "suppressed"
    if g is None:
        return False, "unknown_profile"
    g_status = g[2] if g[0] == "suspended" and g[1] <= now else g[0]
    if g_status != "subscribed":
        return False, "global_" + str(g_status)
    if resource_named:
        if s is None:
            return False, "no_subscription"
        s_status = s[2] if s[0] == "suspended" and s[1] <= now else s[0]
        if s_status != "subscribed":
            return False, "subscription_" + str(s_status)
    return True, "subscribed"


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
        decision = can_send(g, s, suppressed=False, resource_named=True, now=now)
        assert (decision.allowed, decision.reason) == _raw_can_send(raw_g, raw_s, False, True, now)
        space = {"can_send": can_send, "raw": _raw_can_send, "g": g, "s": s, "now": now}
        space |= {"rg": raw_g, "rs": raw_s}
        ours = timeit.Timer(
            "can_send(g, s, suppressed=False, resource_named=True, now=now)", globals=space
        ).repeat(repeat, number)
        floor = timeit.Timer("raw(rg, rs, False, True, now)", globals=space).repeat(repeat, number)
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
