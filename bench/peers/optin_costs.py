"""Where optin's CPU goes in each customer action, in process: every HTTP step of the action,
and the delivery of the email it causes (after the response, as OUTBOX_DELIVER_INLINE runs it,
or by the outbox worker with ``--worker``).

    .venv/bin/python bench/peers/optin_costs.py [-n 400] [--scenarios signup,confirm,...]
        [--worker] [--prefill 20000] [--index] [--mime] [--centres]

One thread, Flask's test client, a fresh SQLite file (WAL, as the server's) under
.bench-state/costs/: no HTTP server, no lock waits, so the figures are CPU only
(``time.process_time``), and they hold on a shared machine where wall-clock figures do not.
The scenarios are chained as in ``make bench-peers`` (optin.json): ``signup`` makes n new
addresses, ``confirm`` opens and presses their confirmation links (read from the emails'
context in the outbox), ``unsubscribe`` asks for a preference link by address,
``unsubscribe_link`` opens and presses their unsubscribe links, ``one_click`` sends RFC 8058's
POST to the same links. Two refused signups are measured as well: ``honeypot`` (the form with
its hidden field filled: the same answer, nothing done) and ``ratelimited`` (a POST over the
per-IP limit: 429). Each action's SQL statements are counted by kind.

``--worker``: OUTBOX_DELIVER_INLINE=false, the web only queues; the "worker" phase is
``outbox.deliver_due`` as the worker process runs it, per delivered message. ``--centres``
times the main cost centres by wrapping them (inclusive: a wrapped function that calls another
is counted in both). ``--prefill N`` first puts N sent rows in the outbox, ``--index`` adds an
index on outbox(to_address, template, created_at), ``--mime`` compares Flask-Mail's MIME
rendering with the standard library's compat32 one. Diagnostic only: it reaches into app/
internals by name, and fails loudly when they change.
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import re
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
SCENARIOS = ("signup", "confirm", "unsubscribe", "unsubscribe_link", "one_click")
REFUSED = ("honeypot", "ratelimited")
spent: collections.Counter[tuple[str, str]] = collections.Counter()
calls: collections.Counter[tuple[str, str]] = collections.Counter()
statements: collections.Counter[tuple[str, str, str]] = collections.Counter()
cpu: collections.Counter[tuple[str, str]] = collections.Counter()
# (scenario, phase) being measured; "-" while the script checks its own work
where = ["-", "-"]


def timed(module: Any, name: str, label: str) -> None:
    original = getattr(module, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            spent[(where[0], label)] += time.process_time() - start
            calls[(where[0], label)] += 1

    setattr(module, name, wrapper)


@contextmanager
def phase(scenario: str, name: str) -> Iterator[None]:
    where[:] = [scenario, name]
    start = time.process_time()
    try:
        yield
    finally:
        cpu[(scenario, name)] += time.process_time() - start
        where[:] = ["-", "-"]


def fresh_database(folder: str, worker: bool) -> str:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "optin.sqlite3")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    os.environ.update(
        DATABASE_URL="sqlite:///" + path,
        OPTIN_INSTANCE_PATH=folder,
        SECRET_KEY="bench-only-not-secret-" + "x" * 40,
        MAIL_BACKEND="discard",
        # As the server: sent when the response is closed; or left to the worker.
        OUTBOX_DELIVER_INLINE="false" if worker else "true",
        RATELIMIT_ENABLED="false",
        BASE_URL="http://127.0.0.1:8103",
        # A sent record rides in the next action's write transaction, as it does in a busy
        # server; no timer thread writes one between two actions (its CPU would count here).
        OUTBOX_RECORD_DELAY_SECONDS="600",
    )
    return path


def prefill_outbox(db_path: str, rows: int, index: bool) -> None:
    con = sqlite3.connect(db_path)
    stamp = "2026-01-01 00:00:00"
    con.executemany(
        "INSERT INTO outbox (to_address, template, context, created_at, next_attempt_at,"
        " attempts, sent_at) VALUES (?, 'confirm', '{}', ?, ?, 1, ?)",
        ((f"old{i}@example.com", stamp, stamp, stamp) for i in range(rows)),
    )
    if index:
        con.execute(
            "CREATE INDEX ix_costs_outbox_address ON outbox (to_address, template, created_at)"
        )
    con.commit()
    con.close()


def mime_comparison(app: Any) -> None:
    from email.mime.multipart import MIMEMultipart
    from email.mime.text import MIMEText
    from email.utils import formatdate, make_msgid

    from flask import render_template
    from flask_mail import Message

    context = {"confirm_url": "http://127.0.0.1:8103/confirm/" + "x" * 120}
    context.update(resource_names=["Bench"], name=None)
    with app.test_request_context():
        subject = render_template("email/confirm/subject.txt", **context)
        text = render_template("email/confirm/body.txt", **context)
        html = render_template("email/confirm/body.html", **context)

        def flask_mail() -> bytes:
            message = Message(subject=subject, recipients=["a@example.com"], body=text, html=html)
            message.sender = "optin <noreply@localhost>"
            return message.as_bytes()

        def compat32() -> bytes:
            message = MIMEMultipart("alternative")
            message["Subject"] = subject
            message["From"] = "optin <noreply@localhost>"
            message["To"] = "a@example.com"
            message["Date"] = formatdate()
            message["Message-ID"] = make_msgid()
            message.attach(MIMEText(text, "plain", "utf-8"))
            message.attach(MIMEText(html, "html", "utf-8"))
            return message.as_bytes()

        choices: list[tuple[str, Callable[[], bytes]]] = [
            ("Flask-Mail Message.as_bytes (mailer.py)", flask_mail),
            ("email.mime + compat32, same parts", compat32),
        ]
        print("MIME rendering of one confirmation email:")
        for label, build in choices:
            for _ in range(200):
                build()
            start, rounds = time.process_time(), 2000
            for _ in range(rounds):
                size = len(build())
            per = 1000 * (time.process_time() - start) / rounds
            print(f"  {per:6.3f} ms CPU  {label} ({size} bytes)")


def wrap_cost_centres() -> None:
    import flask_wtf.csrf
    import sqlalchemy.orm

    import app.forms
    import app.outbox
    import app.queries
    import app.services.statuses
    import app.services.subscriptions
    import app.views.public

    for name in (
        "resource_by_slug",
        "resource_by_id",
        "current_consent_text",
        "emails_sent_to_since",
        "profile_by_email",
        "profile_by_id",
        "suppression_of",
        "subscription_of",
        "subscriptions_of_profile",
    ):
        timed(app.queries, name, f"queries.{name}")
    timed(app.services.statuses, "change_status", "statuses.change_status")
    timed(app.views.public, "render_template", "render_template (the page)")
    timed(app.outbox, "render", "outbox.render (3 templates, Message object)")
    timed(app.outbox, "_rendered", "outbox._rendered (the 3 templates alone)")
    timed(app.outbox, "deliver", "mailer.deliver (discard: MIME as_bytes)")
    timed(app.outbox, "recipient_of", "outbox.recipient_of (send-time check's read)")
    timed(app.outbox, "_write_outcome", "outbox._write_outcome (the mark, a transaction)")
    timed(app.outbox, "_claim", "outbox._claim (the worker's claim, a transaction)")
    timed(flask_wtf.csrf, "generate_csrf", "flask_wtf generate_csrf")
    timed(flask_wtf.csrf, "validate_csrf", "flask_wtf validate_csrf")
    timed(sqlalchemy.orm.Session, "commit", "Session.commit (flush + COMMIT)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=400, help="ops measured a scenario (after warm-up)")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS + REFUSED),
        help="comma-separated, chained in this order: " + ", ".join(SCENARIOS + REFUSED),
    )
    parser.add_argument("--worker", action="store_true", help="OUTBOX_DELIVER_INLINE=false")
    parser.add_argument("--centres", action="store_true", help="time the main cost centres")
    parser.add_argument("--prefill", type=int, default=0, help="sent outbox rows put in first")
    parser.add_argument("--index", action="store_true", help="index outbox(to_address, ...)")
    parser.add_argument("--mime", action="store_true", help="also compare MIME renderers")
    args = parser.parse_args()
    chosen = [s for s in args.scenarios.split(",") if s]
    unknown = set(chosen) - set(SCENARIOS + REFUSED)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    db_path = fresh_database(os.path.join(ROOT, ".bench-state", "costs"), args.worker)

    import sqlalchemy
    from sqlalchemy import event, select

    from app import create_app, outbox
    from app.extensions import db
    from app.links import links_for
    from app.models import OutboxMessage, Profile
    from app.services.resources import create_resource

    flask_app = create_app()
    with flask_app.app_context():
        db.create_all()
        create_resource("bench", "Bench")
        engine = db.engine
    if args.prefill or args.index:
        prefill_outbox(db_path, args.prefill, args.index)
    if args.centres:
        wrap_cost_centres()

    @event.listens_for(engine, "before_cursor_execute")
    def _count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements[(where[0], where[1], statement.split()[0].upper())] += 1

    @event.listens_for(engine, "commit")
    def _count_commit(_conn: Any) -> None:
        statements[(where[0], where[1], "COMMIT")] += 1

    def sent_count() -> int:
        """Messages sent: recorded in the outbox, or sent with their record still waiting for
        the next write transaction (outbox.SentRecords)."""
        with flask_app.app_context():
            query = "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL"
            recorded = int(db.session.execute(sqlalchemy.text(query)).scalar_one())
            waiting = outbox.sent_records()
            return recorded + (len(waiting) if waiting is not None else 0)

    def path_of(url: str) -> str:
        return urlsplit(url).path

    def confirm_path(email: str) -> str:
        with flask_app.app_context():
            query = (
                select(OutboxMessage.context)
                .where(OutboxMessage.to_address == email, OutboxMessage.template == "confirm")
                .order_by(OutboxMessage.id.desc())
                .limit(1)
            )
            return path_of(db.session.execute(query).scalar_one()["confirm_url"])

    def unsubscribe_path(email: str) -> str:
        with flask_app.app_context():
            profile = db.session.execute(select(Profile).where(Profile.email == email)).scalar_one()
            resource_id = db.session.execute(sqlalchemy.text("SELECT id FROM resources")).scalar()
            return path_of(links_for(profile.id, profile.link_key, resource_id).unsubscribe_url)

    def deliver(scenario: str, answer: Any, emails: int) -> None:
        """The email the action queued: after the response (inline), or by the worker."""
        sent_before = sent_count()
        if args.worker:
            answer.close()
            with phase(scenario, "worker: deliver_due"), flask_app.app_context():
                report = outbox.deliver_due()
            assert report.sent == emails, report
        else:
            with phase(scenario, "deliver (after the response)"):
                answer.close()  # runs the delivery the view scheduled for after the response
        assert sent_count() == sent_before + emails, f"{scenario}: the email was not sent"

    def signup(email: str, scenario: str = "signup") -> None:
        client = flask_app.test_client()
        with phase(scenario, "GET /subscribe/bench"):
            token = CSRF.search(client.get("/subscribe/bench").text).group(1)  # type: ignore[union-attr]
        form = {"email": email, "name": "", "website": "", "csrf_token": token}
        with phase(scenario, "POST /subscribe/bench"):
            answer = client.post("/subscribe/bench", data=form)
        assert "Check your inbox" in answer.text, answer.status
        deliver(scenario, answer, 1)

    def confirm(email: str, scenario: str = "confirm") -> None:
        path = confirm_path(email)
        client = flask_app.test_client()
        with phase(scenario, "GET /confirm/<token>"):
            page = client.get(path).text
        token = CSRF.search(page).group(1)  # type: ignore[union-attr]
        with phase(scenario, "POST /confirm/<token>"):
            answer = client.post(path, data={"csrf_token": token})
        assert "you are subscribed" in answer.text, answer.status
        deliver(scenario, answer, 1)

    def unsubscribe(email: str, scenario: str = "unsubscribe") -> None:
        client = flask_app.test_client()
        with phase(scenario, "GET /preferences"):
            token = CSRF.search(client.get("/preferences").text).group(1)  # type: ignore[union-attr]
        with phase(scenario, "POST /preferences"):
            answer = client.post("/preferences", data={"email": email, "csrf_token": token})
        assert "a link to its preferences is on its way" in answer.text, answer.status
        deliver(scenario, answer, 1)

    def unsubscribe_link(email: str, scenario: str = "unsubscribe_link") -> None:
        path = unsubscribe_path(email)
        client = flask_app.test_client()
        with phase(scenario, "GET /unsubscribe/<token>"):
            token = CSRF.search(client.get(path).text).group(1)  # type: ignore[union-attr]
        with phase(scenario, "POST /unsubscribe/<token>"):
            answer = client.post(path, data={"scope": "resource", "csrf_token": token})
        assert "You are unsubscribed" in answer.text, answer.status
        answer.close()

    def one_click(email: str, scenario: str = "one_click") -> None:
        path = unsubscribe_path(email)
        client = flask_app.test_client()
        with phase(scenario, "POST one-click"):
            answer = client.post(path, data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code == 200 and "unsubscribed" in answer.text, answer.status
        answer.close()

    def honeypot(email: str, scenario: str = "honeypot") -> None:
        client = flask_app.test_client()
        token = CSRF.search(client.get("/subscribe/bench").text).group(1)  # type: ignore[union-attr]
        form = {"email": email, "name": "", "website": "http://spam.example", "csrf_token": token}
        with phase(scenario, "POST /subscribe/bench (honeypot filled)"):
            answer = client.post("/subscribe/bench", data=form)
            answer.close()
        assert "Check your inbox" in answer.text, answer.status

    limited: list[Any] = []

    def ratelimited(email: str, scenario: str = "ratelimited") -> None:
        if not limited:
            # Last of all: the limiter is one object, and this turns it on for every app.
            limited_app = create_app({"RATELIMIT_ENABLED": True, "SIGNUP_LIMIT_PER_IP": "1/day"})
            client = limited_app.test_client()
            page = client.get("/subscribe/bench").text
            limited[:] = [client, CSRF.search(page).group(1)]  # type: ignore[union-attr]
            client.post(
                "/subscribe/bench", data={"email": "a@example.com", "csrf_token": limited[1]}
            )
        client, token = limited
        form = {"email": email, "name": "", "website": "", "csrf_token": token}
        with phase(scenario, "POST /subscribe/bench (over the limit)"):
            answer = client.post("/subscribe/bench", data=form)
            answer.close()
        assert answer.status_code == 429, answer.status

    actions = {
        "signup": signup,
        "confirm": confirm,
        "unsubscribe": unsubscribe,
        "unsubscribe_link": unsubscribe_link,
        "one_click": one_click,
        "honeypot": honeypot,
        "ratelimited": ratelimited,
    }
    warm = [f"warm{i}@example.com" for i in range(50)]
    emails = [f"u{i}@example.com" for i in range(args.n)]
    needs_signup = bool(set(chosen) - {"honeypot", "ratelimited"})
    for scenario in SCENARIOS + REFUSED:
        if scenario not in chosen and not (scenario == "signup" and needs_signup):
            continue
        if scenario in chosen or scenario == "signup":
            for email in warm:
                actions[scenario](email, "-")
            for email in emails:
                actions[scenario](email)
    spent.update({k: 0 for k in spent if k[0] == "-"})

    n = args.n
    mode = "the outbox worker delivers" if args.worker else "delivered inline after the response"
    print(
        f"optin in process, CPU per op (n={n} a scenario, {mode}; outbox prefilled with "
        f"{args.prefill} rows{', indexed on to_address' if args.index else ''}):"
    )
    totals: dict[str, float] = {}
    for scenario in SCENARIOS + REFUSED:
        phases = [(p, s) for (sc, p), s in cpu.items() if sc == scenario]
        if not phases:
            continue
        totals[scenario] = 1000 * sum(s for _p, s in phases) / n
        print(f"{scenario}: {totals[scenario]:.2f} ms")
        for name, seconds in phases:
            kinds = {
                k: v / n for (sc, p, k), v in statements.items() if (sc, p) == (scenario, name)
            }
            listed = ", ".join(f"{k} {v:g}" for k, v in sorted(kinds.items())) or "none"
            print(f"  {1000 * seconds / n:6.2f} ms  {name:42s} SQL: {listed}")
    if "signup" in totals:
        for refused in REFUSED:
            if refused in totals:
                print(f"{refused} / signup: {totals[refused] / totals['signup']:.2f}")
    if args.centres:
        for scenario in totals:
            print(f"cost centres of {scenario} (inclusive CPU per op, calls per op):")
            for (sc, label), seconds in spent.most_common():
                if sc == scenario and seconds:
                    print(
                        f"  {1000 * seconds / n:6.2f} ms  {calls[(sc, label)] / n:4.1f}x  {label}"
                    )
    if args.mime:
        mime_comparison(flask_app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
