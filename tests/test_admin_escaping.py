"""Markup typed by customers or admins (a name, a reason, a resource's words, a key name) is
shown as text on every admin page, never run as HTML."""

from __future__ import annotations

from flask.testing import FlaskClient

from app import queries
from app.models import Resource
from app.services import api_keys
from app.services.admin_actions import change_status, suppress_address
from app.services.resources import update_resource
from app.services.statuses import Actor
from app.status import Status
from tests import factories

MARKUP = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


def test_markup_is_escaped_on_every_admin_page(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    factories.signup("mark@example.com", "newsletter", name=MARKUP)
    factories.confirm("mark@example.com", "newsletter")
    profile = queries.profile_by_email("mark@example.com")
    change_status(
        profile.id, Status.UNSUBSCRIBED, actor=Actor(name="admin@example.com", reason=MARKUP)
    )
    suppress_address("mark@example.com", actor=Actor(name="admin@example.com", reason=MARKUP))
    update_resource(
        newsletter.id,
        name=MARKUP,
        description=MARKUP,
        channels=["email"],
        public=True,
        double_opt_in=True,
        thank_you_url=None,
        consent_text=MARKUP,
    )
    api_keys.create_key(MARKUP)

    pages = {
        "/admin/dashboard": 1,  # the resource's name
        "/admin/profiles?q=%3Cscr": 1,  # the name
        f"/admin/profiles/{profile.id}": 4,  # name, subscription's resource, two reasons, text
        "/admin/resources": 2,  # name and description
        f"/admin/resources/{newsletter.id}": 4,  # fields, versions, the snippet
        "/admin/suppressions": 1,  # the reason
        "/admin/api-keys": 1,  # the key's name
    }
    for path, at_least in pages.items():
        answer = admin_client.get(path)
        assert answer.status_code == 200, path
        page = answer.get_data(as_text=True)
        assert MARKUP not in page, path
        assert "<script" not in page, path
        assert page.count(ESCAPED) + page.count("&amp;lt;script&amp;gt;") >= at_least, path


def test_the_embed_snippet_escapes_the_consent_text_as_html(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    update_resource(
        newsletter.id,
        name="N",
        description="",
        channels=["email"],
        public=True,
        double_opt_in=True,
        thank_you_url=None,
        consent_text=MARKUP,
    )
    page = admin_client.get(f"/admin/resources/{newsletter.id}").get_data(as_text=True)
    snippet = page.split('id="embed-snippet"')[1].split("</pre>")[0]
    # Shown as source code: the snippet's own escaping is escaped once more for the page.
    assert "&lt;p&gt;&amp;lt;script&amp;gt;alert(1)&amp;lt;/script&amp;gt;&lt;/p&gt;" in snippet
