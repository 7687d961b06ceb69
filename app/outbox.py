"""The one door for email (STYLE §4).

``enqueue`` writes a message into the outbox table in the transaction of the change that caused
it, so a status change and its email commit together or not at all. ``deliver_due`` sends what is
due: it claims rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so any number of workers can run;
SQLite serialises writers anyway), renders each message from ``templates/email/<name>/``,
re-checks ``can_send`` for messages that need consent, adds the List-Unsubscribe, List-Id and
Feedback-ID headers and a Message-ID that every retry repeats, hands it to the mailer, and on
failure tries again later with backoff. A mail server that is down delays mail; it never loses
it. Delivery reads and writes through a Core connection of its own, one for each round (see
``deliver_due``); ``enqueue`` writes in the caller's ORM session, whose transaction it is part of.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import ChainMap
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from flask import Flask, current_app, g, has_app_context
from flask_babel import force_locale
from jinja2 import Environment, Template
from sqlalchemy import bindparam, event, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, SessionTransaction

from app import queries
from app.database import WRITE_OPTION, unreachable, utcnow
from app.extensions import db
from app.i18n import DEFAULT, supported
from app.kept_emails import Email, kept_email
from app.links import links_for
from app.mailer import MailerError, compose, deliver, list_id, message_id, sender_domain
from app.models import OutboxMessage
from app.outages import Outage, wait_before_try
from app.queries.outbox import Listed, Recipient, recipient_of
from app.status import OUTBOX_CHANNEL, can_send

# Transactional messages go to whoever asked for them; every other message needs can_send.
TRANSACTIONAL = frozenset({"confirm", "preferences_link", "data_link"})
# The confirmation itself carries no unsubscribe headers (there is nothing to unsubscribe from);
# nor does the data link, an answer to a request that is about the data, not about mail.
WITHOUT_UNSUBSCRIBE = frozenset({"confirm", "data_link"})
# The default lease (OUTBOX_LEASE_SECONDS): how long a claimed message is left to the worker
# that claimed it before any other may send it (its claimer is then taken for dead).
LEASE = timedelta(minutes=5)
# The List-Id label of messages about no one resource (a resource's is "<slug>.lists", and a
# slug has no dot, so the two never meet).
ORGANISATION_LIST = "account"
FIRST_RETRY = timedelta(seconds=30)
LONGEST_WAIT = timedelta(hours=1)


def enqueue(
    to: str,
    template: str,
    *,
    profile_id: int | None,
    resource_id: int | None = None,
    **context: Any,
) -> int:
    """Queue an email in the current transaction; it is sent after the commit. Returns its id.

    With OUTBOX_DELIVER_INLINE the web process claims the message for itself in this same
    transaction, so that sending it after the response needs no second write transaction; if the
    process dies first, the claim's lease runs out and any worker sends it. The row is written
    with one Core statement that returns its id: an entity's add and flush cost several times
    that, for a row nothing in the transaction reads again."""
    now = utcnow()
    inline = current_app.config["OUTBOX_DELIVER_INLINE"]
    held_until = now + lease() if inline else None
    row = {
        "to_address": to,
        "template": template,
        "context": context,
        "profile_id": profile_id,
        "resource_id": resource_id,
        "created_at": now,
        "next_attempt_at": now,
        "attempts": 0,
        "claimed_until": held_until,
    }
    session = db.session()
    queued: int = session.execute(_INSERT_MESSAGE, row).scalar_one()
    if inline:
        # This exact message is sent by the web process after the commit.
        claim = Claimed(
            queued, to, template, dict(context), profile_id, resource_id, 0, now, held_until
        )
        session.info.setdefault(_PENDING, []).append(claim)
    return queued


_INSERT_MESSAGE = insert(OutboxMessage.__table__).returning(OutboxMessage.__table__.c.id)


# Claims of the transaction under way (Session.info), handed to the request once it commits.
_PENDING = "optin_outbox_pending_claims"
# The request's committed claims (on ``g``), sent once its response is out (worker.py).
CLAIMS = "outbox_claims"


# The sent records that ride in the transaction under way (Session.info): see SentRecords.
_RIDING = "optin_outbox_riding_records"


@event.listens_for(Session, "after_begin")
def _records_ride_along(
    session: Session, _transaction: SessionTransaction, connection: Connection
) -> None:
    """A write transaction of this process begins with the sent records that wait (SentRecords):
    it holds the write lock already, so they cost an UPDATE each, not a transaction each."""
    if not has_app_context() or not connection.get_execution_options().get(WRITE_OPTION):
        return
    waiting: SentRecords | None = current_app.extensions.get(_SENT_RECORDS)
    if waiting is None:
        return
    records = waiting.take()
    if records:
        try:
            connection.execute(_HELD_MARK, records)
        except BaseException:
            waiting.give_back(records)  # the transaction does not begin: they wait again
            raise
        session.info[_RIDING] = (waiting, records)


@event.listens_for(Session, "after_commit")
def _claims_committed(session: Session) -> None:
    """The messages this transaction queued are in the database now: this request may send them
    after its response, from what it holds, without reading them back. The sent records that
    rode along are written."""
    session.info.pop(_RIDING, None)
    claims = session.info.pop(_PENDING, None)
    if claims:
        g.setdefault(CLAIMS, []).extend(claims)


@event.listens_for(Session, "after_transaction_end")
def _claims_dropped(session: Session, transaction: SessionTransaction) -> None:
    """A transaction that ended without its commit (a rollback, a lost race that runs the service
    again) queued nothing: its ids may even be another request's now (SQLite reuses the highest
    rowid after a rollback), so its claims are forgotten. The sent records that rode along
    were not written: they wait again, for the next write transaction or the timer."""
    if transaction.parent is None:
        session.info.pop(_PENDING, None)
        riding = session.info.pop(_RIDING, None)
        if riding is not None:
            waiting, records = riding
            waiting.give_back(records)


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    dropped: int = 0
    # The mail server's last refusal in this round, for the worker's outage log.
    error: str | None = None

    @property
    def handled(self) -> int:
        return self.sent + self.failed + self.dropped


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, ... up to an hour between tries; tries never stop."""
    # A shift, not 2 ** n: the type checker cannot tell that a power with an int exponent is int.
    return min(FIRST_RETRY * (1 << max(attempts - 1, 0)), LONGEST_WAIT)


@dataclass(frozen=True)
class Claimed:
    """What a worker needs of a claimed row, copied out so that no reload follows the commit."""

    id: int
    to_address: str
    template: str
    context: dict[str, Any]
    profile_id: int | None
    resource_id: int | None
    attempts: int
    created_at: datetime  # with the id, the key of the message's stable Message-ID
    claimed_until: datetime | None  # the claim's end: the claim this copy was made under


_outbox = OutboxMessage.__table__


def lease() -> timedelta:
    """How long a claim holds, from OUTBOX_LEASE_SECONDS."""
    return timedelta(seconds=current_app.config["OUTBOX_LEASE_SECONDS"])


def _claim(
    limit: int,
    now: datetime,
    only: Collection[int] | None = None,
    line: Connection | None = None,
) -> list[Claimed]:
    """Claim up to ``limit`` due messages for this worker, oldest first, and return them: one
    ``UPDATE ... RETURNING`` in Core, whose subquery locks the rows it picks and skips those
    another worker holds (``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite lets one writer in).
    ``line``: the delivery's connection, else one of its own."""
    if line is None:
        with _delivery_connection() as own:
            return _claim(limit, now, only, own)
    due = (
        select(_outbox.c.id)
        .where(
            _outbox.c.sent_at.is_(None),
            _outbox.c.next_attempt_at <= now,
            or_(_outbox.c.claimed_until.is_(None), _outbox.c.claimed_until < now),
        )
        .order_by(_outbox.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if only is not None:
        due = due.where(_outbox.c.id.in_(list(only)))
    claim = (
        update(_outbox)
        .where(_outbox.c.id.in_(due.scalar_subquery()))
        .values(claimed_until=now + lease())
        # Claimed's fields are named as the columns they copy.
        .returning(*(_outbox.c[field.name] for field in fields(Claimed)))
    )
    with _transaction(line, write=True):
        rows = line.execute(claim).all()
    # RETURNING names no order: the batch goes out oldest first, as it was picked.
    return sorted((Claimed(*row) for row in rows), key=lambda message: message.id)


def render(message: OutboxMessage | Claimed, recipient: Recipient | None = None) -> EmailMessage:
    """The email of an outbox row: subject, a text and an HTML part, and its headers.
    ``recipient``: its profile as the send-time check read it (else read here, if its links
    need it)."""
    context: dict[str, Any] = dict(message.context)
    # The profile whose unsubscribe links the message carries, if it carries any.
    linked = message.profile_id if message.template not in WITHOUT_UNSUBSCRIBE else None
    if recipient is None and linked is not None:
        recipient = recipient_of(linked, message.resource_id, OUTBOX_CHANNEL.value)
    headers = _list_headers(message.template, _listed(message, recipient))
    if linked is not None and recipient is not None:  # links carry the key, read at send time
        links = links_for(linked, recipient.link_key, message.resource_id)
        context.setdefault("unsubscribe_url", links.unsubscribe_url)
        context.setdefault("preferences_url", links.preferences_url)
        headers["List-Unsubscribe"] = links.list_unsubscribe
        headers["List-Unsubscribe-Post"] = links.list_unsubscribe_post
    subject, body, html = _rendered(message.template, context)
    return compose(
        to=message.to_address,
        # A subject is one line, whatever a resource's name contains.
        subject=" ".join(subject.split()),
        text=body,
        html=html,
        # The row and its time (SQLite gives a deleted row's id to the next row): every retry of
        # this row carries the same id, and no other message ever does.
        message_id=message_id(f"outbox:{message.id}:{message.created_at.isoformat()}"),
        headers=headers,
    )


def _rendered(template: str, context: dict[str, Any]) -> Email:
    """The subject, text and HTML of an email, from the copy this process keeps of it with this
    recipient's links and name put in (app/kept_emails.py)."""
    return kept_email(template, context, _rendered_afresh)


def _rendered_afresh(template: str, context: dict[str, Any]) -> Email:
    """The subject, text and HTML of an email, in the customer's language where optin has a
    translation (SPEC §2). Rendered by the app's Jinja environment (its globals: ``config``,
    ``_``) without Flask's ``render_template``, whose context processors and signals serve the
    pages: an email template sees its context and ``current_locale``, nothing of a request."""
    folder = f"email/{template}"
    environment = current_app.jinja_env
    locale = supported(context.get("locale")) or DEFAULT
    with force_locale(locale):
        subject, body, html = (
            _email_template(environment, f"{folder}/{name}").render(context, current_locale=locale)
            for name in ("subject.txt", "body.txt", "body.html")
        )
    return Email(subject, body, html)


def _email_template(environment: Environment, name: str) -> Template:
    """The environment's template ``name`` (loaded, cached and reloaded by Jinja as ever), with
    its globals in one plain dict. Jinja keeps a template's globals as a ChainMap over the
    environment's, and each render walks that chain twice, key by key, to copy it into the new
    context, which cost more than most of an email's template code. The environment's globals
    are all set by ``create_app``, before any email is rendered, so the flat copy misses none of
    them (a template Jinja reloads comes with a new ChainMap, flattened in its turn)."""
    template = environment.get_template(name)
    if isinstance(template.globals, ChainMap):
        template.globals = dict(template.globals)
    return template


def _listed(message: OutboxMessage | Claimed, recipient: Recipient | None) -> Listed | None:
    """The resource a message is about, as its List-Id names it: read with its profile at send
    time; else (a message to no profile) the process's copy, as the pages use it (an edit of
    its name reaches the List-Id within CATALOGUE_CACHE_SECONDS), or the row when the resource
    is newer than the copy."""
    if recipient is not None:
        return recipient.resource
    if message.resource_id is None:
        return None
    resource = queries.cached_resource_by_id(message.resource_id) or queries.resource_by_id(
        message.resource_id
    )
    return Listed(resource.slug, resource.name) if resource is not None else None


def _list_headers(template: str, resource: Listed | None) -> dict[str, str]:
    """The headers that name what a message belongs to, for filters and mailbox providers.

    ``List-Id`` (RFC 2919) names the resource, or the organisation for a message about no one
    resource (a preference link, a confirmation of several); ``Feedback-ID`` lets Gmail's
    feedback loop report complaints per stream, resource and template, with the sender's domain
    as sender id and nothing of the recipient; ``Auto-Submitted: auto-generated`` (RFC 3834) on
    every message, since every one is made by a program, not a person: no out-of-office
    responder answers it, and nobody reads such answers at the sender's address."""
    config = current_app.config
    if resource is not None:
        label, name = f"{resource.slug}.lists", resource.name
    else:
        label, name = ORGANISATION_LIST, config["ORGANIZATION_NAME"]
    stream = "transactional" if template in TRANSACTIONAL else "subscription"
    return {
        "List-Id": list_id(label, name),
        "Auto-Submitted": "auto-generated",
        "Feedback-ID": f"{stream}:{label.partition('.')[0]}:{template}:{sender_domain()}",
    }


def _why_not(message: Claimed, recipient: Recipient | None, now: datetime) -> str | None:
    """Why a message may no longer be sent, checked at send time (None: it may). ``recipient``:
    the message's profile as it is now."""
    if message.profile_id is None:
        return None
    # Asked first, for every message: erasure deletes the rows it finds, but a worker may have
    # claimed one just before, and mail to an erased person must not go out.
    if recipient is None:
        return "profile_erased"
    if message.template in TRANSACTIONAL:
        return None
    decision = can_send(
        recipient.state,
        recipient.subscription,
        suppressed=recipient.suppressed,
        resource_named=message.resource_id is not None,
        now=now,
    )
    return None if decision.allowed else decision.reason


@dataclass(frozen=True)
class Attempt:
    message: Claimed
    dropped_because: str | None = None
    error: str | None = None


def _attempt(message: Claimed, now: datetime, line: Connection | None = None) -> Attempt:
    """Check, render and send one message (``line``: the delivery's connection, else one of its
    own)."""
    if line is None:
        with _delivery_connection() as own:
            return _attempt(message, now, own)
    # One statement reads all that the check and the message's links need, in a read
    # transaction of its own that ends before the mail server is called, not after it answers:
    # no snapshot (PostgreSQL: no connection idle in a transaction) is held while it talks.
    recipient = None
    if message.profile_id is not None:
        with _transaction(line, write=False):
            recipient = recipient_of(
                message.profile_id, message.resource_id, OUTBOX_CHANNEL.value, line
            )
    reason = _why_not(message, recipient, now)
    if reason is not None:
        return Attempt(message, dropped_because=reason)
    email = render(message, recipient)
    # Nothing above uses the ORM session but a read of a resource the process had no copy of
    # (a message to no profile): that read's transaction, too, ends before the mail server is
    # called.
    _end_session_transaction()
    try:
        deliver(email)
    except MailerError as failure:
        return Attempt(message, error=str(failure))
    return Attempt(message)


def _record(
    attempt: Attempt,
    now: datetime,
    report: DeliveryReport,
    line: Connection,
    waiting: SentRecords | None = None,
) -> None:
    """Write what happened to one attempt in its own short transaction, releasing its claim.

    One message at a time, as soon as the mail server has answered: a worker killed, or a
    database that goes away, after the server accepted a message can then send again only
    that one message, never the ones before it in the batch. ``waiting``: a message the mail
    server accepted is recorded there instead, to be written with the process's next write
    (the web process after its response, see SentRecords)."""
    tries = attempt.message.attempts + 1
    values: dict[str, Any] = {"claimed_until": None, "attempts": tries}
    if attempt.dropped_because is not None:
        values |= {"sent_at": now, "dropped_reason": attempt.dropped_because}
    elif attempt.error is None:
        values |= {"sent_at": utcnow()}
    else:
        values |= {"last_error": attempt.error, "next_attempt_at": utcnow() + backoff(tries)}
    accepted = attempt.dropped_because is None and attempt.error is None
    held_until = attempt.message.claimed_until
    if accepted and waiting is not None and held_until is not None:
        waiting.add({**values, "outbox_id": attempt.message.id, "held_until": held_until})
    else:
        _write_outcome(line, attempt.message.id, values, patient=accepted)
    if attempt.dropped_because is not None:
        report.dropped += 1
    elif attempt.error is None:
        report.sent += 1
    else:
        report.failed += 1
        report.error = attempt.error


# Core on the table, built once: the SET clause is the keys of the values it is run with.
_MARK = update(_outbox).where(_outbox.c.id == bindparam("outbox_id"))
# A record written later (SentRecords) is written only under the claim it was sent under: were
# that claim's lease over and the message claimed again, the new claimer's record stands.
_HELD_MARK = _MARK.where(_outbox.c.claimed_until == bindparam("held_until"))


@contextmanager
def _transaction(line: Connection, *, write: bool) -> Iterator[Connection]:
    """A transaction on the delivery's own connection: a write one begins as a service's does
    (``write_transaction``: SQLite's write lock first), a read one as a page's."""
    line.execution_options(**{WRITE_OPTION: write})
    with line.begin():
        yield line


def _write_outcome(
    line: Connection, message_id: int, values: dict[str, Any], *, patient: bool
) -> None:
    """Write one message's outcome. ``patient``: the mail server has accepted the message, so the
    write waits out a database that went away (a restart takes a second or two), for up to half
    the lease: given up, the message would be claimed again once its lease ran out and sent a
    second time. Anything else, or an outage longer than that, is raised as before."""
    _write_marks(line, _MARK, [{**values, "outbox_id": message_id}], patient=patient)


def _write_marks(
    line: Connection, statement: Any, marks: list[dict[str, Any]], *, patient: bool
) -> None:
    """Run ``statement`` with each of ``marks`` in one write transaction (``_write_outcome``)."""
    deadline = time.monotonic() + (lease().total_seconds() / 2 if patient else 0)
    wait = 0.2
    while True:
        try:
            with _transaction(line, write=True):
                line.execute(statement, marks)
            return
        except (OperationalError, InterfaceError, DBAPIError) as error:
            if not unreachable(error) or time.monotonic() + wait > deadline:
                raise
            # The next try takes a fresh connection from the pool, tested by pre-ping.
            line.invalidate()
            time.sleep(wait)
            wait = min(wait * 2, 2.0)


@contextmanager
def _delivery_connection() -> Iterator[Connection]:
    """The Core connection a delivery reads and writes on, once the ORM session's transaction
    its caller may have left open has ended."""
    _end_session_transaction()
    with db.engine.connect() as line:
        yield line


def _end_session_transaction() -> None:
    """End the ORM session's transaction, if its caller left one open (``write_transaction``
    does the same): the delivery reads and writes on a connection of its own, and on SQLite a
    write transaction held by the session would make it wait for itself, a read one would hold
    a snapshot while the mail server talks. The session is not made when nothing made it."""
    if db.session.registry.has():
        session = db.session()
        if session.in_transaction():
            session.commit()


def _send_each(
    claimed: list[Claimed],
    now: datetime,
    report: DeliveryReport,
    line: Connection,
    waiting: SentRecords | None = None,
) -> None:
    """Attempt and record the claimed messages one by one. Once the mail server has refused one,
    the rest of the batch waits with the same error instead of knocking at a server that is down
    (and, when it hangs, outliving the lease of the messages still in hand)."""
    outage: str | None = None
    for message in claimed:
        if outage is not None:
            attempt = Attempt(message, error=outage)
        else:
            attempt = _attempt(message, now, line)
            outage = attempt.error
        _record(attempt, now, report, line, waiting)


def deliver_due(
    limit: int = 100, *, now: datetime | None = None, only: Collection[int] | None = None
) -> DeliveryReport:
    """Send the messages that are due (``only``: just these ones), at most ``limit`` of them.
    Safe to run in any number of processes at once: each message is claimed by one of them. A
    crash between the mail server's acceptance of a message and its record sends that one
    message again after the claim's lease: mail is never lost, at the price of a rare duplicate
    of the message that was in flight.

    The claim, the send-time reads and the marks go through one Core connection checked out for
    the round: each is one statement, which the ORM session's transactions (and a pool
    checkout, with its pre-ping, for each) cost several times over. The connection is idle, in
    no transaction, while the mail server is called."""
    now = now or utcnow()
    report = DeliveryReport()
    with _delivery_connection() as line:
        _send_each(_claim(limit, now, only, line), now, report, line)
    return report


def deliver_claimed(claims: list[Claimed]) -> DeliveryReport:
    """Send the messages a request queued and claimed (``enqueue`` with inline delivery), from
    the copies its committed transaction handed over: no read of the rows, on one connection as
    ``deliver_due``'s. What the mail server accepted is recorded by SentRecords; a refusal or a
    drop is written at once."""
    now = utcnow()
    report = DeliveryReport()
    with _delivery_connection() as line:
        _send_each(claims, now, report, line, sent_records())
    return report


# The app's SentRecords (app.extensions), made on first use.
_SENT_RECORDS = "optin_outbox_sent_records"
log = logging.getLogger(__name__)


def sent_records() -> SentRecords | None:
    """This app's SentRecords; None when OUTBOX_RECORD_DELAY_SECONDS is 0 (each record is
    written at once, in a transaction of its own)."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    waiting: SentRecords | None = app.extensions.get(_SENT_RECORDS)
    if waiting is None:
        delay = float(app.config["OUTBOX_RECORD_DELAY_SECONDS"])
        if delay <= 0:
            return None
        waiting = app.extensions.setdefault(_SENT_RECORDS, SentRecords(app, delay))
    return waiting


class SentRecords:
    """The records ("sent") of the mails a web process sent after its responses, until they are
    written: in the process's next write transaction, which begins with them (a busy process
    begins one within milliseconds), or after ``delay`` seconds without one, in a transaction
    of their own that a timer thread writes. Written one transaction each, they took SQLite's
    single write lock a second time for every signup, confirmation and preference link: with
    two web workers, a third of those waited for the lock, and the workers sat idle.

    Until its record is written a message stays claimed by this process (its lease), so no
    worker sends it again. A process killed in that moment sends again, after the lease, the
    mails of its last fraction of a second, where a kill between the mail server's answer and
    the record always could send one again. A record that cannot be written (the database is
    away) waits and is tried again, never dropped, with the waits and the two log lines of an
    outage (app/outages.py); at exit the process writes what waits."""

    def __init__(self, app: Flask, delay: float) -> None:
        self._app = app
        self._delay = delay
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []
        self._timer: threading.Timer | None = None
        self._failures = 0
        self._outage = Outage("the database, for the records of sent mail,", log)
        _EVERY_SENT_RECORDS.add(self)

    def __len__(self) -> int:
        return len(self._records)

    def add(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._records.append(record)
            self._arm()

    def take(self) -> list[dict[str, Any]]:
        """The records that wait, now the caller's to write (or to give back)."""
        with self._lock:
            taken, self._records = self._records, []
        return taken

    def give_back(self, records: list[dict[str, Any]], after: float | None = None) -> None:
        """Records taken but not written: they wait again, before any added since (``after``:
        the seconds before the timer tries them, when no write transaction takes them first)."""
        with self._lock:
            self._records[:0] = records
            self._arm(after)

    def _arm(self, after: float | None = None) -> None:
        # Under self._lock: one timer at a time, armed while records wait.
        if self._timer is None and self._records:
            self._timer = threading.Timer(after or self._delay, self._when_due)
            self._timer.daemon = True
            self._timer.start()

    def _when_due(self) -> None:
        with self._lock:
            self._timer = None
        self.write()

    def write(self) -> None:
        """Write the records that wait, in one transaction of their own."""
        records = self.take()
        if not records:
            return
        try:
            with self._app.app_context(), _delivery_connection() as line:
                _write_marks(line, _HELD_MARK, records, patient=True)
        except Exception as error:  # they wait, and the timer tries again, later each time
            self._failures += 1
            self._outage.failed(error)
            self.give_back(records, after=wait_before_try(self._failures))
            return
        self._failures = 0
        self._outage.recovered()


_EVERY_SENT_RECORDS: weakref.WeakSet[SentRecords] = weakref.WeakSet()


@atexit.register
def _write_sent_records_at_exit() -> None:
    for waiting in list(_EVERY_SENT_RECORDS):
        waiting.write()
