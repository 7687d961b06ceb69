"""Resources in the admin view: list, create, edit (the consent text gets a new version), and
the embed snippet, which really signs up through the public embed endpoint."""

from __future__ import annotations

import html
import re

from flask import Flask
from flask.testing import FlaskClient

from app import queries
from app.models import ConsentText, Resource
from tests.helpers import count, database_state, submit


def test_the_list_shows_every_resource(
    admin_client: FlaskClient, newsletter: Resource, brand: Resource
) -> None:
    page = admin_client.get("/admin/resources").get_data(as_text=True)
    assert "The Newsletter" in page and "Brand news" in page and "email, sms" in page


def test_create_a_resource(app: Flask, admin_client: FlaskClient) -> None:
    app.config["TRUSTED_REDIRECT_HOSTS"] = ["example.com"]
    answer = submit(
        admin_client,
        "/admin/resources/new",
        {
            "slug": "weekly",
            "name": "Weekly digest",
            "description": "Every Monday.",
            "channels": ["email", "sms"],
            "public": "y",
            "thank_you_url": "https://example.com/thanks",
            "consent_text": "Yes, send me the digest.",
        },
    )
    assert answer.status_code == 303
    resource = queries.resource_by_slug("weekly")
    assert resource is not None
    assert answer.headers["Location"] == f"/admin/resources/{resource.id}"
    assert resource.channels == "email,sms" and resource.public and not resource.double_opt_in
    assert resource.thank_you_url == "https://example.com/thanks"
    assert queries.current_consent_text(resource.id).text == "Yes, send me the digest."
    assert "Created weekly." in admin_client.get(answer.headers["Location"]).get_data(as_text=True)


def test_a_bad_resource_is_shown_again_with_its_errors(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    for data, message in [
        ({"slug": "Bad Slug!", "name": "X", "channels": ["email"]}, "a slug is 1 to 64"),
        ({"slug": "newsletter", "name": "X", "channels": ["email"]}, "exists already"),
        ({"slug": "x", "name": "", "channels": ["email"]}, "This field is required."),
        ({"slug": "x", "name": "X", "channels": []}, "at least one channel"),
        ({"slug": "x", "name": "X", "channels": ["fax"]}, "is not a valid choice"),
        (
            {
                "slug": "x",
                "name": "X",
                "channels": ["email"],
                "thank_you_url": "javascript:alert(1)",
            },
            "thank-you URL",
        ),
    ]:
        before = count(Resource)
        answer = submit(admin_client, "/admin/resources/new", data)
        assert answer.status_code == 400, data
        assert message in html.unescape(answer.get_data(as_text=True)), data
        assert count(Resource) == before


def test_editing_changes_the_resource_and_versions_the_consent_text(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    path = f"/admin/resources/{newsletter.id}"
    page = admin_client.get(path).get_data(as_text=True)
    old_text = queries.current_consent_text(newsletter.id).text
    assert html.escape(old_text, quote=False) in page
    data = {
        "name": "The Newsletter, renamed",
        "description": "New words.",
        "channels": ["email"],
        "double_opt_in": "y",
        "consent_text": "Yes, the new wording.",
    }
    answer = submit(admin_client, path, data)
    assert answer.status_code == 303
    resource = queries.resource_by_id(newsletter.id)
    assert resource.name == "The Newsletter, renamed" and not resource.public
    assert [v.version for v in queries.consent_texts_of_resource(newsletter.id)] == [2, 1]
    assert queries.consent_texts_of_resource(newsletter.id)[1].text == old_text  # never edited
    # Saving again with the same text adds no version.
    assert submit(admin_client, path, data).status_code == 303
    assert count(ConsentText) == 2


def test_an_unknown_resource_is_a_404(admin_client: FlaskClient) -> None:
    assert admin_client.get("/admin/resources/999").status_code == 404


def test_editing_without_a_csrf_token_changes_nothing(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    answer = admin_client.post(
        f"/admin/resources/{newsletter.id}",
        data={"name": "Hijacked", "channels": ["email"], "consent_text": "x"},
    )
    assert answer.status_code == 400
    assert queries.resource_by_id(newsletter.id).name == "The Newsletter"


def test_the_embed_snippet_signs_up_through_the_embed_endpoint(
    app: Flask, admin_client: FlaskClient, newsletter: Resource
) -> None:
    page = admin_client.get(f"/admin/resources/{newsletter.id}").get_data(as_text=True)
    snippet = html.unescape(
        re.search(r'<pre id="embed-snippet"><code>(.*?)</code></pre>', page, re.S).group(1)
    )
    action = re.search(r'<form method="post" action="([^"]+)">', snippet).group(1)
    assert action == "https://optin.test/subscribe/newsletter/embed"
    fields = re.findall(r'name="([a-z]+)"', snippet)
    assert fields == ["email", "name", "website"]
    # A visitor of the other site: no cookie, no CSRF token, just the snippet's fields.
    visitor = app.test_client()
    before = database_state()
    answer = visitor.post(
        action.removeprefix("https://optin.test"),
        data={"email": "new@example.com", "name": "New", "website": ""},
    )
    assert answer.status_code == 200
    assert database_state() != before
    assert queries.profile_by_email("new@example.com") is not None
