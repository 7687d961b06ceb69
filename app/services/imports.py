"""CSV import of existing subscribers (SPEC §4): read the file, decide each row with the rules of
status.py (cause ``import``), write the rows that pass in chunks, and record every row that does
not with its line number and reason.

An import may only do what status.py lets cause ``import`` do: it lowers statuses and records
consent it is given, but it never lifts `unsubscribed`, `complainer` or `hardbounced`, never
touches `invalid`, never ends a suspension and never touches an address on the suppression list.
A `hardbounced` row puts its address on that list, as a bounce does (rule 6). It sends no email.
A second import of the same file finds every row as it says already and changes and records
nothing (rule 9).

Speed: rows are read and decided in chunks of ``CHUNK`` (the existing profiles, subscriptions and
suppressions of a chunk in a few queries, the rules in Python, each combination of plain states
decided once), and written with bulk Core statements in one transaction per chunk. Memory holds
one chunk, and the 64-bit keys that find duplicates in an array sized at the start
(``SeenKeys``); a million rows take about a minute on SQLite (README, Benchmarks).
"""

from __future__ import annotations

import csv
import os
import threading
import uuid
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from flask import Flask, current_app
from sqlalchemy import bindparam, column, func, insert, null, select, table, update

from app import queries
from app.addresses import InvalidEmail, email_hash, normalize_email, search_key
from app.database import (
    UTCDateTime,
    in_write_transaction,
    lengthen_wal_checkpoint,
    utcnow,
    write_transaction,
)
from app.extensions import db
from app.models import (
    ConsentRecord,
    ImportJob,
    ImportRejection,
    Profile,
    Resource,
    StatusEvent,
    Subscription,
    Suppression,
    SuppressionEvent,
)
from app.services.errors import InvalidInput, NotFound, UnknownResource
from app.services.statuses import TIME, Actor
from app.status import (
    Cause,
    Channel,
    Outcome,
    RuleError,
    SetStatus,
    Snapshot,
    State,
    Status,
    TransitionRefused,
    UnknownStatus,
    apply,
    parse_status,
    settle,
    stored_state,
)
from app.tokens import new_link_key

# Rows decided and written together: one transaction, a few reads, a few bulk writes.
CHUNK = 10_000
# SQLite's write-ahead log is moved into the database every this many pages while an import runs
# (the pool puts SQLite's default of 1,000 back: database.lengthen_wal_checkpoint).
SQLITE_CHECKPOINT_PAGES = 20_000
# Preview: how many rows are checked against the database, how many are shown.
PREVIEW_SAMPLE = 10
PREVIEW_REJECTIONS = 50
NAME_MAX = 200
CLI_ACTOR = "cli"

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

# Job states. "uploaded": waiting for the admin to look at the preview and start it.
UPLOADED, QUEUED, RUNNING, DONE, FAILED, DISCARDED = (
    "uploaded",
    "queued",
    "running",
    "done",
    "failed",
    "discarded",
)
FINISHED = frozenset({DONE, FAILED, DISCARDED})

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

# Characters that make a spreadsheet read a cell as a formula. The export prefixes them with a
# quote (OWASP's advice); the import takes that quote off again, so an export imports as it was.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


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


def read_csv(path: str) -> tuple[ColumnMap, Iterator[tuple[int, list[str]]]]:
    """The column map and the data rows of a file, each with the line it starts on (blank lines
    are skipped). The rows are read lazily; a decoding or CSV error surfaces as
    ``ImportFileError`` when it is reached."""
    columns = read_header(path)

    def rows() -> Iterator[tuple[int, list[str]]]:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            last = 1
            try:
                handle.readline()
                reader = csv.reader(handle, delimiter=columns.delimiter)
                for fields in reader:
                    start, last = last + 1, reader.line_num + 1
                    if fields and any(fields):
                        yield start, fields
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


def _unquoted(value: str) -> str:
    # The quote the export puts before a formula-like cell is not part of the value.
    if value[:1] == "'" and value[1:2] in FORMULA_STARTS and value[1:2]:
        return value[1:]
    return value


def parse_consent_date(value: str) -> datetime:
    """An ISO 8601 date or time, as exports write them; a time without a zone is taken as UTC."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


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
        raw_email = _unquoted(fields[self._email])
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
        name = _unquoted(fields[self._name]).strip() or None
        if name is not None and len(name) > NAME_MAX:
            return Rejection(line, shown, LONG_NAME)
        if name is not None and "\0" in name:
            return Rejection(line, shown, BAD_NAME)
        if not self._seen.add(hash((email, resource.id, channel))):
            return Rejection(line, shown, DUPLICATE)
        return ImportRow(line, email, name, status, resource.id, channel, consent_at)


# --- Deciding a chunk -------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """One row's outcome under the rules, with what writing it needs worked out once: rows
    repeat a few dozen combinations of states, and each combination is decided once."""

    global_state: State
    subscription: State
    global_changed: bool
    subscription_changed: bool
    became_subscribed: bool
    # The row puts the address on the suppression list (an imported `hardbounced`, rule 6).
    suppress: bool
    # The columns to write (shared between rows: copied before they are changed).
    global_columns: dict[str, Any]
    subscription_columns: dict[str, Any]
    # (on the subscription, old status, new status, cause, by the clock, suspended_until)
    events: tuple[tuple[bool, str | None, str, str, bool, datetime | None], ...]

    @property
    def changed(self) -> bool:
        """Whether the row changes a status (and so records an event)."""
        return bool(self.events)


def _state_columns(state: State) -> dict[str, Any]:
    return {
        "status": state.status.value,
        "suspended_until": state.suspended_until,
        "resume_status": state.resume_status.value if state.resume_status else None,
    }


def _verdict(g: State | None, s: State | None, settled: Outcome, outcome: Outcome) -> Verdict:
    after = outcome.after
    g_after, s_after = after.global_state, after.subscription
    if g_after is None or s_after is None:
        raise RuleError("an import row must leave a global status and a subscription")
    events = []
    for changes, snapshot, by_clock in (
        (settled.changes, settled.after, True),
        (outcome.changes, after, False),
    ):
        for change in changes:
            on_subscription = change.scope == "subscription"
            state = snapshot.subscription if on_subscription else snapshot.global_state
            events.append(
                (
                    on_subscription,
                    change.old.value if change.old else None,
                    change.new.value,
                    change.cause.value,
                    by_clock,
                    state.suspended_until if state else None,
                )
            )
    global_columns = _state_columns(g_after)
    global_columns["global_status"] = global_columns.pop("status")
    return Verdict(
        g_after,
        s_after,
        g_after != g,
        s_after != s,
        any(c.scope == "subscription" and c.new is Status.SUBSCRIBED for c in outcome.changes),
        outcome.suppression_added,
        global_columns,
        _state_columns(s_after),
        tuple(events),
    )


class Rules:
    """status.settle and status.apply for import rows, each combination of plain states decided
    once: a million rows repeat a few dozen of them."""

    def __init__(self) -> None:
        self._plain: dict[tuple[Any, ...], Verdict | str] = {}
        self._actions: dict[tuple[Status, bool], SetStatus] = {}

    def decide(
        self,
        g: State | None,
        s: State | None,
        suppressed: bool,
        status: Status,
        consent: bool,
        now: datetime,
    ) -> Verdict:
        """The outcome of setting ``status`` (with proof of consent or not) by cause
        ``import``, suspensions that have ended settled first; ``TransitionRefused`` when the
        rules refuse it."""
        g_status = g.status if g is not None else None
        s_status = s.status if s is not None else None
        # A suspension's outcome depends on its times and the clock: decided each time.
        plain = g_status is not Status.SUSPENDED and s_status is not Status.SUSPENDED
        key = (g_status, s_status, suppressed, status, consent)
        if plain:
            found = self._plain.get(key)
            if found is not None:
                if isinstance(found, str):
                    raise TransitionRefused(found)
                return found
        action = self._actions.get((status, consent))
        if action is None:
            action = self._actions[(status, consent)] = SetStatus(
                status, Cause.IMPORT, consent_proof=consent
            )
        settled = settle(Snapshot(g, s, suppressed=suppressed, resource_named=True), now)
        try:
            outcome = apply(action, settled.after, now)
        except TransitionRefused as refused:
            if plain:
                self._plain[key] = str(refused)
            raise
        verdict = _verdict(g, s, settled, outcome)
        if plain:
            self._plain[key] = verdict
        return verdict


@dataclass
class Plan:
    """What one chunk will write: the rows to insert and update, the events, the rejections."""

    new_profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    profile_updates: dict[str, dict[str, Any]] = field(default_factory=dict)
    new_subscriptions: dict[tuple[str, int, str], dict[str, Any]] = field(default_factory=dict)
    subscription_updates: dict[int, dict[str, Any]] = field(default_factory=dict)
    # (address, resource id or None, channel or None, old, new, cause, actor, suspended_until)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    # (address, resource id, channel, consent time)
    consents: list[tuple[str, int, str, datetime]] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    # Addresses the chunk puts on the suppression list, each once: (address, its hash).
    suppressions: list[tuple[str, str]] = field(default_factory=list)
    # Who runs the import: the actor of its events and of its suppression history.
    actor: Actor = TIME
    # The ids of the profiles and subscriptions that existed before the chunk.
    profile_ids: dict[str, int] = field(default_factory=dict)
    subscription_ids: dict[tuple[str, int, str], int] = field(default_factory=dict)
    imported: list[ImportRow] = field(default_factory=list)
    unchanged: int = 0
    # Existing profiles whose global status the chunk changes: their pending confirmation links
    # must stop working, as after any other global change (services/statuses.py).
    global_changed: set[str] = field(default_factory=set)


def plan_chunk(
    rows: Sequence[ImportRow],
    rules: Rules,
    actor: Actor,
    now: datetime,
    *,
    for_update: bool = False,
) -> Plan:
    """Read what the chunk's rows are about and decide each with the rules, in file order (a
    profile on two lines sees the first line's result). Writes nothing."""
    plan = Plan(actor=actor)
    emails = list(dict.fromkeys(row.email for row in rows))
    profiles = {row.email: row for row in queries.import_profiles(emails, for_update=for_update)}
    resource_ids = sorted({row.resource_id for row in rows})
    subscriptions = {
        (row.profile_id, row.resource_id, row.channel): row
        for row in queries.import_subscriptions([p.id for p in profiles.values()], resource_ids)
    }
    hashes = {email: email_hash(email) for email in emails}
    suppressed = queries.import_suppressed(hashes.values())

    global_states: dict[str, State | None] = {}
    names: dict[str, str | None] = {}
    for email, row in profiles.items():
        global_states[email] = stored_state(row.status, row.suspended_until, row.resume_status)
        names[email] = row.name
    sub_states: dict[tuple[str, int, str], State | None] = {}
    sub_ids: dict[tuple[str, int, str], int] = {}
    plan.profile_ids = {email: row.id for email, row in profiles.items()}
    by_profile_id = {row.id: email for email, row in profiles.items()}
    for (profile_id, resource_id, channel), row in subscriptions.items():
        key = (by_profile_id[profile_id], resource_id, channel)
        sub_states[key] = stored_state(row.status, row.suspended_until, row.resume_status)
        sub_ids[key] = row.id
    plan.subscription_ids = sub_ids

    for row in rows:
        email = row.email
        key = (email, row.resource_id, row.channel)
        try:
            verdict = rules.decide(
                global_states.get(email),
                sub_states.get(key),
                hashes[email] in suppressed,
                row.status,
                row.consent_at is not None,
                now,
            )
        except TransitionRefused as refused:
            plan.rejections.append(Rejection(row.line, email, f"{REFUSED}: {refused}"))
            continue
        new_name = row.name if row.name and email in names and not names[email] else None
        if not verdict.events and new_name is None:
            plan.unchanged += 1
            continue
        plan.imported.append(row)
        if email not in global_states:
            plan.new_profiles[email] = {
                "email": email,
                "email_hash": hashes[email],
                "name": row.name,
                **verdict.global_columns,
                "created_at": now,
                "updated_at": now,
            }
            names[email] = row.name
        elif email in plan.new_profiles:
            plan.new_profiles[email].update(verdict.global_columns)
        elif verdict.global_changed or new_name is not None:
            if verdict.global_changed:
                plan.global_changed.add(email)
            update_row = plan.profile_updates.setdefault(email, {"name": names[email]})
            update_row.update(verdict.global_columns)
            if new_name is not None:
                update_row["name"] = names[email] = new_name
        global_states[email] = verdict.global_state

        if verdict.subscription_changed:
            columns = dict(verdict.subscription_columns)
            if verdict.became_subscribed:
                columns["confirmed_at"] = row.consent_at or now
            if key in sub_ids:
                plan.subscription_updates.setdefault(sub_ids[key], {}).update(columns)
            elif key in plan.new_subscriptions:
                plan.new_subscriptions[key].update(columns)
            else:
                plan.new_subscriptions[key] = {
                    "resource_id": row.resource_id,
                    "channel": row.channel,
                    "confirmed_at": None,
                    **columns,
                    "created_at": now,
                    "updated_at": now,
                }
        sub_states[key] = verdict.subscription
        if verdict.suppress:
            # Later rows of the address, in this chunk too, find it suppressed.
            suppressed.add(hashes[email])
            plan.suppressions.append((email, hashes[email]))
        if verdict.became_subscribed and row.consent_at is not None:
            plan.consents.append((email, row.resource_id, row.channel, row.consent_at))
        for on_subscription, old, new, cause, by_clock, until in verdict.events:
            plan.events.append(
                (
                    email,
                    row.resource_id if on_subscription else None,
                    row.channel if on_subscription else None,
                    old,
                    new,
                    cause,
                    TIME if by_clock else actor,
                    until,
                )
            )
    return plan


def db_time(dialect: Any) -> Callable[[datetime], Any] | None:
    """How a UTC time goes to the driver, as UTCDateTime sends it. On SQLite that is SQLAlchemy's
    text format, written here directly: its own processing costs 3 us a value (a test holds the
    two to the same text)."""
    if dialect.name == "sqlite":
        return _sqlite_time
    return UTCDateTime().dialect_impl(dialect).bind_processor(dialect)


def _sqlite_time(value: datetime) -> str:
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _executemany(statement: Any, rows: list[dict[str, Any]], times: Sequence[str] = ()) -> None:
    """Run a Core statement once for each row, as the driver's executemany.

    The statement is compiled by SQLAlchemy from the table, but the values go to the driver as
    they are: SQLAlchemy's per-value processing cost three times the database's own work. The
    only values that need converting are the timestamps (``times``), done here as UTCDateTime
    would do them.
    """
    if not rows:
        return
    connection = db.session.connection()
    dialect = connection.dialect
    convert = db_time(dialect)
    if times and convert is not None:
        # A chunk's rows share a few times (its clock, the consent dates): convert each once.
        converted: dict[datetime, Any] = {}
        for row in rows:
            for key in times:
                value = row[key]
                if value is not None:
                    found = converted.get(value)
                    if found is None:
                        found = converted[value] = convert(value)
                    row[key] = found
    compiled = statement.compile(dialect=dialect, column_keys=list(rows[0]))
    if compiled.positional:
        values = itemgetter(*compiled.positiontup)
        connection.exec_driver_sql(compiled.string, [values(row) for row in rows])
    else:
        connection.exec_driver_sql(compiled.string, rows)


def _insert_many(table: Any, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
    """``_executemany`` for an INSERT whose rows are tuples in ``columns`` order with their times
    converted already (``db_time``): the import's hot path, with no dict made for a row."""
    if not rows:
        return
    connection = db.session.connection()
    compiled = insert(table).compile(dialect=connection.dialect, column_keys=list(columns))
    if compiled.positional:
        order = [columns.index(name) for name in compiled.positiontup]
        if order != list(range(len(columns))):
            pick = itemgetter(*order)
            rows = [pick(row) for row in rows]
        connection.exec_driver_sql(compiled.string, rows)
    else:
        named = [dict(zip(columns, row, strict=True)) for row in rows]
        connection.exec_driver_sql(compiled.string, named)


class _Times:
    """Times converted for the driver, each distinct one once (a chunk shares its clock)."""

    def __init__(self) -> None:
        self._convert = db_time(db.session.connection().dialect)
        self._done: dict[datetime, Any] = {}

    def __call__(self, value: datetime | None) -> Any:
        if value is None or self._convert is None:
            return value
        found = self._done.get(value)
        if found is None:
            found = self._done[value] = self._convert(value)
        return found


PROFILE_COLUMNS = (
    "id",
    "email",
    "email_hash",
    "name",
    "global_status",
    "suspended_until",
    "resume_status",
    "created_at",
    "updated_at",
    "link_key",
    "email_key",
    "name_key",
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
EVENT_COLUMNS = (
    "profile_id",
    "resource_id",
    "channel",
    "old_status",
    "new_status",
    "suspended_until",
    "cause",
    "actor",
    "reason",
    "ip",
    "user_agent",
    "occurred_at",
)
CONSENT_COLUMNS = ("subscription_id", "confirmed_at", "form")


def _new_ids(target: Any, count: int) -> list[int]:
    """Ids for rows about to be inserted, from the database's own allocator, so that no query
    has to find them afterwards. PostgreSQL's sequence hands out ``count`` at once. On SQLite
    it is AUTOINCREMENT's counter (``sqlite_sequence``): the largest id the table ever had,
    which, unlike ``max(id)``, does not go back when the newest row is deleted (an old link
    would then name the next person, tokens.py). The chunk's write transaction keeps every other
    writer out until these rows are in, and inserting them moves the counter past them."""
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        sequence = func.pg_get_serial_sequence(target.name, "id")
        found = connection.execute(
            select(func.nextval(sequence)).select_from(func.generate_series(1, count))
        )
        return [row[0] for row in found]
    sequence = table("sqlite_sequence", column("name"), column("seq"))
    counter = select(sequence.c.seq).where(sequence.c.name == target.name).scalar_subquery()
    largest = select(func.max(target.c.id)).scalar_subquery()
    top = connection.execute(
        select(func.max(func.coalesce(counter, 0), func.coalesce(largest, 0)))
    ).scalar()
    return list(range(int(top or 0) + 1, int(top or 0) + 1 + count))


def write_plan(plan: Plan, now: datetime) -> None:
    """Write one chunk's plan with bulk statements (executemany), in the open transaction."""
    profile_ids = dict(plan.profile_ids)
    at = _Times()
    stamp = at(now)
    if plan.new_profiles:
        ids = _new_ids(Profile.__table__, len(plan.new_profiles))
        rows = []
        for (email, v), new_id in zip(plan.new_profiles.items(), ids, strict=True):
            profile_ids[email] = new_id
            rows.append(
                (
                    new_id,
                    email,
                    v["email_hash"],
                    v["name"],
                    v["global_status"],
                    at(v["suspended_until"]),
                    v["resume_status"],
                    stamp,
                    stamp,
                    new_link_key(),
                    # The admin search's keys, which the ORM sets itself (models.Profile).
                    search_key(email),
                    search_key(v["name"]),
                )
            )
        _insert_many(Profile.__table__, PROFILE_COLUMNS, rows)
    if plan.profile_updates:
        table = Profile.__table__
        _executemany(
            update(table)
            .where(table.c.id == bindparam("profile_id"))
            .values(
                name=bindparam("new_name"),
                name_key=bindparam("new_name_key"),
                global_status=bindparam("new_status"),
                suspended_until=bindparam("new_until"),
                resume_status=bindparam("new_resume"),
                updated_at=bindparam("now"),
            ),
            [
                {
                    "profile_id": profile_ids[email],
                    "new_name": values["name"],
                    "new_name_key": search_key(values["name"]),
                    "new_status": values["global_status"],
                    "new_until": values["suspended_until"],
                    "new_resume": values["resume_status"],
                    "now": now,
                }
                for email, values in plan.profile_updates.items()
            ],
            ("new_until", "now"),
        )
    if plan.global_changed:
        table = Subscription.__table__
        _executemany(
            update(table)
            .where(table.c.profile_id == bindparam("of_profile"))
            .where(table.c.confirm_nonce.is_not(None))
            .values(confirm_nonce=null(), updated_at=bindparam("now")),
            [{"of_profile": profile_ids[email], "now": now} for email in plan.global_changed],
            ("now",),
        )
    subscription_ids: dict[tuple[str, int, str], int] = dict(plan.subscription_ids)
    if plan.new_subscriptions:
        ids = _new_ids(Subscription.__table__, len(plan.new_subscriptions))
        rows = []
        for (key, v), new_id in zip(plan.new_subscriptions.items(), ids, strict=True):
            subscription_ids[key] = new_id
            rows.append(
                (
                    new_id,
                    profile_ids[key[0]],
                    v["resource_id"],
                    v["channel"],
                    v["status"],
                    at(v["suspended_until"]),
                    v["resume_status"],
                    stamp,
                    stamp,
                    at(v["confirmed_at"]),
                )
            )
        _insert_many(Subscription.__table__, SUBSCRIPTION_COLUMNS, rows)
    if plan.subscription_updates:
        _update_subscriptions(plan.subscription_updates, now)
    if plan.events:
        _insert_many(
            StatusEvent.__table__,
            EVENT_COLUMNS,
            [
                (
                    profile_ids[email],
                    resource_id,
                    channel,
                    old,
                    new,
                    at(until),
                    cause,
                    actor.name,
                    actor.reason,
                    actor.ip,
                    actor.user_agent,
                    stamp,
                )
                for email, resource_id, channel, old, new, cause, actor, until in plan.events
            ],
        )
    if plan.suppressions:
        _write_suppressions(plan, stamp)
    if plan.consents:
        _insert_many(
            ConsentRecord.__table__,
            CONSENT_COLUMNS,
            [
                (subscription_ids[(email, resource_id, channel)], at(consent_at), "import")
                for email, resource_id, channel, consent_at in plan.consents
            ],
        )


def _write_suppressions(plan: Plan, stamp: Any) -> None:
    """The chunk's addresses on the suppression list, each with its history line, as
    ``statuses.apply_in_transaction`` writes them for a bounce (cause ``import``, the import's
    actor)."""
    actor = plan.actor
    _insert_many(
        Suppression.__table__,
        ("email_hash", "email", "reason", "actor", "created_at"),
        [
            (hashed, email, Cause.IMPORT.value, actor.name, stamp)
            for email, hashed in plan.suppressions
        ],
    )
    _insert_many(
        SuppressionEvent.__table__,
        ("email_hash", "email", "action", "cause", "reason", "actor", "occurred_at"),
        [
            (hashed, email, "added", Cause.IMPORT.value, actor.reason, actor.name, stamp)
            for email, hashed in plan.suppressions
        ],
    )


def _update_subscriptions(updates: dict[int, dict[str, Any]], now: datetime) -> None:
    table = Subscription.__table__
    # Rows that became subscribed also get their confirmation time; the others keep theirs.
    for with_confirmation in (True, False):
        batch = [
            {
                "subscription_id": sub_id,
                "new_status": values["status"],
                "new_until": values["suspended_until"],
                "new_resume": values["resume_status"],
                "now": now,
                **({"new_confirmed": values["confirmed_at"]} if with_confirmation else {}),
            }
            for sub_id, values in updates.items()
            if ("confirmed_at" in values) is with_confirmation
        ]
        if not batch:
            continue
        columns: dict[str, Any] = {
            "status": bindparam("new_status"),
            "suspended_until": bindparam("new_until"),
            "resume_status": bindparam("new_resume"),
            "updated_at": bindparam("now"),
            # A changed subscription's pending confirmation link confirms nothing any more.
            "confirm_nonce": null(),
        }
        times = ["new_until", "now"]
        if with_confirmation:
            columns["confirmed_at"] = bindparam("new_confirmed")
            times.append("new_confirmed")
        _executemany(
            update(table).where(table.c.id == bindparam("subscription_id")).values(**columns),
            batch,
            times,
        )


def rejection_hash(raw: str | None) -> str | None:
    """The suppression hash of a rejected row's address as written, or None when it is no
    address: what erasure looks rejections up by (the raw spelling is not the profile's)."""
    if raw is None:
        return None
    try:
        return email_hash(normalize_email(raw))
    except InvalidEmail:
        return None


def _write_rejections(job_id: int, rejections: Sequence[Rejection]) -> None:
    if rejections:
        _executemany(
            insert(ImportRejection.__table__),
            [
                {
                    "job_id": job_id,
                    "line": r.line,
                    "email": r.email,
                    "email_hash": rejection_hash(r.email),
                    "reason": r.reason[:300],
                }
                for r in rejections
            ],
        )


# --- Jobs -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Preview:
    """What the admin sees before starting an import."""

    columns: ColumnMap
    total_rows: int
    checked_rows: int
    sample: list[ImportRow]
    rejections: list[Rejection]
    rejection_counts: list[tuple[str, int]]
    would_import: int
    would_leave_unchanged: int
    # Addresses its `hardbounced` rows will put on the suppression list (rule 6).
    would_suppress: int = 0

    @property
    def complete(self) -> bool:
        """Whether every row of the file was checked against the database."""
        return self.checked_rows >= self.total_rows


def _resources(default_slug: str | None) -> tuple[list[Resource], Resource | None]:
    resources = list(queries.all_resources())
    if not default_slug:
        return resources, None
    for resource in resources:
        if resource.slug == default_slug:
            return resources, resource
    raise UnknownResource(default_slug)


def _chunks(
    path: str, parser: RowParser, limit: int | None = None
) -> Iterator[tuple[list[ImportRow], list[Rejection], int]]:
    """The file in chunks: (good rows, rows rejected before the database, rows read)."""
    _columns, lines = read_csv(path)
    rows: list[ImportRow] = []
    rejected: list[Rejection] = []
    read = 0
    for line, fields in lines:
        parsed = parser.parse(line, fields)
        (rows if isinstance(parsed, ImportRow) else rejected).append(parsed)  # type: ignore[arg-type]
        read += 1
        if read % CHUNK == 0:
            yield rows, rejected, CHUNK
            rows, rejected = [], []
        if limit is not None and read >= limit:
            break
    if rows or rejected or read % CHUNK:
        yield rows, rejected, read % CHUNK


def preview(path: str, default_slug: str | None, *, check_rows: int | None = None) -> Preview:
    """Parse the file and decide its rows against the database without writing anything: the
    column mapping, the number of rows, a sample of good rows, the rejected rows and why.
    The rules are checked on the first ``check_rows`` (IMPORT_PREVIEW_ROWS) rows."""
    if check_rows is None:
        check_rows = current_app.config["IMPORT_PREVIEW_ROWS"]
    columns = read_header(path)
    total = count_rows(path)
    resources, default = _resources(default_slug)
    parser = RowParser(columns, resources, default, expected_rows=min(total, check_rows))
    rules = Rules()
    sample: list[ImportRow] = []
    shown: list[Rejection] = []
    counts: Counter[str] = Counter()
    checked = would_import = unchanged = would_suppress = 0
    now = utcnow()
    for rows, rejected, read in _chunks(path, parser, check_rows):
        plan = plan_chunk(rows, rules, Actor(name="preview"), now)
        db.session.rollback()  # a read, ended so no snapshot is held
        checked += read
        would_import += len(plan.imported)
        unchanged += plan.unchanged
        would_suppress += len(plan.suppressions)
        every = sorted(rejected + plan.rejections, key=lambda r: r.line)
        counts.update(r.kind for r in every)
        shown.extend(every[: PREVIEW_REJECTIONS - len(shown)])
        sample.extend(plan.imported[: PREVIEW_SAMPLE - len(sample)])
    return Preview(
        columns,
        total,
        checked,
        sample,
        shown,
        counts.most_common(),
        would_import,
        unchanged,
        would_suppress,
    )


def upload_folder() -> str:
    """Where uploaded files wait for their import: under the instance folder, never public."""
    folder = os.path.join(current_app.instance_path, "imports")
    os.makedirs(folder, exist_ok=True)
    return folder


def save_upload(stream: Any, filename: str) -> str:
    """Store an uploaded file under a random name; returns its path."""
    path = os.path.join(upload_folder(), f"{uuid.uuid4().hex}.csv")
    with open(path, "wb") as out:
        while block := stream.read(1024 * 1024):
            out.write(block)
    return path


def _delete_upload(path: str | None) -> None:
    # Only files optin stored itself; the command line imports the user's own file in place.
    if path and os.path.dirname(os.path.abspath(path)) == upload_folder() and os.path.exists(path):
        os.remove(path)


def create_job(path: str, filename: str, default_slug: str | None, actor: str) -> ImportJob:
    """Record an import that waits for its start, after checking that the file is a CSV with an
    email and a status column and that the default resource exists. A bad file is deleted."""
    try:
        total = count_rows(path)
        if total == 0:
            raise ImportFileError("the file has a header row but no rows to import")
        _resources_all, default = _resources(default_slug)
    except (ImportFileError, UnknownResource):
        _delete_upload(path)
        raise
    with write_transaction() as session:
        job = ImportJob(
            resource_id=default.id if default else None,
            filename=os.path.basename(filename)[:300] or "import.csv",
            path=path,
            actor=actor,
            state=UPLOADED,
            total_rows=total,
            created_at=utcnow(),
        )
        session.add(job)
    return job


def job_or_404(job_id: int) -> ImportJob:
    """The import ``job_id``; ``NotFound`` (a 404 page in the admin) when there is none."""
    job = queries.import_job(job_id)
    if job is None:
        raise NotFound(f"no import {job_id}")
    return job


def job_preview(job: ImportJob) -> Preview:
    """The preview of an uploaded job (a read: nothing is written)."""
    if job.path is None:
        raise InvalidInput("this import's file is gone")
    slug = queries.resource_by_id(job.resource_id).slug if job.resource_id else None  # type: ignore[union-attr]
    try:
        return preview(job.path, slug)
    except OSError:
        raise InvalidInput("this import's file is gone") from None


def discard(job_id: int) -> None:
    """Drop an uploaded import that was not started, and its file."""
    with write_transaction():
        job = job_or_404(job_id)
        if job.state != UPLOADED:
            raise InvalidInput("only an import that has not started can be discarded")
        path, job.path, job.state, job.finished_at = job.path, None, DISCARDED, utcnow()
    _delete_upload(path)


def queue(job_id: int) -> bool:
    """Mark an uploaded import as queued; False when it was started already (a second click)."""
    with write_transaction():
        job = job_or_404(job_id)
        if job.state != UPLOADED:
            return False
        job.state, job.progressed_at = QUEUED, utcnow()
    return True


def start_in_background(job_id: int) -> bool:
    """Queue the import and run it in a thread of this process with its own app context (the
    embedded default). False when it had been started already."""
    if not queue(job_id):
        return False
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    thread = threading.Thread(
        target=_run_in_thread, args=(app, job_id), name=f"import-{job_id}", daemon=True
    )
    thread.start()
    return True


def _run_in_thread(app: Flask, job_id: int) -> None:
    with app.app_context():
        try:
            run_job(job_id)
        finally:
            db.session.remove()


def stalled(job: ImportJob, now: datetime, limit_seconds: int) -> bool:
    """Whether a queued or running import has stopped moving: its process ended (a restart,
    a crash) and nothing will finish it. Importing the file again does: the rows that landed
    count as unchanged the second time."""
    if job.state not in (QUEUED, RUNNING):
        return False
    last = job.progressed_at or job.started_at or job.created_at
    return (now - last).total_seconds() > limit_seconds


def run_job(
    job_id: int, *, on_progress: Callable[[int], None] | None = None, now: datetime | None = None
) -> ImportJob:
    """Run a queued (or uploaded) import to its end. Every failure is recorded on the job as
    `failed` with its error; the rows of the chunks before it stay imported."""
    with write_transaction():
        job = job_or_404(job_id)
        if job.state not in (UPLOADED, QUEUED):
            raise InvalidInput(f"this import is {job.state} already")
        job.state = RUNNING
        job.started_at = job.progressed_at = utcnow()
        path, actor_name, resource_id = job.path, job.actor, job.resource_id
    try:
        if path is None:
            raise ImportFileError("the file of this import is gone")
        _import_file(job_id, path, Actor(name=actor_name), resource_id, on_progress, now)
    except Exception as error:
        db.session.rollback()
        if not isinstance(error, ImportFileError | InvalidInput | NotFound):
            current_app.logger.exception("import %s failed", job_id)
        # The first line says what went wrong; the rest (SQL, parameters) is for the log.
        message = (str(error).strip().splitlines() or [""])[0][:500]
        _finish(job_id, FAILED, message or type(error).__name__)
    else:
        _finish(job_id, DONE, None)
    db.session.rollback()
    return job_or_404(job_id)


def _finish(job_id: int, state: str, error: str | None) -> None:
    with write_transaction():
        job = job_or_404(job_id)
        path = job.path
        job.state, job.error, job.finished_at, job.path = state, error, utcnow(), None
    # The file holds personal data and served its purpose.
    _delete_upload(path)


def _import_file(
    job_id: int,
    path: str,
    actor: Actor,
    resource_id: int | None,
    on_progress: Callable[[int], None] | None,
    now: datetime | None,
) -> None:
    default = queries.resource_by_id(resource_id) if resource_id else None
    columns = read_header(path)
    expected = job_or_404(job_id).total_rows
    parser = RowParser(columns, list(queries.all_resources()), default, expected_rows=expected)
    db.session.rollback()
    rules = Rules()
    jobs = ImportJob.__table__
    sqlite = db.session.get_bind().dialect.name == "sqlite"
    for rows, rejected, read in _chunks(path, parser):

        def work(
            rows: list[ImportRow] = rows, rejected: list[Rejection] = rejected, read: int = read
        ) -> Plan:
            chunk_now = now or utcnow()
            if sqlite:
                # A chunk touches thousands of index pages spread over the whole table: moving
                # them into the database file every 1,000 pages of log (the default) rewrote the
                # same pages again and again; this is 1.3x faster at a million rows.
                lengthen_wal_checkpoint(db.session.connection(), SQLITE_CHECKPOINT_PAGES)
            plan = plan_chunk(rows, rules, actor, chunk_now, for_update=True)
            write_plan(plan, chunk_now)
            _write_rejections(job_id, rejected + plan.rejections)
            db.session.execute(
                update(jobs)
                .where(jobs.c.id == job_id)
                .values(
                    processed_rows=jobs.c.processed_rows + read,
                    imported_rows=jobs.c.imported_rows + len(plan.imported),
                    unchanged_rows=jobs.c.unchanged_rows + plan.unchanged,
                    rejected_rows=jobs.c.rejected_rows + len(rejected) + len(plan.rejections),
                    suppressed_addresses=jobs.c.suppressed_addresses + len(plan.suppressions),
                    progressed_at=utcnow(),
                )
            )
            return plan

        in_write_transaction(work)
        if on_progress is not None:
            on_progress(read)


def import_file(
    path: str, default_slug: str | None, *, actor: str = CLI_ACTOR, on_progress: Any = None
) -> ImportJob:
    """Import a file in this process, as the command line does: create the job, run it."""
    job = create_job(os.path.abspath(path), path, default_slug, actor)
    return run_job(job.id, on_progress=on_progress)
