"""Issue 9, item 7: "download my data" and "erase my data" need a fresh, short-lived link sent to
the address. Unsubscribe and preference links travel in List-Unsubscribe headers that mailbox
providers and forwarded mail see; they keep the toggles, the pause and the unsubscribe, and
open no personal data."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from app import queries
from app.links import data_url, links_for
from app.models import OutboxMessage, Resource
from tests.helpers import (
    ALICE,
    BOB,
    CSRF,
    Clock,
    count,
    database_state,
    link_to,
    path_of,
    run_worker,
    submit,
    subscribed,
    text_of,
)
from tests.smtp import SmtpServer


def ask_for_data_link(client: FlaskClient, smtp_server: SmtpServer, preferences: str) -> str:
    """Press the preference page's button and read the data link from the email received."""
    answer = submit(client, preferences + "/data-link", {}, form_path=preferences)
    assert answer.status_code == 200
    run_worker()
    message = smtp_server.messages[-1]
    assert message["To"] == ALICE
    assert "List-Unsubscribe" not in message
    return link_to(message, "/data/")


def test_a_preference_link_can_neither_download_nor_erase(
    client: FlaskClient, newsletter: Resource
) -> None:
    profile = subscribed(ALICE, "newsletter")
    preferences = path_of(links_for(profile.id, profile.link_key, None).preferences_url)
    unsubscribe = path_of(links_for(profile.id, profile.link_key, newsletter.id).unsubscribe_url)
    page = client.get(preferences)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Email me a link to download or erase my data" in html
    assert "data.json" not in html and "/erase" not in html
    before = database_state()
    for token_path in (preferences, unsubscribe):
        assert client.get(token_path + "/data.json").status_code == 404
        erase = client.post(token_path + "/erase", data={"understood": "y"})
        assert erase.status_code in (404, 405)
    # The preference token is not a data token either.
    token = preferences.rsplit("/", 1)[1]
    assert client.get(f"/data/{token}").status_code == 400
    assert client.get(f"/data/{token}/data.json").status_code == 400
    assert database_state() == before
    assert queries.profile_by_email(ALICE) is not None


def test_the_emailed_data_link_downloads_and_erases(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    profile = subscribed(ALICE, "newsletter")
    preferences = path_of(links_for(profile.id, profile.link_key, None).preferences_url)
    data_page = ask_for_data_link(client, smtp_server, preferences)
    assert "60 minutes" in text_of(smtp_server.messages[-1])

    before = database_state()
    page = client.get(data_page)  # a mail scanner opening the link changes nothing
    assert page.status_code == 200
    assert "Download my data" in page.get_data(as_text=True)
    assert database_state() == before
    download = client.get(data_page + "/data.json")
    assert download.status_code == 200
    assert download.headers["Cache-Control"] == "no-store"
    assert download.get_json()["email"] == ALICE

    assert client.post(data_page + "/erase", data={"understood": "y"}).status_code == 400  # CSRF
    assert queries.profile_by_email(ALICE) is not None
    erased = submit(client, data_page + "/erase", {"understood": "y"}, form_path=data_page)
    assert erased.status_code == 200
    assert queries.profile_by_email(ALICE) is None


def test_asking_again_and_again_gives_the_same_answer_and_a_few_emails(
    app: Flask, client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    profile = subscribed(ALICE, "newsletter")
    preferences = path_of(links_for(profile.id, profile.link_key, None).preferences_url)
    answers = {
        submit(client, preferences + "/data-link", {}, form_path=preferences).get_data(as_text=True)
        for _ in range(5)
    }
    assert len(answers) == 1
    sent = [m for m in queries_outbox() if m.template == "data_link"]
    assert len(sent) == app.config["CONFIRMATIONS_PER_ADDRESS_PER_DAY"] == 3


def queries_outbox() -> list[OutboxMessage]:
    from sqlalchemy import select

    from app.extensions import db

    return list(db.session.scalars(select(OutboxMessage)))


def test_an_expired_data_link_opens_nothing_and_offers_a_fresh_one(
    app: Flask, client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource, clock: Clock
) -> None:
    profile = subscribed(ALICE, "newsletter")
    preferences = path_of(links_for(profile.id, profile.link_key, None).preferences_url)
    data_page = ask_for_data_link(client, smtp_server, preferences)
    app.config["DATA_LINK_MAX_AGE"] = 0
    clock.advance(1)  # itsdangerous timestamps are whole seconds
    before = database_state()
    page = client.get(data_page)
    assert page.status_code == 410
    html = page.get_data(as_text=True)
    assert "This link has expired" in html
    assert client.get(data_page + "/data.json").status_code == 410
    csrf = CSRF.search(html).group(1)  # type: ignore[union-attr]
    erase = client.post(data_page + "/erase", data={"csrf_token": csrf, "understood": "y"})
    assert erase.status_code == 410
    assert database_state() == before

    fresh_request = client.post(data_page + "/resend", data={"csrf_token": csrf})
    assert fresh_request.status_code == 200
    app.config["DATA_LINK_MAX_AGE"] = 3600
    run_worker()
    fresh = link_to(smtp_server.messages[-1], "/data/")
    assert fresh != data_page
    assert client.get(fresh + "/data.json").status_code == 200


def test_a_data_link_with_another_persons_key_opens_nothing(
    client: FlaskClient, newsletter: Resource
) -> None:
    alice = subscribed(ALICE, "newsletter")
    bob = subscribed(BOB, "newsletter")
    forged = path_of(data_url(alice.id, bob.link_key))  # validly signed, wrong key
    before = database_state()
    assert client.get(forged).status_code == 410
    assert client.get(forged + "/data.json").status_code == 410
    assert database_state() == before
    assert count(OutboxMessage) == 0
