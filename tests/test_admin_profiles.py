"""The admin's profile pages: search, the profile page with its proof and history, and the
status changes, through the test client as a logged-in admin would use them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from flask.testing import FlaskClient

from app import queries
from app.models import Profile, Resource, StatusEvent
from app.services.statuses import Actor
from app.services.subscriptions import confirm_signup, request_signup
from tests import factories
from tests.conftest import ADMIN_EMAIL
from tests.helpers import confirm_target, count, csrf_token, database_state

ALICE = "alice@example.com"


def signed_up(
    email: str = ALICE, name: str | None = "Alice Example", *, slug: str = "newsletter"
) -> Profile:
    """A profile confirmed through the real flow, so it has a consent record."""
    request_signup(email, [slug], name=name, form=f"subscribe/{slug}", actor=Actor(ip="192.0.2.7"))
    profile = queries.profile_by_email(email)
    assert profile is not None
    resource = queries.resource_by_slug(slug)
    assert resource is not None
    text = queries.current_consent_text(resource.id)
    target = confirm_target(email, resource, f"subscribe/{slug}", text.id if text else None)
    confirm_signup(target, actor=Actor(ip="192.0.2.8", user_agent="TestBrowser/1.0"))
    return profile


def page_text(client: FlaskClient, path: str) -> str:
    answer = client.get(path)
    assert answer.status_code == 200, path
    return answer.get_data(as_text=True)


def options_of(html: str, select_id: str) -> list[str]:
    """The values a select offers, as a browser would show them."""
    found = re.search(rf'<select id="{select_id}" name="status">(.*?)</select>', html, re.S)
    assert found, select_id
    return re.findall(r'<option value="([a-z]+)">', found.group(1))


def change(client: FlaskClient, path: str, data: dict[str, str], profile_id: int):  # type: ignore[no-untyped-def]
    token = csrf_token(client, f"/admin/profiles/{profile_id}")
    return client.post(path, data={"csrf_token": token, **data})


# --- Search ------------------------------------------------------------------------------------


def test_search_finds_profiles_by_the_start_of_email_or_name_in_any_case(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    signed_up("alice@example.com", "Alice Example")
    signed_up("bob@example.com", "Zed Bobson")
    signed_up("carol@example.com", "alicia keys")
    found = page_text(admin_client, "/admin/profiles?q=ALI")
    assert "alice@example.com" in found and "carol@example.com" in found
    assert "bob@example.com" not in found
    assert "bob@example.com" in page_text(admin_client, "/admin/profiles?q=zed")
    assert "bob@example.com" in page_text(admin_client, "/admin/profiles?q=Bob@")
    # A prefix, not a substring; and LIKE's wildcards are letters like any other.
    assert "No profile" in page_text(admin_client, "/admin/profiles?q=example")
    assert "No profile" in page_text(admin_client, "/admin/profiles?q=%25")
    assert "No profile" in page_text(admin_client, "/admin/profiles?q=a_ice")


def test_search_pages_through_many_results(admin_client: FlaskClient, newsletter: Resource) -> None:
    for number in range(queries.SEARCH_PAGE_SIZE + 5):
        factories.signup(f"user{number:03d}@example.com", "newsletter")
    first = page_text(admin_client, "/admin/profiles?q=user")
    assert first.count('href="/admin/profiles/') == queries.SEARCH_PAGE_SIZE
    next_link = re.search(r'href="(/admin/profiles\?[^"]+)" rel="next"', first)
    assert next_link
    second = page_text(admin_client, next_link.group(1).replace("&amp;", "&"))
    assert second.count('href="/admin/profiles/') == 5
    assert 'rel="next"' not in second
    shown = set(re.findall(r"user\d{3}@example.com", first + second))
    assert len(shown) == queries.SEARCH_PAGE_SIZE + 5


def test_the_search_page_without_a_term_asks_for_one(admin_client: FlaskClient) -> None:
    assert "Type the first letters" in page_text(admin_client, "/admin/profiles")


# --- The profile page --------------------------------------------------------------------------


def test_the_profile_page_shows_statuses_consent_proof_and_history(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    profile = signed_up()
    html = page_text(admin_client, f"/admin/profiles/{profile.id}")
    assert '<strong id="global-status">subscribed</strong>' in html
    assert "The Newsletter" in html
    # The proof: when, from where, which browser, which form, which consent text version.
    assert "192.0.2.8" in html and "TestBrowser/1.0" in html and "subscribe/newsletter" in html
    assert "version 1:" in html
    history = html.split('id="history"')[1]
    assert history.count("<tr>") == 1 + 4  # the heading and four events
    assert "— → unconfirmed" in history and "unconfirmed → subscribed" in history
    assert "signup" in history and "confirm" in history and "192.0.2.7" in history


def test_an_unknown_profile_is_a_404(admin_client: FlaskClient) -> None:
    assert admin_client.get("/admin/profiles/999999").status_code == 404


def test_the_forms_offer_only_what_the_rules_allow(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    profile = signed_up()
    html = page_text(admin_client, f"/admin/profiles/{profile.id}")
    assert options_of(html, "global-change-status") == [
        "unsubscribed",
        "complainer",
        "suspended",
        "invalid",
    ]
    factories.unsubscribe(ALICE, None)
    html = page_text(admin_client, f"/admin/profiles/{profile.id}")
    # Nothing to pause in a stopped status; hardbounced and unconfirmed are never offered.
    assert options_of(html, "global-change-status") == ["subscribed", "complainer", "invalid"]


# --- Changing statuses -------------------------------------------------------------------------


def test_suspending_until_a_time_records_the_admin_and_the_reason(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    profile = signed_up()
    until = (datetime.now(UTC) + timedelta(days=1)).replace(second=0, microsecond=0)
    answer = change(
        admin_client,
        f"/admin/profiles/{profile.id}/status",
        {
            "status": "suspended",
            "suspended_until": until.strftime("%Y-%m-%dT%H:%M"),
            "reason": "asked by phone",
        },
        profile.id,
    )
    assert answer.status_code == 303
    assert answer.headers["Location"] == f"/admin/profiles/{profile.id}"
    html = page_text(admin_client, answer.headers["Location"])
    assert "Changed the global status to suspended." in html
    assert '<strong id="global-status">suspended</strong>' in html
    event = queries.events_of_profile(profile.id)[-1]
    assert (event.old_status, event.new_status, event.cause) == ("subscribed", "suspended", "admin")
    assert event.actor == ADMIN_EMAIL and event.reason == "asked by phone"
    assert event.suspended_until == until
    assert event.ip == "127.0.0.1"
    assert "asked by phone" in html.split('id="history"')[1]


def test_a_subscription_status_changes_alone(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    profile = signed_up()
    subscription = queries.subscriptions_of_profile(profile.id)[0]
    answer = change(
        admin_client,
        f"/admin/profiles/{profile.id}/subscriptions/{subscription.id}/status",
        {"status": "unsubscribed", "reason": "wrote to support"},
        profile.id,
    )
    assert answer.status_code == 303
    assert queries.subscription_by_id(subscription.id).status == "unsubscribed"
    assert queries.profile_by_id(profile.id).status == "subscribed"
    event = queries.events_of_profile(profile.id)[-1]
    assert event.resource_id == newsletter.id and event.reason == "wrote to support"


def test_invalid_needs_a_reason_and_then_takes_it(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    profile = signed_up()
    before = database_state()
    path = f"/admin/profiles/{profile.id}/status"
    answer = change(admin_client, path, {"status": "invalid", "reason": "   "}, profile.id)
    assert answer.status_code == 400
    assert "Say why the address is invalid." in answer.get_data(as_text=True)
    assert database_state() == before
    answer = change(
        admin_client, path, {"status": "invalid", "reason": "a role account"}, profile.id
    )
    assert answer.status_code == 303
    assert queries.profile_by_id(profile.id).status == "invalid"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"status": "suspended", "reason": "x"}, "A suspension needs an end time."),
        (
            {"status": "suspended", "suspended_until": "2001-01-01T00:00"},
            "suspended_until must be in the future",
        ),
        (
            {"status": "unsubscribed", "suspended_until": "2099-01-01T00:00"},
            "Only a suspension takes an end time.",
        ),
        ({"status": "suspended", "suspended_until": "tomorrow"}, "Not a valid datetime value."),
        ({"status": "sleeping"}, "Not a valid choice."),
        (
            {"status": "unsubscribed", "reason": "x" * 501},
            "Field cannot be longer than 500 characters.",
        ),
    ],
)
def test_a_bad_change_gets_a_clear_error_and_changes_nothing(
    admin_client: FlaskClient, newsletter: Resource, data: dict[str, str], message: str
) -> None:
    profile = signed_up()
    before = database_state()
    answer = change(admin_client, f"/admin/profiles/{profile.id}/status", data, profile.id)
    assert answer.status_code in (400, 409)
    assert message in answer.get_data(as_text=True)
    assert database_state() == before


@pytest.mark.parametrize("target", ["hardbounced", "unconfirmed", "subscribed"])
def test_a_forged_change_the_rules_forbid_is_refused(
    admin_client: FlaskClient, newsletter: Resource, target: str
) -> None:
    """The page never offers these from `subscribed`; a hand-made POST gets the rule's answer."""
    profile = signed_up()
    subscription = queries.subscriptions_of_profile(profile.id)[0]
    before = database_state()
    events = count(StatusEvent)
    for path in (
        f"/admin/profiles/{profile.id}/status",
        f"/admin/profiles/{profile.id}/subscriptions/{subscription.id}/status",
    ):
        answer = change(admin_client, path, {"status": target, "reason": "forged"}, profile.id)
        assert answer.status_code == 409
        assert f"Not changed: an admin cannot change subscribed to {target}." in answer.get_data(
            as_text=True
        )
    assert database_state() == before
    assert count(StatusEvent) == events


def test_suspending_a_stopped_status_is_refused(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    profile = signed_up()
    factories.unsubscribe(ALICE, None)
    before = database_state()
    answer = change(
        admin_client,
        f"/admin/profiles/{profile.id}/status",
        {"status": "suspended", "suspended_until": "2099-01-01T00:00", "reason": "x"},
        profile.id,
    )
    assert answer.status_code == 409
    assert database_state() == before


def test_another_profiles_subscription_cannot_be_changed_through_this_one(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    alice = signed_up()
    bob = signed_up("bob@example.com", "Bob")
    bobs = queries.subscriptions_of_profile(bob.id)[0]
    before = database_state()
    answer = change(
        admin_client,
        f"/admin/profiles/{alice.id}/subscriptions/{bobs.id}/status",
        {"status": "unsubscribed"},
        alice.id,
    )
    assert answer.status_code == 404
    assert database_state() == before


def test_a_change_without_or_with_a_wrong_csrf_token_is_refused(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    profile = signed_up()
    before = database_state()
    path = f"/admin/profiles/{profile.id}/status"
    assert admin_client.post(path, data={"status": "unsubscribed"}).status_code == 400
    answer = admin_client.post(path, data={"status": "unsubscribed", "csrf_token": "forged"})
    assert answer.status_code == 400
    assert database_state() == before


def test_an_anonymous_change_is_sent_to_the_login_page(
    client: FlaskClient, newsletter: Resource
) -> None:
    profile = signed_up()
    before = database_state()
    token = csrf_token(client, "/admin/login")
    answer = client.post(
        f"/admin/profiles/{profile.id}/status", data={"status": "unsubscribed", "csrf_token": token}
    )
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/admin/login")
    assert client.get(f"/admin/profiles/{profile.id}").status_code == 302
    assert database_state() == before


def test_a_get_changes_nothing(admin_client: FlaskClient, newsletter: Resource) -> None:
    profile = signed_up()
    before = database_state()
    answer = admin_client.get(f"/admin/profiles/{profile.id}/status?status=unsubscribed")
    assert answer.status_code == 405
    assert database_state() == before


def test_paging_through_a_search_lists_every_match_once_in_order(newsletter: Resource) -> None:
    """Emails and names that match, some profiles by both: small pages, each starting after
    the last one, together list each matching profile exactly once, ordered by what matched."""
    expected = set()
    for number in range(23):
        email = f"anna{number}@example.com" if number % 3 == 0 else f"x{number}@example.com"
        name = ["Anna Berg", "ANNABEL", "Hanna", None][number % 4]
        factories.signup(email, "newsletter", name=name)
        if email.startswith("anna") or (name or "").lower().startswith("anna"):
            expected.add(email)
    seen: list[str] = []
    keys: list[tuple[str, int]] = []
    after = None
    while True:
        page = queries.search_profiles("AnNa", after=after, limit=4)
        if not page:
            break
        seen += [profile.email for _, profile in page]
        keys += [(key, profile.id) for key, profile in page]
        after = keys[-1]
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen))
    assert keys == sorted(keys)
