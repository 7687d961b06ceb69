"""The public pages, through the Flask test client."""

from __future__ import annotations

from flask.testing import FlaskClient

from app.models import Resource
from app.services.resources import create_resource


def test_the_landing_page_lists_public_resources_only(
    client: FlaskClient, newsletter: Resource, brand: Resource
) -> None:
    create_resource("tricky", "<script>alert(1)</script>", description="Fish & <b>chips</b>")
    page = client.get("/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "The Newsletter" in html
    assert "Brand news" not in html  # private
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Fish &amp; &lt;b&gt;chips&lt;/b&gt;" in html


def test_the_health_check_answers(client: FlaskClient) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok"}
