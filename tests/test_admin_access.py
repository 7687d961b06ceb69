"""Every admin route, whatever its method and arguments, is closed to an anonymous visitor (a
browser is sent to the login page, an API client gets a 401) and a GET of any admin page
changes nothing."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient

from app import queries
from app.addresses import email_hash
from app.extensions import db
from app.models import ImportJob, Resource
from app.services import api_keys
from app.services.webhooks import endpoints as webhook_endpoints
from tests import factories
from tests.helpers import csrf_token, database_state

OPEN = {"/admin/login"}


def every_admin_route(app: Flask, values: dict[str, object]) -> list[tuple[str, str]]:
    """(method, path) for each admin route, its arguments filled from ``values``."""
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin.") or rule.rule in OPEN:
            continue
        path = rule.rule
        for name in rule.arguments:
            path = path.replace(f"<int:{name}>", str(values[name])).replace(
                f"<{name}>", str(values[name])
            )
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append((method, path))
    return routes


def some_of_everything(newsletter: Resource) -> dict[str, object]:
    factories.signup("alice@example.com", "newsletter")
    factories.hard_bounce("bounced@example.com")
    row, _key = api_keys.create_key("sender")
    endpoint, _secret = webhook_endpoints.create_endpoint("https://crm.example/hooks")
    profile = queries.profile_by_email("alice@example.com")
    assert profile is not None
    job = ImportJob(filename="old.csv", state="done")
    db.session.add(job)
    db.session.commit()
    return {
        "job_id": job.id,
        "profile_id": profile.id,
        "subscription_id": queries.subscriptions_of_profile(profile.id)[0].id,
        "resource_id": newsletter.id,
        "email_hash": email_hash("bounced@example.com"),
        "key_id": row.id,
        "endpoint_id": endpoint.id,
    }


def test_anonymous_requests_never_reach_an_admin_route(
    app: Flask, client: FlaskClient, newsletter: Resource
) -> None:
    routes = every_admin_route(app, some_of_everything(newsletter))
    assert len(routes) >= 15
    before = database_state()
    token = csrf_token(client, "/admin/login")
    for method, path in routes:
        data = {"csrf_token": token, "status": "unsubscribed", "reason": "x", "name": "x"}
        answer = client.open(path, method=method, data=data if method == "POST" else None)
        assert answer.status_code == 302, (method, path)
        assert answer.headers["Location"].startswith("/admin/login?next="), (method, path)
        as_api = client.open(path, method=method, headers={"Accept": "application/json"})
        assert as_api.status_code in (400, 401), (method, path)  # a POST without token: 400
        if method == "GET":
            assert (
                as_api.status_code == 401 and as_api.get_json()["error"]["code"] == "login_required"
            )
    assert database_state() == before


def test_a_get_of_any_admin_page_changes_nothing(
    app: Flask, admin_client: FlaskClient, newsletter: Resource
) -> None:
    routes = every_admin_route(app, some_of_everything(newsletter))
    before = database_state()
    for method, path in routes:
        if method == "GET" and path != "/admin/logout":
            assert admin_client.get(path).status_code in (200, 302), path
    assert database_state() == before


def test_odd_input_gets_an_answer_never_a_server_error(
    admin_client: FlaskClient, newsletter: Resource
) -> None:
    values = some_of_everything(newsletter)
    for query in ["\x00", "a\x00b", "\U0010ffff", "z\U0010ffff", "%", "_", "\\", "x" * 5000]:
        for path in ("/admin/profiles", "/admin/suppressions"):
            # A NUL byte in a URL is refused before any view (400); anything else is searched.
            answer = admin_client.get(path, query_string={"q": query})
            assert answer.status_code == (400 if "\x00" in query else 200), query
        answer = admin_client.get("/admin/profiles", query_string={"q": "a", "after": query})
        assert answer.status_code == (400 if "\x00" in query else 200), query
    assert admin_client.get("/admin/profiles?q=a&after_id=x&after=y").status_code == 200
    # A NUL byte in a form is refused as well (PostgreSQL takes none in text).
    before = database_state()
    token = csrf_token(admin_client, "/admin/suppressions")
    profile_id = values["profile_id"]
    for path, data in [
        (f"/admin/profiles/{profile_id}/status", {"status": "invalid", "reason": "a\x00b"}),
        ("/admin/suppressions", {"email": "new@example.com", "reason": "a\x00b"}),
        ("/admin/suppressions", {"email": "new\x00@example.com", "reason": "x"}),
        (f"/admin/suppressions/{values['email_hash']}/lift", {"reason": "\x00"}),
        ("/admin/api-keys", {"name": "a\x00b"}),
        (f"/admin/resources/{newsletter.id}", {"name": "a\x00", "channels": "email"}),
        ("/admin/resources/new", {"slug": "x", "name": "a\x00", "channels": "email"}),
    ]:
        answer = admin_client.post(path, data={"csrf_token": token, **data})
        assert answer.status_code == 400, (path, answer.status_code)
    assert database_state() == before


# Values a person (or a script) may type into any admin field: the worst of each kind.
ODD_VALUES = [
    "",
    " ",
    "x" * 5_000,
    "<script>alert(1)</script>",
    "2026-13-45T25:61",
    "-1",
    "99999999999999999999",
    "é" * 400,
    "subscribed",
    "suspended",
    "invalid",
    "email,sms",
    "\u202e\ufeff",
]
FIELDS = [
    "email", "name", "reason", "status", "suspended_until", "slug", "description",
    "channels", "thank_you_url", "consent_text", "q", "resource", "channel",
    "global_status", "subscription_status", "created_from", "created_before",
]  # fmt: skip


def test_no_admin_form_answers_500_whatever_is_typed(
    app: Flask, admin_client: FlaskClient, newsletter: Resource
) -> None:
    routes = [
        (method, path)
        for method, path in every_admin_route(app, some_of_everything(newsletter))
        if method == "POST" and not path.endswith("/logout")
    ]
    assert len(routes) >= 10
    token = csrf_token(admin_client, "/admin/dashboard")
    for method, path in routes:
        for value in ODD_VALUES:
            form = {"csrf_token": token, **dict.fromkeys(FIELDS, value)}
            answer = admin_client.open(path, method=method, data=form)
            assert answer.status_code < 500, (path, value)
