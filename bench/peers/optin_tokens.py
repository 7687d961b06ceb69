"""The token command of the "optin" benchmark adapter (optin.json): reads email addresses on stdin,
one a line, and prints ``email<TAB>token`` for each known one: the link token of the email that
optin last sent that address about the resource "bench".

- While the signup is unconfirmed, that is the confirmation email: a confirmation token, built as
  ``services.subscriptions.queue_confirmation`` builds it for the form ``subscribe/bench``.
- After that, every email (the welcome, the preference link) carries the resource's unsubscribe
  link: an unsubscribe token, built as ``links.links_for`` builds it.

``optin_tokens.py confirm`` or ``optin_tokens.py unsubscribe`` forces one kind. The harness gives
the command only the addresses, not the scenario, hence the choice by state. It must run with the
server's SECRET_KEY and DATABASE_URL: setup() in optin.sh writes a wrapper that sets them.
"""

from __future__ import annotations

import sys

from sqlalchemy import select

from app import create_app, queries
from app.extensions import db
from app.models import Profile, Subscription
from app.status import Status
from app.tokens import LinkTarget, Purpose, make_token

RESOURCE = "bench"
CHUNK = 500


def main() -> int:
    forced = sys.argv[1] if len(sys.argv) > 1 else None
    if forced not in (None, "confirm", "unsubscribe"):
        print("usage: optin_tokens.py [confirm|unsubscribe] < emails", file=sys.stderr)
        return 2
    emails = [line.strip() for line in sys.stdin if line.strip()]
    app = create_app()
    out = []
    with app.app_context():
        resource = queries.resource_by_slug(RESOURCE)
        if resource is None:
            print(f"no resource {RESOURCE!r} in {app.config['DATABASE_URL']}", file=sys.stderr)
            return 1
        consent = queries.current_consent_text(resource.id)
        assert consent is not None
        found: dict[str, tuple[int, str | None, str, str | None]] = {}
        for start in range(0, len(emails), CHUNK):
            query = (
                select(
                    Profile.email,
                    Profile.id,
                    Subscription.status,
                    Profile.link_key,
                    Subscription.confirm_nonce,
                )
                .outerjoin(
                    Subscription,
                    (Subscription.profile_id == Profile.id)
                    & (Subscription.resource_id == resource.id)
                    & (Subscription.channel == "email"),
                )
                .where(Profile.email.in_(emails[start : start + CHUNK]))
            )
            found.update({row.email: tuple(row)[1:] for row in db.session.execute(query)})
        for email in emails:
            if email not in found:
                continue
            profile_id, status, key, nonce = found[email]
            kind = forced or ("confirm" if status == Status.UNCONFIRMED.value else "unsubscribe")
            if kind == "confirm":
                # The link of the signup request waiting on the subscription (its nonce).
                target = LinkTarget(
                    profile_id,
                    key,
                    resource_id=resource.id,
                    form=f"subscribe/{RESOURCE}",
                    consent_text_id=consent.id,
                    nonce=nonce,
                )
                token = make_token(Purpose.CONFIRM, target)
            else:
                target = LinkTarget(profile_id, key, resource_id=resource.id)
                token = make_token(Purpose.UNSUBSCRIBE, target)
            out.append(f"{email}\t{token}\n")
    sys.stdout.write("".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
