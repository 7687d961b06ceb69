"""The long-running outbox worker (``flask --app app outbox work``), which outlives its database
and its mail server, and which also runs the CSV imports the admin starts and sends the
outgoing webhooks (each round: due mail, then due webhook deliveries, then an import).

Imports are claimed here rather than by a worker of their own, so that an operator runs one kind
of worker process, not two: after each round of mail the worker claims one queued import (or one
whose worker died: its lease ran out) and runs it, sending a round of due mail between two of its
chunks, so that mail never waits for a long import.

A worker that exits when PostgreSQL restarts leaves every message queued until someone notices,
so the loop treats a database it cannot reach as an outage to wait out: it drops its session,
waits with backoff and tries again, forever. A mail server that refuses mail is the outbox's
business (each message is retried with its own backoff); the worker only reports it. Each outage
is logged once when it starts and once when it ends, not once per try, so a long night without a
database leaves two lines, not thousands.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

from flask import Flask, Response, g

from app import outbox
from app.database import unreachable
from app.extensions import db
from app.outages import Outage, wait_before_try
from app.services import imports
from app.services.webhooks import delivery as webhooks
from app.services.webhooks import queueing as webhook_claims

log = logging.getLogger(__name__)


class _StopBetweenRounds:
    """SIGTERM (a deploy, honcho, systemd) ends the worker between two rounds, never inside one:
    a message handed to the mail server and not yet marked sent would be sent again by the next
    worker. Outside a round (waiting, sleeping) the worker stops at once."""

    def __init__(self) -> None:
        self.requested = False
        self.in_round = False

    def __call__(self, _signum: int, _frame: FrameType | None) -> None:
        self.requested = True
        if not self.in_round:
            raise SystemExit(0)

    @contextmanager
    def round(self) -> Iterator[None]:
        self.in_round = True
        try:
            yield
        finally:
            self.in_round = False


@contextmanager
def _stopped_by_sigterm() -> Iterator[_StopBetweenRounds]:
    stop = _StopBetweenRounds()
    if threading.current_thread() is not threading.main_thread():
        yield stop  # signals reach the main thread only; a test may run the loop elsewhere
        return
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


def work(
    batch: int,
    idle: float,
    *,
    once: bool = False,
    echo: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Deliver due mail until stopped (``once``: one round, then return; SIGTERM: after the
    round in progress). Never exits on an outage: a database error waits and retries; an
    unexpected error is logged with its traceback and the loop goes on (its messages come back
    after their lease)."""
    with _stopped_by_sigterm() as stop:
        if not once:
            # From here a SIGTERM is a clean stop: the operator (and a test) may rely on it.
            echo(f"outbox worker ready: up to {batch} a round, every {idle:g} s when idle")
        _work(batch, idle, once, echo, sleep, stop)


def _work(
    batch: int,
    idle: float,
    once: bool,
    echo: Callable[[str], None],
    sleep: Callable[[float], None],
    stop: _StopBetweenRounds,
) -> None:
    database = Outage("database", log)
    mail_server = Outage("mail server", log)
    failures = 0
    while not stop.requested:
        try:
            with stop.round():
                report = outbox.deliver_due(batch)
                hooks = webhooks.deliver_due(batch)
                imported = _import_round(batch, echo, stop)
        except Exception as error:
            # The session's connection is dead or its transaction failed: start the next round
            # from a fresh one (the pool tests it before use).
            db.session.remove()
            if once:
                raise
            failures += 1
            if unreachable(error):
                database.failed(error)
            else:
                log.exception("outbox delivery failed; trying again")
            sleep(wait_before_try(failures))
            continue
        failures = 0
        database.recovered()
        if report.sent:
            mail_server.recovered()
        elif report.failed:
            mail_server.failed(report.error)
        if report.sent or report.dropped:
            echo(f"sent {report.sent}, failed {report.failed}, dropped {report.dropped}")
        if hooks.handled:
            echo(f"webhooks: delivered {hooks.delivered}, failed {hooks.failed}")
        if once:
            return
        if report.handled < batch and hooks.handled < batch and not imported:
            sleep(idle)


def _import_round(batch: int, echo: Callable[[str], None], stop: _StopBetweenRounds) -> bool:
    """Claim one import and run it; False when none was waiting. Between two chunks it sends the
    mail that fell due, and on SIGTERM it lets the import go, for the next worker to resume."""

    def between_chunks() -> bool:
        outbox.deliver_due(batch)
        webhooks.deliver_due(batch)
        return not stop.requested

    claim = imports.claim_next()
    if claim is None:
        return False
    ended = imports.run_claimed(claim, between_chunks=between_chunks)
    echo(f"import {claim.job_id}: {ended or 'left for the next worker'}")
    return True


# A retry round of the web process sends at most this many of each kind; the rest wait for the
# next round, so that one response's after-work stays short.
WEB_RETRY_BATCH = 20


def send_after_responses(app: Flask) -> None:
    """The embedded default (OUTBOX_DELIVER_INLINE, ``make run``): the web process is its own
    worker. Once a response is out it sends the mail and webhooks its request queued (claimed
    in the request's own transaction), and, at most every OUTBOX_WEB_RETRY_SECONDS, one small
    round of what is due again: no other process would try again a first try that failed."""
    every = float(app.config["OUTBOX_WEB_RETRY_SECONDS"])
    retries = bool(app.config["OUTBOX_DELIVER_INLINE"]) and every > 0
    next_round = [time.monotonic() + every]
    one_round_at_a_time = threading.Lock()

    def _in_app(work: Callable[[], object]) -> Callable[[], None]:
        def run() -> None:
            with app.app_context():
                work()

        return run

    def _retry_round() -> None:
        if not one_round_at_a_time.acquire(blocking=False):
            return  # another thread of this process is at it
        try:
            outbox.deliver_due(WEB_RETRY_BATCH)
            webhooks.deliver_due(WEB_RETRY_BATCH)
        except Exception as error:
            # The database or the mail server is still away: the next round tries again.
            log.warning("retry round of the web process failed: %s", error)
        finally:
            one_round_at_a_time.release()

    @app.after_request
    def _schedule(response: Response) -> Response:
        # One callback each, so that a failure of one leaves the others to run.
        mail = g.pop(outbox.CLAIMS, None)
        if mail:
            response.call_on_close(_in_app(lambda: outbox.deliver_claimed(mail)))
        hooks = g.pop(webhook_claims.CLAIMS, None)
        if hooks:
            response.call_on_close(_in_app(lambda: webhooks.deliver_claimed(hooks)))
        if retries and time.monotonic() >= next_round[0]:
            next_round[0] = time.monotonic() + every
            response.call_on_close(_in_app(_retry_round))
        return response
