"""Unsubscribe links in mail sent before link keys (migration 0008) keep unsubscribing the people
they were sent to, a mail provider's one-click included, and open nothing more: no preference
page, no data, and nobody who arrived after the upgrade."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from app import queries
from app.extensions import db
from app.models import Profile, Resource
from app.services.eligibility import decide
from app.services.statuses import Actor
from app.services.subscriptions import confirm_signup
from app.tokens import Purpose, _keys, _signer
from tests.helpers import confirm_target, database_state, submit

ALICE = "alice@example.com"


def confirmed(client: FlaskClient, email: str, newsletter: Resource) -> Profile:
    """A subscriber of the newsletter, confirmed as a customer confirms."""
    assert submit(client, "/subscribe/newsletter", {"email": email}).status_code == 200
    link = confirm_target(email, newsletter)
    confirm_signup(link, actor=Actor())
    found = queries.profile_by_email(email)
    assert found is not None
    assert decide(email, "newsletter").allowed
    return found


def from_before_the_upgrade(profile: Profile) -> None:
    """What migration 0008 marks every profile that was already there."""
    profile.legacy_links = True
    db.session.commit()


def old_unsubscribe_link(profile_id: int, resource_id: int | None) -> str:
    """An unsubscribe link as optin minted it before link keys: signed over the id alone."""
    payload = f"{profile_id}-{'' if resource_id is None else resource_id}-email"
    return "/unsubscribe/" + _signer(Purpose.UNSUBSCRIBE, _keys()).sign(payload).decode("ascii")


def old_preferences_link(profile_id: int) -> str:
    payload = f"{profile_id}--email"
    return "/preferences/" + _signer(Purpose.PREFERENCES, _keys()).sign(payload).decode("ascii")


def test_a_one_click_on_an_unsubscribe_link_sent_before_the_upgrade_still_unsubscribes(
    app: Flask, client: FlaskClient, newsletter: Resource
) -> None:
    alice = confirmed(client, ALICE, newsletter)
    from_before_the_upgrade(alice)
    provider = app.test_client(use_cookies=False)
    answer = provider.post(
        old_unsubscribe_link(alice.id, newsletter.id), data={"List-Unsubscribe": "One-Click"}
    )
    assert answer.status_code == 200
    result = decide(ALICE, "newsletter")
    assert not result.allowed
    assert result.subscription_status == "unsubscribed"
    assert result.global_status == "subscribed"  # this resource only, as the link said


def test_the_page_of_an_old_unsubscribe_link_unsubscribes_and_offers_no_preference_page(
    client: FlaskClient, newsletter: Resource
) -> None:
    alice = confirmed(client, ALICE, newsletter)
    from_before_the_upgrade(alice)
    link = old_unsubscribe_link(alice.id, None)
    page = client.get(link)
    assert page.status_code == 200
    assert ALICE not in page.get_data(as_text=True)
    done = submit(client, link, {"scope": "everything"})
    assert done.status_code == 200
    body = done.get_data(as_text=True)
    assert 'href="/preferences"' in body  # "email me a link", not a preference page
    assert "/preferences/" not in body
    assert decide(ALICE, None).global_status == "unsubscribed"


def test_an_old_link_opens_nobody_who_arrived_after_the_upgrade(
    app: Flask, client: FlaskClient, newsletter: Resource
) -> None:
    alice = confirmed(client, ALICE, newsletter)  # made after the upgrade: no legacy links
    before = database_state()
    link = old_unsubscribe_link(alice.id, newsletter.id)
    assert client.get(link).status_code == 410
    provider = app.test_client(use_cookies=False)
    assert provider.post(link, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert database_state() == before
    assert decide(ALICE, "newsletter").allowed


def test_an_old_preference_link_opens_nothing_even_for_a_profile_from_before_the_upgrade(
    client: FlaskClient, newsletter: Resource
) -> None:
    alice = confirmed(client, ALICE, newsletter)
    from_before_the_upgrade(alice)
    page = client.get(old_preferences_link(alice.id))
    assert page.status_code == 400
    assert ALICE not in page.get_data(as_text=True)
