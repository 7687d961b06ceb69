"""CPU per email of building and serialising it, in process (issue 11, issue 12).

For each template: ``outbox.render`` + ``mailer.deliver`` with the discard backend (the templates,
the headers, the MIME message and its bytes), then the MIME part alone: ``mailer.compose`` beside
Flask-Mail's ``Message`` (what mailer.py used before) on the same parts and headers. CPU time
(``time.process_time``), the best of three rounds of N messages, after 200 to warm up.

    .venv/bin/python -m bench.mail_build [-n 2000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any


def cpu_per_call(work: Callable[[], Any], rounds: int) -> float:
    """Milliseconds of CPU per call, the best of three rounds."""
    for _ in range(200):
        work()
    best = []
    for _ in range(3):
        start = time.process_time()
        for _ in range(rounds):
            work()
        best.append((time.process_time() - start) * 1000 / rounds)
    return min(best)


def measure(row: Any, rounds: int) -> str:
    """One template's line of figures."""
    from flask_mail import Message

    from app import mailer, outbox

    built = outbox.render(row)
    text, html = (part.get_payload(decode=True).decode() for part in built.get_payload())
    subject, address = str(built["Subject"]), row.to_address
    names = ("List-Id", "Auto-Submitted", "Feedback-ID", "List-Unsubscribe")
    headers = {name: str(built[name]).strip() for name in names if built[name]}
    if built["List-Unsubscribe"]:
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"

    def whole() -> None:
        outbox.deliver(outbox.render(row))

    def ours() -> bytes:
        return mailer.compose(
            to=address,
            subject=subject,
            text=text,
            html=html,
            message_id="<0123456789abcdef0123456789abcdef@optin.test>",
            headers=headers,
        ).as_bytes()

    def flask_mail() -> bytes:
        message = Message(
            subject=subject,
            recipients=[address],
            body=text,
            html=html,
            sender=mailer.sender(),
            extra_headers=dict(headers),
        )
        return message.as_bytes()

    return (
        f"  {row.template:17s} render+deliver {cpu_per_call(whole, rounds):.3f} ms;"
        f"  MIME alone: mailer.compose {cpu_per_call(ours, rounds):.3f} ms,"
        f" Flask-Mail Message {cpu_per_call(flask_mail, rounds):.3f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="messages per round")
    args = parser.parse_args()
    folder = tempfile.mkdtemp(prefix="optin-bench-mail-")
    os.environ["OPTIN_INSTANCE_PATH"] = folder

    from sqlalchemy import select

    from app import create_app, queries
    from app.extensions import db
    from app.models import OutboxMessage
    from app.services import preferences, subscriptions
    from app.services.resources import create_resource
    from app.services.statuses import CUSTOMER

    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{folder}/bench.sqlite3",
            "SECRET_KEY": "bench-only-not-secret-" + "x" * 40,
            "MAIL_BACKEND": "discard",
            "OUTBOX_DELIVER_INLINE": False,
            "BASE_URL": "https://optin.test",
        }
    )
    with app.app_context():
        db.create_all()
        create_resource("newsletter", "The Newsletter")
        create_resource("offers", "Offers", double_opt_in=False)
        address = "alice@example.com"
        subscriptions.request_signup(address, ["newsletter"], form="page", actor=CUSTOMER)
        subscriptions.request_signup(address, ["offers"], form="page", actor=CUSTOMER)
        preferences.request_preferences_link(address)
        profile = queries.profile_by_email(address)
        assert profile is not None
        preferences.request_data_link(profile.id)
        rows = sorted(db.session.scalars(select(OutboxMessage)), key=lambda row: row.template)
        print(f"CPU per message, best of 3 x {args.n}:")
        for row in rows:
            print(measure(row, args.n))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
