"""Unsubscribe links, RFC 8058 one-click, and every way a token can be wrong."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from app import queries
from app.links import links_for
from app.models import Resource
from app.services.eligibility import decide
from app.tokens import LinkTarget, Purpose, make_token
from tests.helpers import (
    ALICE,
    CSRF,
    Clock,
    database_state,
    link_to,
    path_of,
    run_worker,
    submit,
    subscribed,
)
from tests.smtp import SmtpServer


def key_of(profile_id: int) -> str:
    profile = queries.profile_by_id(profile_id)
    assert profile is not None
    return profile.link_key


def test_one_click_unsubscribe_exactly_as_a_mail_provider_sends_it(
    app: Flask, newsletter: Resource, brand: Resource
) -> None:
    profile_id = subscribed(ALICE, "newsletter", "brand").id
    links = links_for(profile_id, key_of(profile_id), newsletter.id)
    provider = app.test_client(use_cookies=False)
    answer = provider.post(
        path_of(links.unsubscribe_url),
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert answer.status_code == 200
    assert "Location" not in answer.headers
    assert "Set-Cookie" not in answer.headers
    assert decide(ALICE, "newsletter").reason == "subscription_unsubscribed"
    assert decide(ALICE, "brand").allowed  # one resource only
    assert queries.events_of_profile(profile_id)[-1].cause == "one_click"
    # A provider retrying the POST changes nothing more.
    before = database_state()
    assert (
        provider.post(
            path_of(links.unsubscribe_url), data={"List-Unsubscribe": "One-Click"}
        ).status_code
        == 200
    )
    assert database_state() == before


def test_one_click_from_a_message_without_resource_unsubscribes_globally(
    app: Flask, newsletter: Resource
) -> None:
    profile_id = subscribed(ALICE, "newsletter").id
    links = links_for(profile_id, key_of(profile_id), None)
    app.test_client(use_cookies=False).post(
        path_of(links.unsubscribe_url), data={"List-Unsubscribe": "One-Click"}
    )
    decision = decide(ALICE, "newsletter")
    assert decision.reason == "global_unsubscribed"
    assert decision.subscription_status == "subscribed"  # rule 3: kept as it was


def test_the_unsubscribe_page_offers_this_resource_or_everything(
    client: FlaskClient, newsletter: Resource, brand: Resource
) -> None:
    profile_id = subscribed(ALICE, "newsletter", "brand").id
    path = path_of(links_for(profile_id, key_of(profile_id), brand.id).unsubscribe_url)
    before = database_state()
    page = client.get(path)
    assert page.status_code == 200
    assert "Brand news only" in page.get_data(as_text=True)
    assert database_state() == before  # the GET changed nothing

    done = submit(client, path, {"scope": "resource"})
    assert done.status_code == 200
    assert decide(ALICE, "brand").reason == "subscription_unsubscribed"
    assert decide(ALICE, "newsletter").allowed

    submit(client, path, {"scope": "everything"})
    assert decide(ALICE, "newsletter").reason == "global_unsubscribed"


def test_an_unsubscribe_without_the_csrf_token_is_refused_and_changes_nothing(
    client: FlaskClient, newsletter: Resource
) -> None:
    profile_id = subscribed(ALICE, "newsletter").id
    path = path_of(links_for(profile_id, key_of(profile_id), newsletter.id).unsubscribe_url)
    before = database_state()
    missing = client.post(path, data={"scope": "resource"})
    wrong = client.post(path, data={"scope": "resource", "csrf_token": "not-the-token"})
    assert (missing.status_code, wrong.status_code) == (400, 400)
    assert "This form has expired" in missing.get_data(as_text=True)
    assert database_state() == before


def test_a_token_for_one_purpose_never_works_for_another(app: Flask, newsletter: Resource) -> None:
    profile_id = subscribed(ALICE, "newsletter").id
    client = app.test_client(use_cookies=False)
    key = key_of(profile_id)
    confirm_token = make_token(
        Purpose.CONFIRM, LinkTarget(profile_id, key, resource_id=newsletter.id)
    )
    preferences_token = make_token(Purpose.PREFERENCES, LinkTarget(profile_id, key))
    before = database_state()
    for path in (
        f"/unsubscribe/{confirm_token}",
        f"/unsubscribe/{preferences_token}",
        f"/preferences/{confirm_token}",
    ):
        assert client.get(path).status_code == 400, path
        answer = client.post(path, data={"List-Unsubscribe": "One-Click"})
        assert answer.status_code in (400, 405), path
    assert database_state() == before


def test_a_token_of_another_resource_touches_only_that_resource(
    app: Flask, newsletter: Resource, brand: Resource
) -> None:
    profile_id = subscribed(ALICE, "newsletter", "brand").id
    brand_link = path_of(links_for(profile_id, key_of(profile_id), brand.id).unsubscribe_url)
    app.test_client().post(brand_link, data={"List-Unsubscribe": "One-Click"})
    assert decide(ALICE, "newsletter").allowed
    assert decide(ALICE, "brand").reason == "subscription_unsubscribed"


def test_a_token_with_one_byte_changed_is_refused(app: Flask, newsletter: Resource) -> None:
    profile_id = subscribed(ALICE, "newsletter").id
    target = LinkTarget(profile_id, key_of(profile_id), resource_id=newsletter.id)
    token = make_token(Purpose.UNSUBSCRIBE, target)
    client = app.test_client()
    before = database_state()
    for position in (0, len(token) // 2, len(token) - 1):
        changed = (
            token[:position] + ("A" if token[position] != "A" else "B") + token[position + 1 :]
        )
        page = client.post(f"/unsubscribe/{changed}", data={"List-Unsubscribe": "One-Click"})
        assert page.status_code == 400
        assert "This link is not valid" in client.get(f"/unsubscribe/{changed}").get_data(
            as_text=True
        )
    assert client.get("/confirm/garbage").status_code == 400
    assert database_state() == before


def test_a_token_signed_with_a_rotated_out_key_stops_working(
    app: Flask, newsletter: Resource
) -> None:
    profile_id = subscribed(ALICE, "newsletter").id
    old = make_token(Purpose.PREFERENCES, LinkTarget(profile_id, key_of(profile_id)))
    app.config.update(SECRET_KEY="new-secret", SECRET_KEY_FALLBACKS=["test-secret"])
    client = app.test_client()
    assert client.get(f"/preferences/{old}").status_code == 200  # still accepted while rotating
    app.config.update(SECRET_KEY_FALLBACKS=[])
    assert client.get(f"/preferences/{old}").status_code == 400


def test_an_expired_confirmation_link_offers_a_fresh_one(
    app: Flask, client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource, clock: Clock
) -> None:
    submit(client, "/subscribe/newsletter", {"email": ALICE})
    run_worker()
    path = link_to(smtp_server.messages[-1], "/confirm/")
    app.config["CONFIRM_MAX_AGE"] = 0
    clock.advance(1)  # itsdangerous timestamps are whole seconds
    before = database_state()
    page = client.get(path)
    assert page.status_code == 410
    html = page.get_data(as_text=True)
    assert "This link has expired" in html
    csrf = CSRF.search(html).group(1)  # type: ignore[union-attr]
    # Pressing the old button changes nothing: the link has expired.
    assert client.post(path, data={"csrf_token": csrf}).status_code == 410
    assert database_state() == before
    resend = client.post(path + "/resend", data={"csrf_token": csrf})
    assert resend.status_code == 200
    app.config["CONFIRM_MAX_AGE"] = 3600
    run_worker()
    fresh = link_to(smtp_server.messages[-1], "/confirm/")
    assert fresh != path
    submit(client, fresh, {})
    assert decide(ALICE, "newsletter").allowed


def test_links_for_an_erased_profile_say_so(client: FlaskClient, newsletter: Resource) -> None:
    from app.services.preferences import erase
    from app.services.statuses import Actor

    profile_id = subscribed(ALICE, "newsletter").id
    links = links_for(profile_id, key_of(profile_id), newsletter.id)
    erase(profile_id, actor=Actor())
    assert client.get(path_of(links.unsubscribe_url)).status_code == 410
    assert client.get(path_of(links.preferences_url)).status_code == 410
    one_click = client.post(path_of(links.unsubscribe_url), data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200  # nothing left to send to; the provider is satisfied
