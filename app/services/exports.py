"""CSV exports: a resource's audience (the API's ``Accept: text/csv`` answer, the admin's export
and ``flask export``), and the admin's filtered list of profiles. Every export is a generator of
text blocks read row by row from the database, so memory stays flat whatever the size.

Files meant for people (the admin page, the command line) are safe to open in a spreadsheet: a
cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return would be read as a
formula, so it gets a leading ``'`` (OWASP's advice for CSV injection). The import takes that
quote off again. The API's CSV is for programs and stays byte for byte what was stored.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from app import queries
from app.links import LinkMaker
from app.services.csv_injection import spreadsheet_safe

# Text is handed out in blocks of about this size: one HTTP chunk per row costs more than the row.
STREAM_BLOCK = 64 * 1024
AUDIENCE_FIELDS = [
    "email",
    "name",
    "unsubscribe_url",
    "preferences_url",
    "list_unsubscribe",
    "list_unsubscribe_post",
]
PROFILE_FIELDS = ["email", "name", "global_status", "suspended_until", "created_at"]


def csv_blocks(fields: list[str], rows: Iterable[Iterable[object]], *, safe: bool) -> Iterator[str]:
    """The header and the rows as CSV text, in blocks of about STREAM_BLOCK characters."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(fields)
    for row in rows:
        writer.writerow([spreadsheet_safe(v) for v in row] if safe else row)
        if buffer.tell() >= STREAM_BLOCK:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def audience_rows(resource_id: int, channel: str, now: datetime) -> Iterator[list[Any]]:
    """Everyone who may be sent this resource on this channel (queries.stream_audience), each
    with their unsubscribe and preferences links, in AUDIENCE_FIELDS order."""
    maker = LinkMaker()
    for row in queries.stream_audience(resource_id, channel, now):
        found = maker.links(row.id, row.link_key, resource_id, channel)
        yield [
            row.email,
            row.name,
            found.unsubscribe_url,
            found.preferences_url,
            found.list_unsubscribe,
            found.list_unsubscribe_post,
        ]


def audience_csv(resource_id: int, channel: str, now: datetime, *, safe: bool) -> Iterator[str]:
    """A resource's audience as CSV text (``safe``: for a spreadsheet, see the module's note)."""
    return csv_blocks(AUDIENCE_FIELDS, audience_rows(resource_id, channel, now), safe=safe)


@dataclass(frozen=True)
class ProfileFilter:
    """The admin's filters for a list of profiles; None means any."""

    global_status: str | None = None
    resource_id: int | None = None
    channel: str | None = None
    subscription_status: str | None = None
    created_from: datetime | None = None
    created_before: datetime | None = None


def profiles_csv(filters: ProfileFilter) -> Iterator[str]:
    """The profiles matching ``filters`` as spreadsheet-safe CSV; with a resource, one line for
    each of their subscriptions to it, with its channel and status."""
    query = queries.profiles_export_query(
        global_status=filters.global_status,
        resource_id=filters.resource_id,
        channel=filters.channel,
        subscription_status=filters.subscription_status,
        created_from=filters.created_from,
        created_before=filters.created_before,
    )
    with_subscription = filters.resource_id is not None
    fields = PROFILE_FIELDS + (["channel", "subscription_status"] if with_subscription else [])

    def rows() -> Iterator[list[Any]]:
        for row in queries.stream_rows(query):
            line = [
                row.email,
                row.name,
                row.status,
                _iso(row.suspended_until),
                _iso(row.created_at),
            ]
            if with_subscription:
                line += [row.channel, row.subscription_status]
            yield line

    return csv_blocks(fields, rows(), safe=True)


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def write_all(blocks: Iterable[str], out: TextIO) -> int:
    """Write an export to a file; returns the number of rows (lines after the header)."""
    lines = 0
    for block in blocks:
        out.write(block)
        lines += block.count("\n")
    return max(lines - 1, 0)
