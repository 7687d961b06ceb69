"""The headers mailbox providers and filters read (issue 12), on every message as the real SMTP
server received it: List-Id (RFC 2919), Auto-Submitted (RFC 3834), Feedback-ID (Gmail's
feedback loop), a Message-ID on the sender's domain that a retry repeats, List-Unsubscribe as
the API gives it, and a MIME tree of exactly multipart/alternative(text/plain, text/html)."""

from __future__ import annotations

from datetime import timedelta
from email.message import EmailMessage

import pytest
from flask import Flask
from sqlalchemy import delete, select, update

from app import queries
from app.database import utcnow, write_transaction
from app.extensions import db
from app.links import links_for
from app.models import OutboxMessage, Resource
from app.services import preferences, subscriptions
from app.services.resources import create_resource
from app.services.statuses import CUSTOMER
from tests.conftest import on_postgres
from tests.helpers import confirm_target, html_of, run_worker, text_of
from tests.smtp import SmtpServer

SENDER = "Example News <news@mail.example.org>"
DOMAIN = "mail.example.org"
SUBJECTS = {
    "en": {
        "confirm": "Please confirm your subscription to The Newsletter",
        "welcome": "Welcome to The Newsletter",
        "preferences_link": "Your subscription preferences",
        "data_link": "Your link to download or erase your data",
    },
    "de": {
        "confirm": "Bitte bestätigen Sie Ihre Anmeldung zu The Newsletter",
        "welcome": "Willkommen bei The Newsletter",
        "preferences_link": "Ihre Abo-Einstellungen",
        "data_link": "Ihr Link zum Herunterladen oder Löschen Ihrer Daten",
    },
}


@pytest.fixture
def sender(app: Flask) -> str:
    """A sender on a real domain, as production configures MAIL_DEFAULT_SENDER."""
    app.config["MAIL_DEFAULT_SENDER"] = SENDER
    return SENDER


def each_message(
    smtp_server: SmtpServer, address: str, newsletter: Resource, locale: str
) -> dict[str, EmailMessage]:
    """Every kind of message to ``address``, by template, as the SMTP server received them."""
    subscriptions.request_signup(
        address, ["newsletter"], name="Ann", locale=locale, form="page", actor=CUSTOMER
    )
    subscriptions.confirm_signup(confirm_target(address, newsletter, form="page"), actor=CUSTOMER)
    preferences.request_preferences_link(address)
    profile = queries.profile_by_email(address)
    assert profile is not None
    preferences.request_data_link(profile.id)
    templates = list(db.session.scalars(select(OutboxMessage.template).order_by(OutboxMessage.id)))
    db.session.rollback()
    assert run_worker().sent == 4
    return dict(zip(templates, received_by(smtp_server, address), strict=True))


def received_by(smtp_server: SmtpServer, address: str) -> list[EmailMessage]:
    return [message for message in smtp_server.messages if message["To"] == address]


def assert_two_parts_and_nothing_else(message: EmailMessage) -> None:
    """multipart/alternative of a text and an HTML part: no multipart/mixed around it, no
    attachment, nothing nested."""
    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [part.get_content_type() for part in parts] == ["text/plain", "text/html"]
    assert all(not part.is_multipart() for part in parts)
    assert all(part.get_content_charset() == "utf-8" for part in parts)
    assert message["MIME-Version"] == "1.0"
    assert all(part["MIME-Version"] is None for part in parts)


@pytest.mark.parametrize("locale", ["en", "de"])
def test_every_message_carries_the_headers_that_providers_and_filters_read(
    smtp_server: SmtpServer, sender: str, newsletter: Resource, locale: str
) -> None:
    address = f"ann.{locale}@example.com"
    messages = each_message(smtp_server, address, newsletter, locale)
    assert set(messages) == {"confirm", "welcome", "preferences_link", "data_link"}
    profile = queries.profile_by_email(address)
    assert profile is not None
    for template, message in messages.items():
        assert message["Subject"] == SUBJECTS[locale][template]
        assert message["From"] == sender
        assert message["To"] == address
        assert message["Auto-Submitted"] == "auto-generated"
        assert message["Message-ID"].startswith("<")
        assert message["Message-ID"].endswith(f"@{DOMAIN}>")
        assert_two_parts_and_nothing_else(message)
        assert "ann" not in message["Feedback-ID"] + message["Message-ID"]  # nothing personal
        if template in ("confirm", "welcome"):
            assert message["List-Id"] == f'"The Newsletter" <newsletter.lists.{DOMAIN}>'
        else:  # about no one resource: the organisation's list
            assert message["List-Id"] == f'"optin demo" <account.{DOMAIN}>'
    assert messages["confirm"]["Feedback-ID"] == f"transactional:newsletter:confirm:{DOMAIN}"
    assert messages["welcome"]["Feedback-ID"] == f"subscription:newsletter:welcome:{DOMAIN}"
    assert (
        messages["preferences_link"]["Feedback-ID"]
        == f"transactional:account:preferences_link:{DOMAIN}"
    )
    assert messages["data_link"]["Feedback-ID"] == f"transactional:account:data_link:{DOMAIN}"
    # List-Unsubscribe exactly as the API gives it, and only where there is something to leave.
    for template, resource_id in (("welcome", newsletter.id), ("preferences_link", None)):
        links = links_for(profile.id, profile.link_key, resource_id)
        # (Stripped: the test server's compat32 round trip may fold before the first URI.)
        assert messages[template]["List-Unsubscribe"].strip() == links.list_unsubscribe
        assert messages[template]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    for template in ("confirm", "data_link"):
        assert messages[template]["List-Unsubscribe"] is None
    # Each message's id is its own.
    assert len({message["Message-ID"] for message in messages.values()}) == 4
    # The parts are the customer's language.
    hello = "Hallo Ann," if locale == "de" else "Hello Ann,"
    assert hello in text_of(messages["welcome"]) and hello in html_of(messages["welcome"])


def test_a_confirmation_of_several_resources_names_the_organisations_list(
    smtp_server: SmtpServer, sender: str, newsletter: Resource
) -> None:
    create_resource("events", "Events")
    subscriptions.request_signup(
        "bo@example.com", ["newsletter", "events"], form="page", actor=CUSTOMER
    )
    run_worker()
    (message,) = received_by(smtp_server, "bo@example.com")
    assert message["List-Id"] == f'"optin demo" <account.{DOMAIN}>'
    assert message["Feedback-ID"] == f"transactional:account:confirm:{DOMAIN}"


def test_a_message_names_its_resource_as_it_is_when_sent_not_as_a_copy_held_it(
    app: Flask, smtp_server: SmtpServer, sender: str, newsletter: Resource
) -> None:
    """The List-Id is read with the send-time check: a rename made by another process (which
    this one's copy of the catalogue hears nothing of) names the next message at once."""
    app.config["CATALOGUE_CACHE_SECONDS"] = 3600
    subscriptions.request_signup("ed@example.com", ["newsletter"], form="page", actor=CUSTOMER)
    assert queries.cached_resource_by_id(newsletter.id) is not None  # the copy holds the old name
    db.session.execute(update(Resource).values(name="Renamed Elsewhere"))
    db.session.commit()
    run_worker()
    (message,) = received_by(smtp_server, "ed@example.com")
    assert message["List-Id"] == f'"Renamed Elsewhere" <newsletter.lists.{DOMAIN}>'


def test_a_resource_name_that_is_not_ascii_reaches_the_list_id_and_subject_whole(
    smtp_server: SmtpServer,
    sender: str,
) -> None:
    create_resource("gruesse", 'Grüße "Spezial", täglich')
    subscriptions.request_signup("cy@example.com", ["gruesse"], form="page", actor=CUSTOMER)
    run_worker()
    (message,) = received_by(smtp_server, "cy@example.com")
    assert message["Subject"] == 'Please confirm your subscription to Grüße "Spezial", täglich'
    assert str(message["List-Id"]).endswith(f"<gruesse.lists.{DOMAIN}>")
    assert 'Grüße "Spezial", täglich' in str(message["List-Id"])


def test_a_sender_on_localhost_gives_message_ids_on_optins_public_host(
    smtp_server: SmtpServer, app: Flask
) -> None:
    """The demo's sender (noreply@localhost) names nothing unique: BASE_URL's host does."""
    assert app.config["MAIL_DEFAULT_SENDER"] == "optin <noreply@localhost>"
    create_resource("newsletter", "The Newsletter")
    subscriptions.request_signup("di@example.com", ["newsletter"], form="page", actor=CUSTOMER)
    run_worker()
    (message,) = received_by(smtp_server, "di@example.com")
    assert message["Message-ID"].endswith("@optin.test>")
    assert message["List-Id"] == '"The Newsletter" <newsletter.lists.optin.test>'


def test_a_retried_delivery_carries_the_message_id_of_the_first_try(
    smtp_server: SmtpServer, sender: str, newsletter: Resource
) -> None:
    """A worker that dies after the server took a message, before it could record that, leaves
    the row to be sent again once its lease runs out: the second copy has the same id, so the
    receiver can drop it."""
    preferences_link_for("ed@example.com")
    assert run_worker().sent == 1
    with write_transaction() as session:  # as if the record of the delivery never happened
        session.execute(update(OutboxMessage).values(sent_at=None))
    assert run_worker().sent == 1
    first, again = received_by(smtp_server, "ed@example.com")
    assert again["Message-ID"] == first["Message-ID"]
    assert again["Date"] is not None and text_of(again) == text_of(first)


def test_a_new_message_never_repeats_an_earlier_ones_id(
    smtp_server: SmtpServer, sender: str, newsletter: Resource
) -> None:
    """Not even when SQLite gives a deleted row's id to the next row (erasure deletes rows)."""
    preferences_link_for("fi@example.com")
    run_worker()
    (first_id,) = db.session.scalars(select(OutboxMessage.id))
    db.session.rollback()
    with write_transaction() as session:
        session.execute(delete(OutboxMessage))
    preferences_link_for("fi@example.com", now=utcnow() + timedelta(seconds=1))
    (second_id,) = db.session.scalars(select(OutboxMessage.id))
    db.session.rollback()
    if not on_postgres():
        assert second_id == first_id  # the case this test is about
    run_worker()
    first, second = received_by(smtp_server, "fi@example.com")
    assert first["Message-ID"] != second["Message-ID"]


def test_the_same_message_to_two_installations_has_two_ids(
    smtp_server: SmtpServer, app: Flask, sender: str, newsletter: Resource
) -> None:
    """The id is keyed with SECRET_KEY: another installation's row 1 is not this one's."""
    preferences_link_for("gu@example.com")
    row = db.session.scalars(select(OutboxMessage)).one()
    from app.outbox import render

    here = render(row)["Message-ID"]
    app.config["SECRET_KEY"] = "another-installation"
    assert render(row)["Message-ID"] != here


def preferences_link_for(address: str, **when: object) -> None:
    if queries.profile_by_email(address) is None:
        subscriptions.request_signup(address, ["newsletter"], form="page", actor=CUSTOMER)
        with write_transaction() as session:  # the confirmation is not what these tests need
            session.execute(delete(OutboxMessage))
    preferences.request_preferences_link(address, **when)  # type: ignore[arg-type]
