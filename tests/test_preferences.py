"""The preference center (SPEC §2) through its pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient

from app import queries
from app.links import links_for
from app.models import Resource
from app.services.eligibility import decide
from app.services.resources import create_resource
from tests import factories
from tests.helpers import ALICE, database_state, link_to, run_worker, submit, subscribed
from tests.smtp import SmtpServer


def preferences_path(email: str) -> str:
    profile = queries.profile_by_email(email)
    assert profile is not None
    return links_for(profile.id, profile.link_key, None).preferences_url.removeprefix(
        "https://optin.test"
    )


def test_the_page_lists_public_resources_and_private_ones_subscribed_to(
    client: FlaskClient, newsletter: Resource, brand: Resource, offers: Resource
) -> None:
    create_resource("secret", "Secret club", public=False)
    subscribed(ALICE, "newsletter", "brand")
    before = database_state()
    html = client.get(preferences_path(ALICE)).get_data(as_text=True)
    assert database_state() == before
    assert "The Newsletter" in html and "Offers" in html
    assert "Brand news" in html  # private, but subscribed
    assert "Secret club" not in html  # private and not subscribed


def test_saving_unticks_and_ticks_resources(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource, brand: Resource,
    offers: Resource,
) -> None:  # fmt: skip
    subscribed(ALICE, "newsletter", "brand")
    path = preferences_path(ALICE)
    saved = submit(
        client, path, {"resources": ["newsletter", "offers"], "name": "Alice", "locale": "de"}
    )
    assert saved.status_code == 200
    # The page answers in the language just chosen.
    assert "Ihre Einstellungen sind gespeichert." in saved.get_data(as_text=True)
    assert decide(ALICE, "brand").reason == "subscription_unsubscribed"
    assert decide(ALICE, "offers").allowed  # single opt-in: at once
    assert decide(ALICE, "newsletter").allowed
    profile = queries.profile_by_email(ALICE)
    assert profile is not None and (profile.name, profile.locale) == ("Alice", "de")
    assert queries.events_of_profile(profile.id)[-2].cause == "preferences"


def test_re_subscribing_a_double_opt_in_resource_goes_through_confirmation(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    subscribed(ALICE, "newsletter")
    factories.unsubscribe(ALICE, "newsletter")
    path = preferences_path(ALICE)
    submit(client, path, {"resources": ["newsletter"]})
    assert decide(ALICE, "newsletter").reason == "subscription_unsubscribed"
    run_worker()
    confirm = link_to(smtp_server.messages[-1], "/confirm/")
    submit(client, confirm, {})
    assert decide(ALICE, "newsletter").allowed


def test_pausing_suspends_each_subscription_until_the_chosen_day(
    client: FlaskClient, newsletter: Resource, brand: Resource
) -> None:
    subscribed(ALICE, "newsletter", "brand")
    path = preferences_path(ALICE)
    page = submit(client, path + "/pause", {"days": "30"}, form_path=path)
    assert page.status_code == 200
    assert "Paused until" in page.get_data(as_text=True)
    for slug in ("newsletter", "brand"):
        assert decide(ALICE, slug).reason == "subscription_suspended"
    later = datetime.now(UTC) + timedelta(days=30, minutes=1)
    assert decide(ALICE, "newsletter", now=later).allowed
    assert "paused until" in client.get(path).get_data(as_text=True)
    refused = submit(client, path + "/pause", {"days": "7"}, form_path=path)
    assert refused.status_code == 400


def test_unsubscribe_from_everything_sets_the_global_status(
    client: FlaskClient, newsletter: Resource, brand: Resource
) -> None:
    subscribed(ALICE, "newsletter", "brand")
    path = preferences_path(ALICE)
    page = submit(client, path + "/everything", {}, form_path=path)
    assert page.status_code == 200
    assert decide(ALICE).reason == "global_unsubscribed"
    assert decide(ALICE, "brand").subscription_status == "subscribed"  # rule 3
    assert "unsubscribed</strong> overall" in client.get(path).get_data(as_text=True)


def test_asking_for_a_preference_link_answers_the_same_for_any_address(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    subscribed(ALICE, "newsletter")
    known = submit(client, "/preferences", {"email": ALICE})
    unknown = submit(client, "/preferences", {"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 200
    assert known.get_data(as_text=True).replace(ALICE, "X") == unknown.get_data(
        as_text=True
    ).replace("nobody@example.com", "X")
    run_worker()
    (message,) = smtp_server.messages
    assert message["To"] == ALICE
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert client.get(link_to(message, "/preferences/")).status_code == 200


def test_a_bad_preference_form_is_answered_and_changes_nothing(
    app: Flask, client: FlaskClient, newsletter: Resource
) -> None:
    subscribed(ALICE, "newsletter")
    path = preferences_path(ALICE)
    before = database_state()
    for data in (
        {"resources": ["no-such-resource"]},
        {"resources": ["newsletter"], "name": "Alice\r\nBcc: x@example.com"},
        {"resources": ["newsletter"], "locale": "xx"},
        {"resources": ["newsletter"], "name": "x" * 201},
    ):
        page = submit(client, path, data)
        assert page.status_code == 400, data
    assert database_state() == before
