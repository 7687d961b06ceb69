"""The suppression list in the admin view: search, add by hand, lift; each hand-made change is
kept with its reason, shown on the list and in the profile's history."""

from __future__ import annotations

import html

from flask.testing import FlaskClient

from app import queries
from app.addresses import email_hash
from app.models import Resource, Suppression, SuppressionEvent
from app.services import eligibility
from app.services.preferences import erase
from app.services.statuses import Actor
from tests import factories
from tests.conftest import ADMIN_EMAIL
from tests.helpers import count, csrf_token, database_state, submit


def lift(client: FlaskClient, address: str, reason: str):  # type: ignore[no-untyped-def]
    token = csrf_token(client, "/admin/suppressions")
    return client.post(
        f"/admin/suppressions/{email_hash(address)}/lift",
        data={"csrf_token": token, "reason": reason},
    )


def test_search_lists_by_the_start_of_the_address(admin_client: FlaskClient) -> None:
    factories.hard_bounce("bounced@example.com")
    factories.hard_bounce("other@example.com")
    page = admin_client.get("/admin/suppressions?q=BOUN").get_data(as_text=True)
    assert "bounced@example.com" in page and "other@example.com" not in page
    everything = admin_client.get("/admin/suppressions").get_data(as_text=True)
    assert "bounced@example.com" in everything and "other@example.com" in everything
    assert "No suppressed address starts with" in admin_client.get(
        "/admin/suppressions?q=zz"
    ).get_data(as_text=True)


def test_add_an_address_by_hand_with_a_reason(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    factories.signup("Someone@Example.com", "newsletter")
    factories.confirm("someone@example.com", "newsletter")
    answer = submit(
        admin_client,
        "/admin/suppressions",
        {"email": " Someone@Example.com ", "reason": "legal request"},
    )
    assert answer.status_code == 303
    row = queries.suppression_of(email_hash("someone@example.com"))
    assert row is not None and row.reason == "admin" and row.actor == ADMIN_EMAIL
    assert eligibility.decide("someone@example.com", "newsletter").reason == "suppressed"
    page = admin_client.get("/admin/suppressions").get_data(as_text=True)
    assert "Suppressed" in page and "legal request" in page
    profile = queries.profile_by_email("someone@example.com")
    history = (
        admin_client.get(f"/admin/profiles/{profile.id}")
        .get_data(as_text=True)
        .split('id="history"')[1]
    )
    assert "not suppressed → suppressed" in history and "legal request" in history


def test_adding_needs_a_good_address_and_a_reason(admin_client: FlaskClient) -> None:
    factories.hard_bounce("there@example.com")
    for data, message in [
        (
            {"email": "not an address", "reason": "x"},
            "Enter an email address like name@example.com.",
        ),
        ({"email": "a@example.com", "reason": ""}, "Say why the address is suppressed."),
        (
            {"email": "there@example.com", "reason": "again"},
            "there@example.com is on the suppression list already.",
        ),
    ]:
        before = database_state()
        answer = submit(admin_client, "/admin/suppressions", data)
        assert answer.status_code == 400
        assert message in html.unescape(answer.get_data(as_text=True))
        assert database_state() == before


def test_lifting_is_recorded_with_its_reason(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    factories.signup("bounced@example.com", "newsletter")
    factories.hard_bounce("bounced@example.com")
    answer = lift(admin_client, "bounced@example.com", "mailbox exists again, checked by phone")
    assert answer.status_code == 303
    assert queries.suppression_of(email_hash("bounced@example.com")) is None
    event = queries.suppression_events_of(email_hash("bounced@example.com"))[-1]
    assert (event.action, event.actor, event.reason) == (
        "lifted",
        ADMIN_EMAIL,
        "mailbox exists again, checked by phone",
    )
    page = admin_client.get("/admin/suppressions").get_data(as_text=True)
    assert "Lifted the suppression of bounced@example.com." in page
    recent = page.split("Recent changes by hand")[1]
    assert "bounced@example.com" in recent and "checked by phone" in recent
    # The statuses stay as they are: the admin changes those on the profile page.
    assert queries.profile_by_email("bounced@example.com").status == "hardbounced"


def test_lifting_needs_a_reason_and_a_csrf_token(admin_client: FlaskClient) -> None:
    factories.hard_bounce("bounced@example.com")
    before = database_state()
    bounce_history = count(SuppressionEvent)  # the bounce's own line: added
    answer = lift(admin_client, "bounced@example.com", " ")
    assert answer.status_code == 400
    assert "Say why the suppression is lifted." in answer.get_data(as_text=True)
    path = f"/admin/suppressions/{email_hash('bounced@example.com')}/lift"
    assert admin_client.post(path, data={"reason": "no token"}).status_code == 400
    assert admin_client.post(path, data={"reason": "x", "csrf_token": "forged"}).status_code == 400
    assert database_state() == before and count(SuppressionEvent) == bounce_history == 1


def test_an_erased_address_is_shown_as_such_and_stays(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    factories.signup("gone@example.com", "newsletter")
    erase(queries.profile_by_email("gone@example.com").id, actor=Actor())
    page = admin_client.get("/admin/suppressions").get_data(as_text=True)
    assert "erased address" in page and "gone@example.com" not in page
    before = database_state()
    answer = lift(admin_client, "gone@example.com", "please")
    assert answer.status_code == 409
    assert "an erased address stays on the suppression list" in answer.get_data(as_text=True)
    assert database_state() == before


def test_lifting_an_address_not_on_the_list_is_a_404(admin_client: FlaskClient) -> None:
    assert lift(admin_client, "nobody@example.com", "x").status_code == 404
    assert count(Suppression) == 0


def test_anonymous_changes_are_sent_to_the_login_page(client: FlaskClient) -> None:
    factories.hard_bounce("bounced@example.com")
    before = database_state()
    token = csrf_token(client, "/admin/login")
    for path, data in [
        ("/admin/suppressions", {"email": "a@example.com", "reason": "x"}),
        (f"/admin/suppressions/{email_hash('bounced@example.com')}/lift", {"reason": "x"}),
    ]:
        answer = client.post(path, data={"csrf_token": token, **data})
        assert answer.status_code == 302 and answer.headers["Location"].startswith("/admin/login")
    assert database_state() == before


def test_erasure_blanks_the_address_and_the_reason_in_the_lists_history_too(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    factories.signup("gone@example.com", "newsletter")
    reason = "Gone Person asked on the phone"
    submit(admin_client, "/admin/suppressions", {"email": "gone@example.com", "reason": reason})
    admin_client.get("/admin/suppressions")  # the page that shows the flashed "Suppressed ..."
    assert queries.suppression_events_of(email_hash("gone@example.com"))[0].email == (
        "gone@example.com"
    )
    erase(queries.profile_by_email("gone@example.com").id, actor=Actor())
    event = queries.suppression_events_of(email_hash("gone@example.com"))[0]
    # The history keeps that an admin added it, and when; the words about the person go.
    assert event.email is None and event.reason is None
    assert event.action == "added" and event.actor == ADMIN_EMAIL
    page = admin_client.get("/admin/suppressions").get_data(as_text=True)
    assert "gone@example.com" not in page and reason not in page
