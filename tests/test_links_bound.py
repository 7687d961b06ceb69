"""Issue 9, item 1: a link names what never recurs. An erased person's old links must open
nothing, whoever signs up next; ids are never handed out twice on SQLite; a confirmation link
confirms only the signup request it was sent for."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, event, text

from app import queries
from app.extensions import db
from app.links import links_for
from app.models import Profile, Resource, Subscription
from app.services import imports
from app.services.eligibility import decide
from app.services.preferences import erase
from app.services.statuses import Actor
from app.tokens import LinkTarget, Purpose, make_token
from tests import factories
from tests.conftest import on_postgres
from tests.helpers import database_state, link_to, run_worker, submit
from tests.smtp import SmtpServer

ALICE = "alice@example.com"
BOB = "bob@example.com"


def path_of(url: str) -> str:
    return url.removeprefix("https://optin.test")


def profile(email: str) -> Profile:
    found = queries.profile_by_email(email)
    assert found is not None, email
    return found


def sign_up(client: FlaskClient, email: str) -> None:
    assert submit(client, "/subscribe/newsletter", {"email": email}).status_code == 200


def confirm_link(smtp_server: SmtpServer, email: str) -> str:
    run_worker()
    sent = [m for m in smtp_server.messages if m["To"] == email and "confirm" in m["Subject"]]
    assert sent, email
    return link_to(sent[-1], "/confirm/")


def hand_out_again(profile_id: int) -> None:
    """Make the database give ``profile_id`` to the next new profile, as SQLite did before
    AUTOINCREMENT (and as a sequence reset or a restored backup still can): the link key alone
    must then keep an old link from opening the new profile."""
    if on_postgres():
        db.session.execute(
            text("SELECT setval(pg_get_serial_sequence('profiles', 'id'), :id, false)"),
            {"id": profile_id},
        )
    else:
        db.session.execute(
            text("UPDATE sqlite_sequence SET seq = :seq WHERE name = 'profiles'"),
            {"seq": profile_id - 1},
        )
    db.session.commit()


def old_links(client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource) -> dict[str, str]:
    """Alice, the newest profile, signs up; her links as her emails and the API carry them."""
    sign_up(client, ALICE)
    alice = profile(ALICE)
    links = links_for(alice.id, alice.link_key, newsletter.id)
    return {
        "preferences": path_of(links.preferences_url),
        "unsubscribe": path_of(links.unsubscribe_url),
        "confirm": confirm_link(smtp_server, ALICE),
    }


def assert_they_open_nothing(
    app: Flask, client: FlaskClient, links: dict[str, str], victim: str
) -> None:
    before = database_state()
    for name in ("preferences", "unsubscribe", "confirm"):
        page = client.get(links[name])
        assert page.status_code == 410, name
        assert victim not in page.get_data(as_text=True), name
    provider = app.test_client(use_cookies=False)
    one_click = provider.post(links["unsubscribe"], data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200  # the same answer as for any erased profile
    csrf = submit(client, links["preferences"] + "/everything", {}, form_path="/subscribe")
    assert csrf.status_code == 410
    confirm = submit(client, links["confirm"], {}, form_path="/subscribe")
    assert confirm.status_code == 410
    assert database_state() == before
    assert decide(victim, "newsletter").subscription_status == "unconfirmed"


@pytest.mark.parametrize("id_comes_back", [False, True], ids=["as-it-happens", "id-reused"])
def test_an_erased_persons_old_links_open_nothing_of_the_next_person(
    app: Flask,
    client: FlaskClient,
    smtp_server: SmtpServer,
    newsletter: Resource,
    id_comes_back: bool,
) -> None:
    links = old_links(client, smtp_server, newsletter)
    alice_id = profile(ALICE).id
    erase(alice_id, actor=Actor())
    if id_comes_back:
        hand_out_again(alice_id)
    sign_up(client, BOB)
    if id_comes_back:
        assert profile(BOB).id == alice_id
    else:
        assert profile(BOB).id > alice_id  # never handed out again
    assert_they_open_nothing(app, client, links, BOB)


def test_an_import_after_an_erasure_gives_the_old_links_nothing_to_open(
    app: Flask,
    client: FlaskClient,
    smtp_server: SmtpServer,
    newsletter: Resource,
    tmp_path: Path,
) -> None:
    links = old_links(client, smtp_server, newsletter)
    alice_id = profile(ALICE).id
    erase(alice_id, actor=Actor())
    csv = tmp_path / "people.csv"
    csv.write_text(f"email,status\n{BOB},unconfirmed\ncarol@example.com,unsubscribed\n")
    job = imports.import_file(str(csv), "newsletter", actor="admin@example.com")
    db.session.rollback()
    assert job.imported_rows == 2
    assert min(profile(BOB).id, profile("carol@example.com").id) > alice_id
    assert_they_open_nothing(app, client, links, BOB)


def test_ids_are_never_handed_out_twice_after_the_newest_row_is_deleted(
    app: Flask, newsletter: Resource
) -> None:
    factories.signup(ALICE, "newsletter")
    newest = profile(ALICE)
    newest_id = newest.id
    subscription_id = newest.subscriptions[0].id
    db.session.execute(delete(Subscription))
    db.session.execute(delete(Profile))
    db.session.commit()
    factories.signup(BOB, "newsletter")
    bob = profile(BOB)
    assert bob.id > newest_id
    assert bob.subscriptions[0].id > subscription_id
    assert bob.link_key != newest.link_key


def test_a_confirmation_link_from_before_an_unsubscribe_does_not_subscribe_again(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    sign_up(client, ALICE)
    confirm = confirm_link(smtp_server, ALICE)
    assert "you are subscribed" in submit(client, confirm, {}).get_data(as_text=True)
    # The double click: the same link again says so, and changes nothing.
    before = database_state()
    again = submit(client, confirm, {})
    assert again.status_code == 200
    assert "already" in again.get_data(as_text=True)
    assert database_state() == before

    alice = profile(ALICE)
    unsubscribe = path_of(links_for(alice.id, alice.link_key, newsletter.id).unsubscribe_url)
    submit(client, unsubscribe, {"scope": "resource"})
    before = database_state()
    assert client.get(confirm).status_code == 410
    assert submit(client, confirm, {}, form_path="/subscribe").status_code == 410
    assert database_state() == before
    assert decide(ALICE, "newsletter").subscription_status == "unsubscribed"


def test_a_pending_confirmation_link_does_not_lift_an_unsubscribe_from_everything(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    sign_up(client, ALICE)
    confirm = confirm_link(smtp_server, ALICE)
    alice = profile(ALICE)
    preferences = path_of(links_for(alice.id, alice.link_key, None).preferences_url)
    submit(client, preferences + "/everything", {}, form_path=preferences)
    before = database_state()
    assert submit(client, confirm, {}, form_path="/subscribe").status_code == 410
    assert database_state() == before
    assert decide(ALICE, "newsletter").global_status == "unsubscribed"


def test_a_confirmation_link_of_a_deleted_signup_does_not_confirm_the_new_one(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    sign_up(client, ALICE)
    old = confirm_link(smtp_server, ALICE)
    # Retention (rule 8) deletes the unconfirmed subscription; the profile stays (a stranger
    # could then sign the address up again, and the old link must not confirm that).
    db.session.execute(delete(Subscription))
    db.session.commit()
    factories.signup(ALICE, "newsletter")
    before = database_state()
    assert submit(client, old, {}, form_path="/subscribe").status_code == 410
    assert database_state() == before
    assert decide(ALICE, "newsletter").subscription_status == "unconfirmed"


def test_the_page_of_a_confirmation_link_reads_its_profile_and_subscriptions_at_once(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    sign_up(client, ALICE)
    link = path_of(confirm_link(smtp_server, ALICE))
    seen: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", note)
    try:
        page = client.get(link)
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
    assert page.status_code == 200 and "The Newsletter" in page.text
    assert len([s for s in seen if s.lstrip().upper().startswith("SELECT")]) == 1
    # A profile left with no subscription at all (its only signup deleted by retention) comes
    # back as one row without a subscription: its link confirms nothing and is gone.
    db.session.execute(delete(Subscription))
    db.session.commit()
    assert client.get(link).status_code == 410


def test_only_the_newest_confirmation_email_of_an_address_confirms(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    sign_up(client, ALICE)
    first = confirm_link(smtp_server, ALICE)
    sign_up(client, ALICE)
    second = confirm_link(smtp_server, ALICE)
    assert first != second
    assert submit(client, first, {}, form_path="/subscribe").status_code == 410
    assert submit(client, second, {}).status_code == 200
    assert decide(ALICE, "newsletter").allowed


def test_a_link_with_its_key_changed_or_another_persons_key_is_refused(
    app: Flask, client: FlaskClient, newsletter: Resource
) -> None:
    factories.signup(ALICE, "newsletter")
    factories.signup(BOB, "newsletter")
    alice, bob = profile(ALICE), profile(BOB)
    token = make_token(Purpose.PREFERENCES, LinkTarget(alice.id, alice.link_key))
    payload, signature = token.rsplit(".", 1)
    tampered = payload.replace(alice.link_key, bob.link_key) + "." + signature
    before = database_state()
    assert client.get(f"/preferences/{tampered}").status_code == 400
    # Validly signed (a leaked secret, or a bug that mints one) but not Alice's key: nothing.
    for purpose, path in (
        (Purpose.PREFERENCES, "/preferences/"),
        (Purpose.UNSUBSCRIBE, "/unsubscribe/"),
        (Purpose.CONFIRM, "/confirm/"),
        (Purpose.DATA, "/data/"),
    ):
        forged = make_token(purpose, LinkTarget(alice.id, bob.link_key, resource_id=None))
        page = client.get(path + forged)
        assert page.status_code == 410, purpose
        assert ALICE not in page.get_data(as_text=True)
    assert database_state() == before
