"""Small helpers shared by the tests: the addresses they sign up, a subscriber made in one call,
CSRF tokens from forms, links from received emails, and a clock that tests move on
instead of sleeping."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from email.message import EmailMessage

from flask.testing import FlaskClient
from sqlalchemy import func, select

from app import outbox, queries
from app.extensions import db
from app.models import OutboxMessage, Profile, StatusEvent, Subscription, Suppression
from tests import factories

BASE_URL = "https://optin.test"
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')
LINK = re.compile(r"https://optin\.test(/[^\s<>\"]+)")
# The customers the tests sign up.
ALICE = "alice@example.com"
BOB = "bob@example.com"


class Clock:
    """A clock that stands still until a test moves it (``clock.advance(seconds)``): the
    ``clock`` fixture puts it behind ``app.database.utcnow``, so a test checks that a session or a
    link expires without waiting for real time to pass."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def subscribed(email: str, *slugs: str) -> Profile:
    """A customer who signed up to each of ``slugs`` and confirmed, as the signup flow leaves
    them."""
    for slug in slugs:
        factories.signup(email, slug)
        factories.confirm(email, slug)
    profile = queries.profile_by_email(email)
    assert profile is not None
    return profile


def path_of(url: str) -> str:
    """The path of an absolute optin link, as a test client requests it."""
    return url.removeprefix(BASE_URL)


def csrf_token(client: FlaskClient, path: str) -> str:
    """The CSRF token of the form on ``path``, as a browser would get it."""
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    found = CSRF.search(page.get_data(as_text=True))
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def submit(client: FlaskClient, path: str, data: dict[str, object], form_path: str | None = None):  # type: ignore[no-untyped-def]
    """Fill in and send the form found on ``form_path`` (default: ``path``)."""
    token = csrf_token(client, form_path or path)
    return client.post(path, data={"csrf_token": token, **data})


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    content: str = part.get_content()  # a text part's content is its str
    return content


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None
    content: str = part.get_content()
    return content


def links_in(message: EmailMessage) -> list[str]:
    """The optin paths linked from an email's text part, in order."""
    return LINK.findall(text_of(message))


def link_to(message: EmailMessage, prefix: str) -> str:
    """The one path in ``message`` that starts with ``prefix`` (e.g. "/confirm/")."""
    found = [path for path in links_in(message) if path.startswith(prefix)]
    assert found, f"no {prefix} link in: {text_of(message)}"
    return found[0]


def run_worker() -> outbox.DeliveryReport:
    """What `flask outbox work --once` does."""
    return outbox.deliver_due()


def count(model: type) -> int:
    return db.session.scalar(select(func.count()).select_from(model)) or 0


def database_state() -> tuple[int, ...]:
    """Counts that any change to statuses, profiles or mail would move."""
    db.session.rollback()
    states = tuple(
        sorted(
            (p.email, p.status, str(p.suspended_until)) for p in db.session.scalars(select(Profile))
        )
    )
    subscriptions = tuple(
        sorted(
            (s.profile_id, s.resource_id, s.channel, s.status)
            for s in db.session.scalars(select(Subscription))
        )
    )
    return (
        hash(states),
        hash(subscriptions),
        count(StatusEvent),
        count(Suppression),
        count(OutboxMessage),
    )


def confirm_target(  # type: ignore[no-untyped-def]
    email: str, resource, form: str | None = None, consent_text_id: int | None = None
):
    """What the confirmation link last emailed to ``email`` for ``resource`` names: the profile
    and its key, and the nonce of the signup request waiting on the subscription."""
    from app import queries
    from app.tokens import LinkTarget

    profile = queries.profile_by_email(email)
    assert profile is not None
    subscription = queries.subscription_of(profile.id, resource.id, "email")
    assert subscription is not None
    return LinkTarget(
        profile.id,
        profile.link_key,
        resource_id=resource.id,
        form=form,
        consent_text_id=consent_text_id,
        nonce=subscription.confirm_nonce,
    )


def wait_for(condition: Callable[[], bool], seconds: float = 30) -> bool:
    """Whether ``condition`` came true within ``seconds`` (asked every 0.1 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False
