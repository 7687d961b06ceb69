"""A resource's thank-you URL (issue 9, item 11): checked when the admin saves it and again when
a visitor is sent there, so that no spelling a browser reads differently becomes an open
redirect."""

from __future__ import annotations

import html

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner

from app import queries
from app.extensions import db
from app.models import Resource
from app.security import thank_you_url_problem
from tests.helpers import submit

TRUSTED = ["trusted.example"]
# Each of these sends a browser somewhere other than trusted.example, or could.
TRICKS = [
    "https://evil.example\\@trusted.example/",  # a browser reads the backslash as a slash
    "https://evil.example@trusted.example/",
    "https://user:secret@trusted.example/",
    "//evil.example",
    "//trusted.example/thanks",
    "https:evil.example",
    "https:trusted.example/thanks",
    "https:/trusted.example/thanks",
    "https://trusted.example.evil.example/",
    "https://evil.example/trusted.example",
    "https://evil.example#@trusted.example/",
    "https://trusted.example\t.evil.example/",
    "https://trusted.example\n.evil.example/",
    "https://trusted.example/th anks",
    "https://trusted.example\x00.evil.example/",
    "https://trusted.example\u200b/",
    "javascript://trusted.example/%0aalert(1)",
    "ftp://trusted.example/",
    "https://[trusted.example/",
    "https://trusted.example:port/",
    "/thanks",
    "https://trusted.example/" + "x" * 500,
]
GOOD = [
    "https://trusted.example/thanks",
    "https://TRUSTED.example/thanks?from=signup#top",
    "http://trusted.example:8080/thanks",
]


@pytest.mark.parametrize("url", TRICKS)
def test_a_thank_you_url_that_a_browser_could_read_as_another_host_is_refused(url: str) -> None:
    assert thank_you_url_problem(url, TRUSTED) is not None


@pytest.mark.parametrize("url", GOOD)
def test_a_plain_address_on_a_trusted_host_is_a_thank_you_url(url: str) -> None:
    assert thank_you_url_problem(url, TRUSTED) is None


def test_no_host_is_trusted_until_one_is_listed() -> None:
    problem = thank_you_url_problem("https://trusted.example/thanks", [])
    assert problem is not None and "TRUSTED_REDIRECT_HOSTS" in problem


@pytest.mark.parametrize("url", ["https://evil.example\\@trusted.example/", "//evil.example"])
def test_the_admin_form_shows_why_a_thank_you_url_is_refused_and_saves_nothing(
    app: Flask, admin_client: FlaskClient, newsletter: Resource, url: str
) -> None:
    app.config["TRUSTED_REDIRECT_HOSTS"] = TRUSTED
    answer = submit(
        admin_client,
        f"/admin/resources/{newsletter.id}",
        {
            "name": "The Newsletter",
            "channels": ["email"],
            "public": "y",
            "double_opt_in": "y",
            "thank_you_url": url,
            "consent_text": "Yes, send me the newsletter.",
        },
    )
    assert answer.status_code == 400
    page = html.unescape(answer.get_data(as_text=True))
    assert "thank-you URL" in page
    db.session.rollback()
    assert queries.resource_by_slug("newsletter").thank_you_url is None


def test_the_admin_form_saves_a_trusted_thank_you_url(
    app: Flask, admin_client: FlaskClient, newsletter: Resource
) -> None:
    app.config["TRUSTED_REDIRECT_HOSTS"] = TRUSTED
    answer = submit(
        admin_client,
        f"/admin/resources/{newsletter.id}",
        {
            "name": "The Newsletter",
            "channels": ["email"],
            "public": "y",
            "double_opt_in": "y",
            "thank_you_url": "https://trusted.example/thanks",
            "consent_text": "Yes, send me the newsletter.",
        },
    )
    assert answer.status_code == 303
    db.session.rollback()
    assert queries.resource_by_slug("newsletter").thank_you_url == "https://trusted.example/thanks"


def test_resources_add_refuses_a_tricked_thank_you_url(app: Flask, runner: FlaskCliRunner) -> None:
    app.config["TRUSTED_REDIRECT_HOSTS"] = TRUSTED
    result = runner.invoke(
        args=[
            "resources",
            "add",
            "weekly",
            "--name",
            "Weekly",
            "--thank-you-url",
            "https://evil.example\\@trusted.example/",
        ]
    )
    assert result.exit_code != 0
    assert "backslash" in result.output
    assert queries.resource_by_slug("weekly") is None


@pytest.mark.parametrize("url", TRICKS[:12])
def test_a_stored_tricked_thank_you_url_is_not_followed_after_a_signup(
    app: Flask, client: FlaskClient, newsletter: Resource, url: str
) -> None:
    """Saved before the check existed, or written to the database by hand: checked on use."""
    app.config["TRUSTED_REDIRECT_HOSTS"] = TRUSTED
    newsletter.thank_you_url = url
    db.session.commit()
    answer = submit(client, "/subscribe/newsletter", {"email": "alice@example.com", "name": ""})
    assert answer.status_code == 200
    assert "Location" not in answer.headers
