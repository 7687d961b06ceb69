"""API keys in the admin view: list, create (the key shown once), revoke."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

from app.services import api_keys
from tests.helpers import csrf_token, submit


def test_a_new_key_is_shown_once_and_works(admin_client: FlaskClient) -> None:
    answer = submit(admin_client, "/admin/api-keys", {"name": "sender-prod"})
    assert answer.status_code == 201
    assert answer.headers["Cache-Control"] == "no-store"
    key = re.search(
        r'<pre id="new-key"><code>(optin_[^<]+)</code></pre>', answer.get_data(as_text=True)
    ).group(1)
    assert api_keys.authenticate(key) is not None
    listing = admin_client.get("/admin/api-keys").get_data(as_text=True)
    assert "sender-prod" in listing and key not in listing and key[:10] in listing


def test_a_bad_or_taken_name_is_refused(admin_client: FlaskClient) -> None:
    api_keys.create_key("taken")
    for name, message in [
        ("two words", "without spaces"),
        ("taken", "exists already"),
        ("", "This field is required."),
    ]:
        answer = submit(admin_client, "/admin/api-keys", {"name": name})
        assert answer.status_code == 400
        assert message in answer.get_data(as_text=True)
    assert [row.name for row in api_keys.all_keys()] == ["taken"]


def test_revoking_stops_the_key(admin_client: FlaskClient) -> None:
    row, key = api_keys.create_key("old")
    answer = submit(
        admin_client, f"/admin/api-keys/{row.id}/revoke", {}, form_path="/admin/api-keys"
    )
    assert answer.status_code == 303
    assert api_keys.authenticate(key) is None
    page = admin_client.get("/admin/api-keys").get_data(as_text=True)
    assert "Revoked the key old." in page and "revoked 20" in page


def test_revoking_needs_the_csrf_token(admin_client: FlaskClient) -> None:
    row, key = api_keys.create_key("live")
    assert admin_client.post(f"/admin/api-keys/{row.id}/revoke").status_code == 400
    answer = admin_client.post(f"/admin/api-keys/{row.id}/revoke", data={"csrf_token": "forged"})
    assert answer.status_code == 400
    assert api_keys.authenticate(key) is not None


def test_anonymous_key_changes_are_sent_to_the_login_page(client: FlaskClient) -> None:
    row, key = api_keys.create_key("live")
    token = csrf_token(client, "/admin/login")
    answer = client.post(f"/admin/api-keys/{row.id}/revoke", data={"csrf_token": token})
    assert answer.status_code == 302
    answer = client.post("/admin/api-keys", data={"csrf_token": token, "name": "sneaky"})
    assert answer.status_code == 302
    assert api_keys.authenticate(key) is not None
    assert [r.name for r in api_keys.all_keys()] == ["live"]


def test_revoking_an_unknown_key_is_a_404(admin_client: FlaskClient) -> None:
    answer = submit(admin_client, "/admin/api-keys/999/revoke", {}, form_path="/admin/api-keys")
    assert answer.status_code == 404


def test_the_list_shows_when_each_key_was_last_used(admin_client: FlaskClient) -> None:
    api_keys.create_key("idle")
    _row, key = api_keys.create_key("busy")
    answer = admin_client.get(
        "/api/v1/eligibility?email=alice@example.com", headers={"Authorization": f"Bearer {key}"}
    )
    assert answer.status_code == 200
    used = next(row for row in api_keys.all_keys() if row.name == "busy").last_used_at
    listing = admin_client.get("/admin/api-keys").get_data(as_text=True)
    rows = {
        name: cells
        for name, cells in re.findall(r"<tr>\s*<td>([^<]+)</td>(.*?)</tr>", listing, re.S)
    }
    assert used is not None
    assert used.strftime("%Y-%m-%d %H:%M") in rows["busy"]
    assert "never" in rows["idle"] and "never" not in rows["busy"]
