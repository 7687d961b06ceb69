"""The SQL the floors send, in one place: the audience statement and the batch lookup, for the
driver alone (``sqlite3`` or psycopg; nothing here imports the app).

The floors hold no send rule of their own (STYLE.md: "the floor is raw work, not a second
implementation"). Who may be sent to is decided by the conditions of ``app.queries.audience_query``
written as plain SQL, and the batch lookup selects that same condition per address; the reason
for a refusal is optin's to give, and the benchmarks read it from optin where they report it.

``mark`` is the driver's placeholder: ``?`` for sqlite3, ``%s`` for psycopg.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

IN_CHUNK = 5000  # addresses per lookup, as app.queries.IN_CLAUSE_CHUNK

Fetch = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]

NOT_SUPPRESSED = "NOT EXISTS (SELECT 1 FROM suppressions x WHERE x.email_hash = p.email_hash)"


def sendable(status: str, alias: str, mark: str) -> str:
    """``queries._sendable`` as text: `subscribed`, or a suspension that has ended and gave
    `subscribed` back. ``status`` is the column (``global_status`` on profiles)."""
    return (
        f"({alias}.{status} = 'subscribed' OR ({alias}.{status} = 'suspended'"
        f" AND {alias}.suspended_until <= {mark} AND {alias}.resume_status = 'subscribed'))"
    )


def audience_sql(mark: str) -> str:
    """``queries.audience_query``; parameters: resource id, channel, now, now."""
    return (
        "SELECT p.id, p.email, p.name, p.link_key"
        " FROM profiles p JOIN subscriptions s ON s.profile_id = p.id"
        f" WHERE s.resource_id = {mark} AND s.channel = {mark}"
        " AND s.status IN ('subscribed', 'suspended')"
        f" AND {sendable('status', 's', mark)} AND {sendable('global_status', 'p', mark)}"
        f" AND {NOT_SUPPRESSED} ORDER BY p.id"
    )


def _matching(table: str, column: str, values: list[str], postgres: bool) -> tuple[str, str]:
    """FROM and WHERE for the rows of ``table`` whose ``column`` is one of ``values``, as
    ``queries._matching`` writes it: ``IN (?, ...)`` on SQLite; on PostgreSQL a join to the
    unnest()ed array (one index probe per value)."""
    if postgres:
        return f"unnest(%s::text[]) AS q(value) JOIN {table} ON {column} = q.value", ""
    return table, f" WHERE {column} IN ({', '.join('?' * len(values))})"


def decision_rows(
    fetch: Fetch,
    postgres: bool,
    addresses: list[str],
    resource_id: int | None,
    channel: str,
    now: Any,
) -> dict[str, tuple[Any, ...]]:
    """For each known address: ``(email, allowed, global_status, subscription_status)`` as
    stored, ``allowed`` (1 or 0) being the audience query's condition for that row, 5,000
    addresses a query. Unknown addresses are absent, as from ``queries.eligibility_rows``."""
    mark = "%s" if postgres else "?"
    allowed = f"{NOT_SUPPRESSED} AND {sendable('global_status', 'p', mark)}"
    if resource_id is not None:
        allowed += f" AND {sendable('status', 's', mark)}"
    subscription = "s.status" if resource_id is not None else "NULL"
    columns = (
        f"SELECT p.email, CASE WHEN {allowed} THEN 1 ELSE 0 END, p.global_status, {subscription}"
    )
    found: dict[str, tuple[Any, ...]] = {}
    for start in range(0, len(addresses), IN_CHUNK):
        chunk = addresses[start : start + IN_CHUNK]
        source, where = _matching("profiles p", "p.email", chunk, postgres)
        values: list[Any] = [chunk] if postgres else list(chunk)
        times = [now] if resource_id is None else [now, now]
        if resource_id is None:
            sql, params = f"{columns} FROM {source}{where}", [*times, *values]
        else:
            sql = (
                f"{columns} FROM {source} LEFT JOIN subscriptions s ON s.profile_id = p.id"
                f" AND s.resource_id = {mark} AND s.channel = {mark}{where}"
            )
            joined = [resource_id, channel]
            params = [*times, *values, *joined] if postgres else [*times, *joined, *values]
        for row in fetch(sql, params):
            found[row[0]] = row
    return found


def suppressed_hashes(fetch: Fetch, postgres: bool, hashes: list[str]) -> set[str]:
    """Which of these address hashes are on the suppression list (the unknown addresses' check
    optin makes too, for its answer)."""
    found: set[str] = set()
    for start in range(0, len(hashes), IN_CHUNK):
        chunk = hashes[start : start + IN_CHUNK]
        source, where = _matching("suppressions x", "x.email_hash", chunk, postgres)
        values: list[Any] = [chunk] if postgres else list(chunk)
        found.update(h for (h,) in fetch(f"SELECT x.email_hash FROM {source}{where}", values))
    return found
