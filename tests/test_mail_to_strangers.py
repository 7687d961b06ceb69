"""Mail that anyone can have sent to any address (a confirmation, a preference link, a resent
confirmation, the welcome of a single-opt-in signup) carries nothing the asker typed but the
address itself: the embedded form is cross-site and CSRF-exempt, so its name field would
otherwise print a stranger's words in mail to a victim. Only once the mailbox's holder has
confirmed may the welcome greet them by the name.

Every message is read as delivered to a real SMTP server: every header and both parts.
"""

from __future__ import annotations

from email.message import EmailMessage

from flask.testing import FlaskClient

from app import queries
from app.models import Resource
from app.services import subscriptions
from tests.helpers import confirm_target, html_of, link_to, run_worker, submit, text_of
from tests.smtp import SmtpServer

VICTIM = "victim@example.com"
LURE = "Win a prize at evil.example"
LURE_WORDS = ("win a prize", "evil.example", "evil")


def everything_in(message: EmailMessage) -> str:
    """The message as the recipient's mail program sees it: each header, and both parts."""
    headers = "\n".join(f"{name}: {value}" for name, value in message.items())
    return "\n".join((headers, text_of(message), html_of(message))).lower()


def assert_no_lure(message: EmailMessage) -> None:
    seen = everything_in(message)
    assert not [word for word in LURE_WORDS if word in seen], seen
    assert message["To"] == VICTIM  # no display name either


def delivered(smtp_server: SmtpServer) -> list[EmailMessage]:
    run_worker()
    return list(smtp_server.messages)


def embed_signup(client: FlaskClient, slug: str = "newsletter"):  # type: ignore[no-untyped-def]
    """The post a form on another site makes: no CSRF token, no cookie."""
    return client.post(
        f"/subscribe/{slug}/embed", data={"email": VICTIM, "name": LURE, "website": ""}
    )


def test_a_confirmation_asked_for_through_the_embedded_form_carries_no_typed_name(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    assert embed_signup(client).status_code == 200
    (confirmation,) = delivered(smtp_server)
    assert "/confirm/" in text_of(confirmation)
    assert_no_lure(confirmation)


def test_a_confirmation_asked_for_through_optins_own_form_carries_no_typed_name(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    answer = submit(client, "/subscribe/newsletter", {"email": VICTIM, "name": LURE})
    assert answer.status_code == 200
    (confirmation,) = delivered(smtp_server)
    assert_no_lure(confirmation)


def test_a_preference_link_and_a_resent_confirmation_carry_no_typed_name(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    embed_signup(client)
    profile = queries.profile_by_email(VICTIM)
    assert profile is not None and profile.name == LURE  # the stranger named the new profile
    submit(client, "/preferences", {"email": VICTIM})
    subscriptions.resend_confirmation(confirm_target(VICTIM, newsletter, form="embed"))
    messages = delivered(smtp_server)
    assert len(messages) == 3  # the confirmation, the preference link, the confirmation again
    assert "/preferences/" in text_of(messages[1])
    assert "/confirm/" in text_of(messages[2])
    for message in messages:
        assert_no_lure(message)


def test_the_welcome_of_a_single_opt_in_signup_carries_no_typed_name(
    client: FlaskClient, smtp_server: SmtpServer, offers: Resource
) -> None:
    assert embed_signup(client, "offers").status_code == 200
    (welcome,) = delivered(smtp_server)
    assert "Offers" in welcome["Subject"]
    assert_no_lure(welcome)


def test_after_the_confirmation_the_welcome_may_greet_by_name(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    embed_signup(client)
    (confirmation,) = delivered(smtp_server)
    submit(client, link_to(confirmation, "/confirm/"), {})
    welcome = delivered(smtp_server)[-1]
    assert f"Hello {LURE}," in text_of(welcome)
    assert welcome["To"] == VICTIM
