"""Where optin's CPU goes in one signup op, in process: the GET of the form, the POST, and the
delivery of the confirmation email that OUTBOX_DELIVER_INLINE runs after the response.

    .bench-state/.venv-optin/bin/python bench/peers/optin_costs.py [-n 500] [--prefill 20000]
        [--index] [--mime]

One thread, Flask's test client, a fresh SQLite file (WAL, as the server's) under
.bench-state/costs/: no HTTP server, no lock waits, so the figures are CPU only. It counts the SQL
statements of each phase and times the main cost centres by wrapping them (inclusive times: a
wrapped function that calls another is counted in both). ``--prefill N`` first puts N sent rows in
the outbox (a database that has sent mail before), ``--index`` adds an index on
outbox(to_address, template, created_at), ``--mime`` compares Flask-Mail's MIME rendering with the
standard library's compat32 one for the same message. Diagnostic only: it reaches into app/
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
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
spent: collections.Counter[str] = collections.Counter()
calls: collections.Counter[str] = collections.Counter()
statements: collections.Counter[tuple[str, str]] = collections.Counter()
phase = ["-"]


def timed(module: Any, name: str, label: str) -> None:
    original = getattr(module, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            spent[label] += time.process_time() - start
            calls[label] += 1

    setattr(module, name, wrapper)


def fresh_database(folder: str, prefill: int, index: bool) -> str:
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
        OUTBOX_DELIVER_INLINE="true",  # as the server: sent when the response is closed
        RATELIMIT_ENABLED="false",
    )
    return path


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=500, help="signup ops measured (after 50 warm-up)")
    parser.add_argument("--prefill", type=int, default=0, help="sent outbox rows put in first")
    parser.add_argument("--index", action="store_true", help="index outbox(to_address, ...)")
    parser.add_argument("--mime", action="store_true", help="also compare MIME renderers")
    args = parser.parse_args()
    db_path = fresh_database(os.path.join(ROOT, ".bench-state", "costs"), args.prefill, args.index)

    import flask_wtf.csrf
    import sqlalchemy.orm
    from sqlalchemy import event

    import app.forms
    import app.outbox
    import app.queries
    import app.services.statuses
    import app.services.subscriptions
    import app.views.public
    from app import create_app
    from app.extensions import db
    from app.services.resources import create_resource

    flask_app = create_app()
    with flask_app.app_context():
        db.create_all()
        create_resource("bench", "Bench")
        engine = db.engine
    if args.prefill or args.index:
        con = sqlite3.connect(db_path)
        stamp = "2026-01-01 00:00:00"
        con.executemany(
            "INSERT INTO outbox (to_address, template, context, created_at, next_attempt_at,"
            " attempts, sent_at) VALUES (?, 'confirm', '{}', ?, ?, 1, ?)",
            ((f"old{i}@example.com", stamp, stamp, stamp) for i in range(args.prefill)),
        )
        if args.index:
            con.execute(
                "CREATE INDEX ix_costs_outbox_address ON outbox (to_address, template, created_at)"
            )
        con.commit()
        con.close()

    @event.listens_for(engine, "before_cursor_execute")
    def _count(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        statements[(phase[0], statement.split()[0])] += 1

    @event.listens_for(engine, "commit")
    def _count_commit(_conn: Any) -> None:
        statements[(phase[0], "COMMIT")] += 1

    queries = app.queries
    for name in (
        "resource_by_slug",
        "current_consent_text",
        "emails_sent_to_since",
        "profile_by_email",
        "suppression_of",
        "subscription_of",
    ):
        timed(queries, name, f"queries.{name}")
    timed(app.services.statuses, "change_status", "statuses.change_status")
    timed(app.services.subscriptions, "normalize_email", "normalize_email (service)")
    timed(app.forms, "normalize_email", "normalize_email (form validator)")
    timed(app.views.public, "render_template", "render_template (the page)")
    timed(app.outbox, "_claimed_here", "outbox._claimed_here (reads its own claims)")
    timed(app.outbox, "render", "outbox.render (3 templates, Message object)")
    timed(app.outbox, "deliver", "mailer.deliver (discard: MIME as_bytes)")
    timed(flask_wtf.csrf, "generate_csrf", "flask_wtf generate_csrf")
    timed(flask_wtf.csrf, "validate_csrf", "flask_wtf validate_csrf")
    timed(sqlalchemy.orm.Session, "commit", "Session.commit (flush + COMMIT)")

    def sent_count() -> int:
        with flask_app.app_context():
            query = "SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL"
            return app.extensions.db.session.execute(sqlalchemy.text(query)).scalar_one()

    per_phase: collections.Counter[str] = collections.Counter()

    def op(i: int) -> None:
        sent_before = sent_count()
        client = flask_app.test_client()
        phase[0], start = "GET form", time.process_time()
        token = CSRF.search(client.get("/subscribe/bench").text).group(1)  # type: ignore[union-attr]
        per_phase[phase[0]] += time.process_time() - start
        phase[0], start = "POST signup", time.process_time()
        form = {"email": f"u{i}@example.com", "name": "", "website": "", "csrf_token": token}
        answer = client.post("/subscribe/bench", data=form)
        per_phase[phase[0]] += time.process_time() - start
        assert "Check your inbox" in answer.text, answer.status
        phase[0], start = "deliver (after the response)", time.process_time()
        answer.close()  # runs the delivery the view scheduled for after the response
        per_phase[phase[0]] += time.process_time() - start
        assert sent_count() == sent_before + 1, "the confirmation email was not sent"

    for i in range(50):
        op(10**6 + i)
    spent.clear()
    calls.clear()
    statements.clear()
    for i in range(args.n):
        op(i)
    n = args.n
    print(
        f"optin signup op, in process (n={n}, outbox prefilled with {args.prefill} rows"
        f"{', indexed on to_address' if args.index else ''}):"
    )
    for name, seconds in per_phase.items():
        kinds = {k: v / n for (p, k), v in statements.items() if p == name}
        listed = ", ".join(f"{k} {v:g}" for k, v in sorted(kinds.items()))
        print(f"  {1000 * seconds / n:6.2f} ms CPU  {name:30s} SQL: {listed}")
    print(f"  {1000 * sum(per_phase.values()) / n:6.2f} ms CPU  total")
    print("cost centres (inclusive CPU per op, calls per op):")
    for label, seconds in spent.most_common():
        print(f"  {1000 * seconds / n:6.2f} ms  {calls[label] / n:4.1f}x  {label}")
    if args.mime:
        mime_comparison(flask_app)
    return 0


if __name__ == "__main__":
    sys.exit(main())
