"""Double opt-in end to end through the pages, with every email received by a real SMTP server
and every link read from the received message."""

from __future__ import annotations

import json

from flask import Flask
from flask.testing import FlaskClient

from app import queries
from app.addresses import email_hash
from app.models import ConsentRecord, Resource
from app.services.eligibility import decide
from tests import factories
from tests.helpers import (
    count,
    database_state,
    html_of,
    link_to,
    run_worker,
    submit,
    text_of,
)
from tests.smtp import SmtpServer

ALICE = "alice@example.com"


def sign_up(client: FlaskClient, email: str = ALICE, slug: str = "newsletter", **extra: str):  # type: ignore[no-untyped-def]
    return submit(client, f"/subscribe/{slug}", {"email": email, "name": "", **extra})


def confirmation_link(smtp_server: SmtpServer) -> str:
    run_worker()
    confirm = [m for m in smtp_server.messages if "confirm" in m["Subject"].lower()]
    assert confirm, [m["Subject"] for m in smtp_server.messages]
    return link_to(confirm[-1], "/confirm/")


def confirm_through_page(client: FlaskClient, path: str):  # type: ignore[no-untyped-def]
    return submit(client, path, {})


def test_signup_confirm_and_welcome(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource, app: Flask
) -> None:
    page = sign_up(client, "Alice@Example.com", name="Alice")
    assert page.status_code == 200
    assert "Check your inbox" in page.get_data(as_text=True)
    assert decide(ALICE, "newsletter").reason == "global_unconfirmed"

    run_worker()
    (message,) = smtp_server.messages
    assert message["To"] == ALICE
    assert "The Newsletter" in message["Subject"]
    assert "List-Unsubscribe" not in message  # nothing to unsubscribe from yet
    assert app.config["ORGANIZATION_ADDRESS"] in text_of(message)
    assert app.config["ORGANIZATION_ADDRESS"] in html_of(message)
    path = link_to(message, "/confirm/")

    # Opening the link (as a mail scanner would) changes nothing.
    before = database_state()
    opened = client.get(path)
    assert opened.status_code == 200
    assert "Confirm my subscription" in opened.get_data(as_text=True)
    assert database_state() == before

    confirmed = confirm_through_page(client, path)
    assert confirmed.status_code == 200
    assert "you are subscribed" in confirmed.get_data(as_text=True)
    assert decide(ALICE, "newsletter").allowed

    run_worker()
    welcome = smtp_server.messages[-1]
    assert welcome["Subject"] == "Welcome to The Newsletter"
    unsubscribe_path = link_to(welcome, "/unsubscribe/")
    preferences_path = link_to(welcome, "/preferences/")
    # (A long header is folded; unfolding leaves the space before the value, which RFC 5322 allows.)
    assert (
        welcome["List-Unsubscribe"]
        .strip()
        .startswith(f"<https://optin.test{unsubscribe_path}>, <mailto:")
    )
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert preferences_path in html_of(welcome)
    assert app.config["ORGANIZATION_ADDRESS"] in html_of(welcome)

    # The proof of consent: when, from where, which form, which consent text version.
    (proof,) = queries.consent_records_of_profile(queries.profile_by_email(ALICE).id)
    assert proof.form == "subscribe/newsletter"
    assert proof.ip == "127.0.0.1"
    assert proof.user_agent and "Werkzeug" in proof.user_agent
    assert proof.consent_text_id == queries.current_consent_text(newsletter.id).id


def test_confirming_twice_changes_nothing_the_second_time(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    sign_up(client)
    path = confirmation_link(smtp_server)
    confirm_through_page(client, path)
    run_worker()
    before = database_state()
    again = confirm_through_page(client, path)
    assert again.status_code == 200
    assert "already confirmed" in again.get_data(as_text=True)
    assert database_state() == before
    assert count(ConsentRecord) == 1


def test_the_answer_is_the_same_for_every_kind_of_address(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    factories.signup("subscribed@example.com", "newsletter")
    factories.confirm("subscribed@example.com", "newsletter")
    factories.signup("waiting@example.com", "newsletter")
    factories.hard_bounce("bounced@example.com")
    pages = []
    for email in ["new@example.com", "subscribed@example.com", "waiting@example.com",
                  "bounced@example.com"]:  # fmt: skip
        page = sign_up(client, email)
        assert page.status_code == 200
        pages.append(page.get_data(as_text=True).replace(email, "EMAIL"))
    assert len(set(pages)) == 1
    # ... and a signup never lowers a status (rule 4).
    assert decide("subscribed@example.com", "newsletter").allowed


def test_signing_up_to_several_resources_sends_one_email(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource, offers: Resource
) -> None:
    factories.signup(ALICE, "offers")  # single opt-in, but only the click will lift a new profile
    page = submit(
        client,
        "/subscribe",
        {"email": "bob@example.com", "resources": ["newsletter", "offers"]},
    )
    assert page.status_code == 200
    run_worker()
    confirmations = [m for m in smtp_server.messages if m["To"] == "bob@example.com"]
    # The single-opt-in resource subscribes at once and says welcome; the other asks for a click.
    subjects = sorted(m["Subject"] for m in confirmations)
    assert subjects == ["Please confirm your subscription to The Newsletter", "Welcome to Offers"]
    path = link_to(next(m for m in confirmations if "confirm" in m["Subject"]), "/confirm/")
    confirm_through_page(client, path)
    assert decide("bob@example.com", "newsletter").allowed
    assert decide("bob@example.com", "offers").allowed


def test_one_confirmation_link_confirms_every_resource_chosen_together(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    from app.services.resources import create_resource

    create_resource("weekly", "Weekly")
    submit(client, "/subscribe", {"email": ALICE, "resources": ["newsletter", "weekly"]})
    run_worker()
    (message,) = smtp_server.messages
    assert "The Newsletter" in text_of(message) and "Weekly" in text_of(message)
    path = link_to(message, "/confirm/")
    assert "Weekly" in client.get(path).get_data(as_text=True)
    confirm_through_page(client, path)
    assert decide(ALICE, "newsletter").allowed and decide(ALICE, "weekly").allowed
    run_worker()
    assert sorted(m["Subject"] for m in smtp_server.messages[1:]) == [
        "Welcome to The Newsletter",
        "Welcome to Weekly",
    ]


def test_one_link_for_two_resources_records_the_global_confirmation_once(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    """Each resource's confirmation reads the profile as the one before it left it: the global
    status moves from unconfirmed to subscribed once, with one event (rule 7, rule 9)."""
    from app.services.resources import create_resource

    create_resource("weekly", "Weekly")
    submit(client, "/subscribe", {"email": ALICE, "resources": ["newsletter", "weekly"]})
    confirm_through_page(client, confirmation_link(smtp_server))
    profile = queries.profile_by_email(ALICE)
    assert profile is not None
    confirmations = sorted(
        (event.resource_id is None, event.old_status, event.new_status)
        for event in queries.events_of_profile(profile.id)
        if event.cause == "confirm"
    )
    assert confirmations == [
        (False, "unconfirmed", "subscribed"),
        (False, "unconfirmed", "subscribed"),
        (True, "unconfirmed", "subscribed"),
    ]


def test_the_embedded_form_works_without_a_csrf_cookie(
    app: Flask, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    stranger_site = app.test_client()  # no cookie, no token: a form on someone else's page
    page = stranger_site.post(
        "/subscribe/newsletter/embed", data={"email": ALICE, "name": "", "website": ""}
    )
    assert page.status_code == 200
    assert decide(ALICE, "newsletter").reason == "global_unconfirmed"
    run_worker()
    (confirmation,) = smtp_server.messages
    confirm_path = link_to(confirmation, "/confirm/")
    assert app.test_client().get(confirm_path).status_code == 200


def test_a_trusted_thank_you_url_gets_the_customer_and_an_untrusted_one_does_not(
    app: Flask, client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    from app.extensions import db

    newsletter.thank_you_url = "https://shop.example.org/thanks"
    db.session.commit()
    page = sign_up(client)
    assert page.status_code == 200  # the host is not trusted: optin's own page
    app.config["TRUSTED_REDIRECT_HOSTS"] = ["shop.example.org"]
    page = sign_up(client, "bob@example.com")
    assert page.status_code == 303
    assert page.headers["Location"] == "https://shop.example.org/thanks"
    newsletter.thank_you_url = "https://shop.example.org.evil.test/thanks"
    db.session.commit()
    assert sign_up(client, "carol@example.com").status_code == 200


def test_the_honeypot_gets_the_same_page_and_changes_nothing(
    client: FlaskClient, newsletter: Resource
) -> None:
    before = database_state()
    page = sign_up(client, website="http://spam.example")
    assert page.status_code == 200
    assert "Check your inbox" in page.get_data(as_text=True)
    assert database_state() == before


def test_the_landing_page_links_to_each_public_signup_form(
    client: FlaskClient, newsletter: Resource, brand: Resource
) -> None:
    html = client.get("/").get_data(as_text=True)
    assert 'href="/subscribe/newsletter"' in html
    assert "/subscribe/brand" not in html
    assert client.get("/subscribe/brand").status_code == 404  # private: no public form


def test_download_and_erase_through_the_emailed_data_link(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    sign_up(client)
    confirm_through_page(client, confirmation_link(smtp_server))
    run_worker()
    preferences = link_to(smtp_server.messages[-1], "/preferences/")
    asked = submit(client, preferences + "/data-link", {}, form_path=preferences)
    assert asked.status_code == 200
    assert "We sent a link to alice@example.com" in asked.get_data(as_text=True)
    run_worker()
    data_page = link_to(smtp_server.messages[-1], "/data/")
    data = client.get(data_page + "/data.json")
    assert data.status_code == 200
    assert data.headers["Cache-Control"] == "no-store"
    exported = json.loads(data.get_data(as_text=True))
    assert exported["email"] == ALICE
    assert [s["status"] for s in exported["subscriptions"]] == ["subscribed"]
    assert {e["cause"] for e in exported["events"]} == {"signup", "confirm"}

    refused = submit(client, data_page + "/erase", {}, form_path=data_page)
    assert refused.status_code == 400
    assert queries.profile_by_email(ALICE) is not None
    erased = submit(client, data_page + "/erase", {"understood": "y"}, form_path=data_page)
    assert erased.status_code == 200
    assert queries.profile_by_email(ALICE) is None
    suppression = queries.suppression_of(email_hash(ALICE))
    assert suppression is not None and suppression.email is None
    assert client.get(preferences).status_code == 410
    assert client.get(data_page).status_code == 410
