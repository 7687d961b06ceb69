"""Checking each row of an import file with what needs no database: the address, the status
word, the resource and channel, the consent date, the name, and duplicates earlier in the file
(remembered as 64-bit keys in ``SeenKeys``, so memory stays flat). A row comes out as an
``ImportRow`` ready for the rules, or a ``Rejection`` that says why not."""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from app.addresses import InvalidEmail, normalize_email
from app.database import utcnow
from app.models import Resource
from app.services.csv_injection import unquoted
from app.services.imports.reading import ColumnMap, parse_consent_date, read_csv
from app.status import Channel, Status, UnknownStatus, parse_status

# Rows decided and written together: one transaction, a few reads, a few bulk writes.
CHUNK = 10_000
NAME_MAX = 200

# Rejection reasons: the first words are fixed, so they can be counted.
MALFORMED_ADDRESS = "malformed address"
MISSING_STATUS = "missing status"
UNKNOWN_STATUS = "unknown status"
NO_RESOURCE = "no resource (no resource column and no default resource)"
UNKNOWN_RESOURCE = "unknown resource"
UNKNOWN_CHANNEL = "unknown channel"
DUPLICATE = "duplicate address (and resource) earlier in the file"
BAD_CONSENT_DATE = "malformed consent date"
FUTURE_CONSENT_DATE = "consent date in the future"
LONG_NAME = f"name longer than {NAME_MAX} characters"
BAD_NAME = "name holds a NUL character"
REFUSED = "refused by the rules"


@dataclass(slots=True)
class ImportRow:
    """One row that passed the checks that need no database."""

    line: int
    email: str
    name: str | None
    status: Status
    resource_id: int
    channel: str
    consent_at: datetime | None


@dataclass(frozen=True)
class Rejection:
    """A row that is not imported: its line in the file, its address as written, and why."""

    line: int
    email: str | None
    reason: str

    @property
    def kind(self) -> str:
        """The reason without its detail, to count rejections by."""
        return self.reason.split(":", 1)[0]


@dataclass(frozen=True)
class Target:
    """What the parser needs of a resource, copied out of the session (chunks commit)."""

    id: int
    slug: str
    channels: tuple[str, ...]

    @classmethod
    def of(cls, resource: Resource) -> Target:
        """The parts of ``resource`` a row is checked against."""
        return cls(resource.id, resource.slug, tuple(resource.channels.split(",")))


class SeenKeys:
    """A set of 64-bit keys in one array made at the start (open addressing, at most half full).

    A Python set of a million ints takes about 70 MB, growing as the rows go by; this takes 16 MB
    for a million expected rows, allocated once, so an import's memory is flat. It grows (by
    doubling) only when more keys come than were expected.
    """

    def __init__(self, expected: int) -> None:
        self._allocate(max(expected, 512))

    def _allocate(self, expected: int) -> None:
        size = 1 << (2 * expected).bit_length()
        self._mask = size - 1
        self._table = array("Q", [0]) * size
        self._count = 0

    def add(self, key: int) -> bool:
        """Remember ``key``; False when it was there already."""
        key &= 0xFFFF_FFFF_FFFF_FFFF
        key = key or 1  # 0 marks an empty slot
        table, mask = self._table, self._mask
        slot = key & mask
        while True:
            found = table[slot]
            if found == 0:
                table[slot] = key
                self._count += 1
                if 2 * self._count > mask:
                    self._grow()
                return True
            if found == key:
                return False
            slot = (slot + 1) & mask

    def _grow(self) -> None:
        keys = [key for key in self._table if key]
        self._allocate(2 * len(keys))
        for key in keys:
            self.add(key)


class RowParser:
    """The checks on each row that need no database: address, status, resource, channel,
    consent date, name, and duplicates within the file (which it remembers in hashed form)."""

    def __init__(
        self,
        columns: ColumnMap,
        resources: Sequence[Resource],
        default: Resource | None,
        *,
        expected_rows: int = 0,
    ) -> None:
        self.columns = columns
        self.by_slug = {resource.slug: Target.of(resource) for resource in resources}
        self.default = Target.of(default) if default is not None else None
        self.now = utcnow()
        self._statuses: dict[str, Status | None] = {}
        # A 64-bit hash of each (address, resource, channel) seen, not the rows themselves. Two
        # different rows sharing one would be ~1e-8 likely in 1e6 rows.
        self._seen = SeenKeys(expected_rows)
        # A row is padded with empty cells to one past its header, and a column the file does
        # not have reads that last, always empty, cell: no checks on each access.
        self._width = len(columns.headers) + 1
        empty = len(columns.headers)
        i = {name: empty if index is None else index for name, index in columns.index.items()}
        self._email, self._name, self._status = i["email"], i["name"], i["status"]
        self._resource, self._channel = i["resource"], i["channel"]
        self._consent = i["consent_date"]

    def _status_of(self, raw: str) -> Status | None:
        if raw not in self._statuses:
            try:
                self._statuses[raw] = parse_status(raw)
            except UnknownStatus:
                self._statuses[raw] = None
        return self._statuses[raw]

    def parse(self, line: int, fields: list[str]) -> ImportRow | Rejection:
        """The row ready to be decided, or why it is rejected."""
        if len(fields) < self._width:
            fields += [""] * (self._width - len(fields))
        raw_email = unquoted(fields[self._email])
        shown = raw_email.strip()[:320] or None
        try:
            email = normalize_email(raw_email)
        except InvalidEmail:
            return Rejection(line, shown, MALFORMED_ADDRESS)
        raw_status = fields[self._status].strip()
        if not raw_status:
            return Rejection(line, shown, MISSING_STATUS)
        status = self._status_of(raw_status)
        if status is None:
            return Rejection(line, shown, f"{UNKNOWN_STATUS}: {raw_status[:100]}")
        slug = fields[self._resource].strip()
        if slug:
            resource = self.by_slug.get(slug) or self.by_slug.get(slug.lower())
            if resource is None:
                return Rejection(line, shown, f"{UNKNOWN_RESOURCE}: {slug[:100]}")
        elif self.default is not None:
            resource = self.default
        else:
            return Rejection(line, shown, NO_RESOURCE)
        channel = fields[self._channel].strip().lower() or Channel.EMAIL.value
        if channel not in resource.channels:
            return Rejection(line, shown, f"{UNKNOWN_CHANNEL}: {channel[:20]} for {resource.slug}")
        consent_at = None
        raw_consent = fields[self._consent].strip()
        if raw_consent:
            try:
                consent_at = parse_consent_date(raw_consent)
            except ValueError:
                return Rejection(line, shown, f"{BAD_CONSENT_DATE}: {raw_consent[:50]}")
            if consent_at > self.now:
                return Rejection(line, shown, f"{FUTURE_CONSENT_DATE}: {raw_consent[:50]}")
        name = unquoted(fields[self._name]).strip() or None
        if name is not None and len(name) > NAME_MAX:
            return Rejection(line, shown, LONG_NAME)
        if name is not None and "\0" in name:
            return Rejection(line, shown, BAD_NAME)
        if not self._seen.add(hash((email, resource.id, channel))):
            return Rejection(line, shown, DUPLICATE)
        return ImportRow(line, email, name, status, resource.id, channel, consent_at)


class Chunk(NamedTuple):
    """Up to ``CHUNK`` rows of the file, checked: the good ones, the ones rejected before the
    database, and how many rows of the file it covers."""

    rows: list[ImportRow]
    rejected: list[Rejection]
    read: int


def chunks(
    path: str, parser: RowParser, limit: int | None = None, *, skip: int = 0
) -> Iterator[Chunk]:
    """The file's rows (the first ``limit`` of them), checked by ``parser``, in chunks. The
    first ``skip`` rows (a resumed import's, imported already) are checked too, so that a
    later duplicate of one is still found, and left out."""
    _columns, lines = read_csv(path)
    rows: list[ImportRow] = []
    rejected: list[Rejection] = []
    read = 0
    for line, fields in lines:
        parsed = parser.parse(line, fields)
        if skip:
            skip -= 1
            continue
        if isinstance(parsed, ImportRow):
            rows.append(parsed)
        else:
            rejected.append(parsed)
        read += 1
        if read % CHUNK == 0:
            yield Chunk(rows, rejected, CHUNK)
            rows, rejected = [], []
        if limit is not None and read >= limit:
            break
    if rows or rejected or read % CHUNK:
        yield Chunk(rows, rejected, read % CHUNK)
