"""Emails rendered once per process and kept (app/kept_emails.py): each recipient still reads
their own links and name, escaped in the HTML part and as they are in the text, in their language,
about their resource; and a kept email renders no template."""

from __future__ import annotations

from collections import Counter
from email.message import EmailMessage
from typing import Any

import pytest
from flask import Flask
from jinja2 import Template
from sqlalchemy import delete

from app import kept_emails, outbox, queries
from app.database import write_transaction
from app.links import links_for
from app.models import OutboxMessage, Resource
from app.services import preferences, subscriptions
from app.services.resources import create_resource
from app.services.statuses import CUSTOMER
from app.stand_ins import StandIns
from tests.helpers import ALICE, BOB, confirm_target, html_of, link_to, run_worker, text_of
from tests.smtp import SmtpServer

CAROL = "carol@example.com"


@pytest.fixture(autouse=True)
def nothing_kept(app: Flask) -> None:
    """One app serves every test: each of these starts with no email kept."""
    app.extensions.pop(kept_emails.EXTENSION, None)


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many times each Jinja template was rendered (by name), from here on."""
    counted: Counter[str] = Counter()
    render = Template.render

    def counting(template: Template, *args: Any, **kwargs: Any) -> str:
        counted[template.name or ""] += 1
        return render(template, *args, **kwargs)

    monkeypatch.setattr(Template, "render", counting)
    return counted


def welcomed(address: str, resource: Resource, **signup: Any) -> None:
    """``address`` signed up to ``resource`` and confirmed: a confirmation and a welcome wait."""
    subscriptions.request_signup(address, [resource.slug], form="page", actor=CUSTOMER, **signup)
    subscriptions.confirm_signup(confirm_target(address, resource, form="page"), actor=CUSTOMER)


def inbox_of(smtp_server: SmtpServer, address: str) -> list[EmailMessage]:
    return [message for message in smtp_server.messages if message["To"] == address]


def welcome_of(smtp_server: SmtpServer, address: str) -> EmailMessage:
    (welcome,) = [m for m in inbox_of(smtp_server, address) if str(m["Subject"]).startswith("W")]
    return welcome


def links_of(address: str, resource: Resource | None) -> tuple[str, str]:
    """The unsubscribe and preference links of ``address``'s mail about ``resource`` (None:
    about no one resource)."""
    profile = queries.profile_by_email(address)
    assert profile is not None
    links = links_for(profile.id, profile.link_key, resource.id if resource else None)
    return links.unsubscribe_url, links.preferences_url


def queue(address: str, template: str, **context: Any) -> None:
    """A message of ``template`` to ``address`` (a profile already), with exactly ``context``."""
    profile = queries.profile_by_email(address)
    assert profile is not None
    with write_transaction():
        outbox.enqueue(address, template, profile_id=profile.id, **context)


def test_two_subscribers_of_one_resource_each_read_their_own_links_not_the_others(
    app: Flask, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    welcomed(ALICE, newsletter)
    welcomed(BOB, newsletter)
    assert run_worker().sent == 4
    alice, bob = links_of(ALICE, newsletter), links_of(BOB, newsletter)
    assert alice != bob
    for address, own, other in [(ALICE, alice, bob), (BOB, bob, alice)]:
        welcome = welcome_of(smtp_server, address)
        assert welcome["Subject"] == "Welcome to The Newsletter"
        assert f"<{own[0]}>" in str(welcome["List-Unsubscribe"])
        for part in (text_of(welcome), html_of(welcome)):
            assert all(link in part for link in own)
            assert not any(link in part for link in other)
    confirm_links = [
        {line for line in text_of(message).split() if "/confirm/" in line}
        for address in (ALICE, BOB)
        for message in inbox_of(smtp_server, address)
        if "confirm" in str(message["Subject"])
    ]
    assert len(confirm_links) == 2 and all(len(links) == 1 for links in confirm_links)
    assert confirm_links[0] != confirm_links[1]


def test_a_kept_email_renders_no_template(
    app: Flask, smtp_server: SmtpServer, newsletter: Resource, renders: Counter[str]
) -> None:
    for address in (ALICE, BOB, CAROL):
        welcomed(address, newsletter)
    assert run_worker().sent == 6
    welcome = ("subject.txt", "body.txt", "body.html")
    assert [renders[f"email/welcome/{name}"] for name in welcome] == [1, 1, 1]
    assert [renders[f"email/confirm/{name}"] for name in welcome] == [1, 1, 1]
    assert len({text_of(welcome_of(smtp_server, a)) for a in (ALICE, BOB, CAROL)}) == 3


def test_an_email_that_shows_not_every_link_of_its_context_is_kept_all_the_same(
    app: Flask, smtp_server: SmtpServer, newsletter: Resource, renders: Counter[str]
) -> None:
    """A preference link's context has a ``preferences_url`` (every message to a profile gets
    one) that its templates do not show."""
    for address in (ALICE, BOB):
        welcomed(address, newsletter)
    with write_transaction() as session:
        session.execute(delete(OutboxMessage))
    for address in (ALICE, BOB):
        preferences.request_preferences_link(address)
    assert run_worker().sent == 2
    assert renders["email/preferences_link/body.html"] == 1
    for address in (ALICE, BOB):
        (message,) = inbox_of(smtp_server, address)
        assert links_of(address, None)[0] in text_of(message)  # its unsubscribe link
        assert link_to(message, "/preferences/")


@pytest.mark.parametrize(
    "link",
    [
        "https://optin.test/data/1?a=1&b='2'",
        'https://optin.test/data/2?q=<x>&r="3"',
    ],
)
def test_a_link_is_escaped_in_the_html_part_and_as_it_is_in_the_text_part(
    app: Flask, smtp_server: SmtpServer, newsletter: Resource, link: str
) -> None:
    """The first message makes the kept copy, the second is made from it: both are escaped."""
    for address in (ALICE, BOB):
        subscriptions.request_signup(address, ["newsletter"], form="page", actor=CUSTOMER)
    with write_transaction() as session:
        session.execute(delete(OutboxMessage))  # the confirmations
    for address in (ALICE, BOB):
        queue(address, "data_link", data_link=f"{link}&to={address}", minutes=15, locale=None)
    assert run_worker().sent == 2
    for address in (ALICE, BOB):
        (message,) = inbox_of(smtp_server, address)
        own = f"{link}&to={address}"
        assert own in text_of(message)
        escaped = (
            own.replace("&", "&amp;")
            .replace("'", "&#39;")
            .replace('"', "&#34;")
            .replace("<", "&lt;")
            .replace(">", "&gt;")
        )
        assert f'href="{escaped}"' in html_of(message)
        assert own not in html_of(message)


def test_a_second_language_gets_its_own_copy(
    app: Flask, smtp_server: SmtpServer, newsletter: Resource, renders: Counter[str]
) -> None:
    welcomed(ALICE, newsletter, locale="de")
    welcomed(BOB, newsletter)
    welcomed(CAROL, newsletter, locale="de")
    assert run_worker().sent == 6
    assert renders["email/welcome/body.txt"] == 2
    for address, subject, hello in [
        (ALICE, "Willkommen bei The Newsletter", "Hallo,"),
        (BOB, "Welcome to The Newsletter", "Hello,"),
        (CAROL, "Willkommen bei The Newsletter", "Hallo,"),
    ]:
        welcome = inbox_of(smtp_server, address)[1]
        assert welcome["Subject"] == subject
        assert text_of(welcome).startswith(hello)
        assert all(link in text_of(welcome) for link in links_of(address, newsletter))


def test_another_resource_gets_its_own_copy(
    app: Flask, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    digest = create_resource("digest", "The Digest", description="Once a week & no more.")
    welcomed(ALICE, newsletter)
    welcomed(BOB, digest)
    welcomed(CAROL, newsletter)
    assert run_worker().sent == 6
    for address, resource in [(ALICE, newsletter), (BOB, digest), (CAROL, newsletter)]:
        welcome = inbox_of(smtp_server, address)[1]
        assert welcome["Subject"] == f"Welcome to {resource.name}"
        assert f"you are now subscribed to {resource.name}." in text_of(welcome)
        assert all(link in text_of(welcome) for link in links_of(address, resource))
    assert "Once a week & no more." in text_of(inbox_of(smtp_server, BOB)[1])
    assert "Once a week &amp; no more." in html_of(inbox_of(smtp_server, BOB)[1])
    assert "Once a week" not in text_of(inbox_of(smtp_server, ALICE)[1])


def test_a_named_welcome_greets_its_reader_by_name_and_an_unnamed_one_by_none(
    app: Flask, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    welcomed(ALICE, newsletter, name="Ann & <Co>")
    welcomed(BOB, newsletter, name="Bob")
    welcomed(CAROL, newsletter)
    assert run_worker().sent == 6
    for address, text_hello, html_hello in [
        (ALICE, "Hello Ann & <Co>,", "Hello Ann &amp; &lt;Co&gt;,"),
        (BOB, "Hello Bob,", "Hello Bob,"),
        (CAROL, "Hello,", "Hello,"),
    ]:
        welcome = welcome_of(smtp_server, address)
        assert text_of(welcome).startswith(text_hello + "\n")
        assert f"<p>{html_hello}</p>" in html_of(welcome)
    assert "Ann" not in text_of(welcome_of(smtp_server, BOB))


def test_the_kept_copies_stay_bounded_and_each_email_stays_right(app: Flask) -> None:
    beyond = kept_emails.MAX_EMAILS + 20
    for minutes in range(beyond):
        link = f"https://optin.test/data/{minutes}"
        email = outbox._rendered("data_link", {"data_link": link, "minutes": minutes})
        assert f"{link}\n" in email.text
        assert f"works for {minutes} minutes" in email.text
        assert len(app.extensions[kept_emails.EXTENSION]) <= kept_emails.MAX_EMAILS
    again = outbox._rendered("data_link", {"data_link": "https://optin.test/x", "minutes": 1})
    assert "works for 1 minutes" in again.text and "https://optin.test/x" in again.html


def test_nothing_is_kept_while_jinja_reloads_changed_templates(
    app: Flask, monkeypatch: pytest.MonkeyPatch, renders: Counter[str]
) -> None:
    monkeypatch.setattr(app.jinja_env, "auto_reload", True)
    for link in ("https://optin.test/a", "https://optin.test/b"):
        email = outbox._rendered("data_link", {"data_link": link, "minutes": 15})
        assert link in email.text
    assert renders["email/data_link/body.html"] == 2
    assert kept_emails.EXTENSION not in app.extensions


@pytest.mark.parametrize(
    ("shown", "kept"),
    [
        (lambda s: f"<a href='{s}'>{s}</a>", True),
        (lambda s: "a template need not show every value", True),
        (lambda s: s.upper(), False),  # a filter changed it: ``upper``
        (lambda s: s[:-3], False),  # ``truncate``
        (lambda s: s.title(), False),
    ],
)
def test_a_rendering_is_kept_only_if_it_shows_the_stand_ins_as_they_went_in(
    shown: Any, kept: bool
) -> None:
    stand_ins = StandIns("test")
    made = stand_ins.for_names(["link"])
    assert stand_ins.came_through(made, ["subject", shown(made["link"])]) is kept
