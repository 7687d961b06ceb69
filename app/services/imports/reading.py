"""Reading an import file: its dialect (UTF-8 text, the delimiter a spreadsheet chose), which
column feeds which field (the header aliases), and its data rows with the line each starts on.
Nothing here knows about statuses or the database."""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import NamedTuple

from app.services.errors import InvalidInput

# What each column may be called in a file, compared without case, spaces, "-" or "_".
HEADER_ALIASES: dict[str, tuple[str, ...]] = {
    "email": ("email", "emailaddress", "mail", "emailadresse", "address"),
    "name": ("name", "fullname", "firstname", "fname", "givenname", "vorname", "displayname"),
    "status": ("status", "subscriptionstatus", "state", "subscriberstatus"),
    "resource": ("resource", "resourceslug", "slug", "list", "listslug", "newsletter"),
    "channel": ("channel",),
    "consent_date": (
        "consentdate",
        "consentedat",
        "consent",
        "consentat",
        "optindate",
        "optintime",
        "confirmedat",
        "confirmationdate",
        "subscribedat",
    ),
}
FIELDS = tuple(HEADER_ALIASES)


class ImportFileError(InvalidInput):
    """The file as a whole cannot be imported: not UTF-8 text, not CSV, empty, no email column."""


@dataclass(frozen=True)
class ColumnMap:
    """Which column of the file feeds which field (None: the file has no such column)."""

    headers: tuple[str, ...]
    index: dict[str, int | None]
    delimiter: str = ","

    @property
    def mapping(self) -> list[tuple[str, str | None]]:
        """(field, header in the file) for the preview."""
        return [
            (name, self.headers[i] if (i := self.index[name]) is not None else None)
            for name in FIELDS
        ]

    @property
    def ignored(self) -> list[str]:
        """The file's columns that feed no field, for the preview."""
        used = {i for i in self.index.values() if i is not None}
        return [header for i, header in enumerate(self.headers) if i not in used]


class RawRow(NamedTuple):
    """A data row as the file has it: the line it starts on, and its cells."""

    line: int
    fields: list[str]


def _key(header: str) -> str:
    return "".join(ch for ch in header.lower() if ch.isalnum())


def map_columns(headers: Sequence[str]) -> ColumnMap:
    """Match the file's header row to the fields; the first matching column of each wins."""
    index: dict[str, int | None] = dict.fromkeys(FIELDS)
    keys = [_key(header) for header in headers]
    for name, aliases in HEADER_ALIASES.items():
        for alias in aliases:
            if alias in keys and keys.index(alias) not in index.values():
                index[name] = keys.index(alias)
                break
    if index["email"] is None:
        shown = ", ".join(h for h in headers if h.strip()) or "none"
        raise ImportFileError(
            f"the file has no email column (its headers: {shown}); name one 'email'"
        )
    if index["status"] is None:
        raise ImportFileError("the file has no status column; name one 'status'")
    return ColumnMap(tuple(h.strip() for h in headers), index)


def _delimiter(header_line: str) -> str:
    # Spreadsheets in many countries write ";"; a tab-separated file is CSV enough too.
    counts = {d: header_line.count(d) for d in (",", ";", "\t")}
    return max(counts, key=lambda d: (counts[d], d == ","))


def read_header(path: str) -> ColumnMap:
    """The file's column map, from its header row; ``ImportFileError`` for a file that is not
    UTF-8 CSV text with an email and a status column."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            first = handle.readline()
    except UnicodeDecodeError:
        raise ImportFileError("the file is not UTF-8 text; save it as CSV (UTF-8)") from None
    except ValueError as error:
        raise ImportFileError(f"the file cannot be read: {error}") from None
    if not first.strip():
        raise ImportFileError("the file is empty: it needs a header row and at least one row")
    if "\0" in first:
        raise ImportFileError("the file is not CSV text (it holds NUL bytes)")
    delimiter = _delimiter(first)
    try:
        headers = next(csv.reader([first], delimiter=delimiter))
    except csv.Error as error:
        raise ImportFileError(f"the header row is not CSV: {error}") from None
    columns = map_columns(headers)
    return ColumnMap(columns.headers, columns.index, delimiter)


def read_csv(path: str) -> tuple[ColumnMap, Iterator[RawRow]]:
    """The column map and the data rows of a file, each with the line it starts on (blank lines
    are skipped). The rows are read lazily; a decoding or CSV error surfaces as
    ``ImportFileError`` when it is reached."""
    columns = read_header(path)

    def rows() -> Iterator[RawRow]:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            last = 1
            try:
                handle.readline()
                reader = csv.reader(handle, delimiter=columns.delimiter)
                for fields in reader:
                    start, last = last + 1, reader.line_num + 1
                    if fields and any(fields):
                        yield RawRow(start, fields)
            except UnicodeDecodeError:
                raise ImportFileError(
                    f"the file is not UTF-8 text (after line {last}); save it as CSV (UTF-8)"
                ) from None
            except csv.Error as error:
                raise ImportFileError(f"line {last + 1} is not CSV: {error}") from None

    return columns, rows()


def count_rows(path: str) -> int:
    """The number of data rows in a file (raises ``ImportFileError`` as ``read_csv`` does)."""
    _columns, rows = read_csv(path)
    return sum(1 for _ in rows)


def parse_consent_date(value: str) -> datetime:
    """An ISO 8601 date or time, as exports write them; a time without a zone is taken as UTC."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
