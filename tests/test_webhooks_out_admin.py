"""Webhook endpoints in the admin view and on the command line (issue 15): add one (its secret
shown once), edit, pause and resume, send a test event, read the delivery log, delete."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select
from standardwebhooks import Webhook

from app.extensions import db
from app.models import Resource, WebhookDelivery, WebhookEndpoint
from app.services.webhooks import delivery, endpoints
from tests import factories, test_webhooks_out
from tests.helpers import ALICE, count, submit
from tests.test_webhooks_out import Receiver

# The receiver and the settings it needs, as the delivery tests have them.
receiver = test_webhooks_out.receiver
local = test_webhooks_out.local

SECRET = re.compile(r'<pre id="new-secret"><code>(whsec_[^<]+)</code></pre>')
EVERYTHING = {"all_events": "y", "all_resources": "y"}


def test_an_endpoint_added_in_the_admin_shows_its_secret_once_and_its_test_event_verifies(
    admin_client: FlaskClient, local: Flask, receiver: Receiver
) -> None:
    answer = submit(admin_client, "/admin/webhooks", {"url": receiver.url, **EVERYTHING})
    assert answer.status_code == 201
    assert answer.headers["Cache-Control"] == "no-store"
    found = SECRET.search(answer.get_data(as_text=True))
    assert found
    secret = found.group(1)
    listing = admin_client.get("/admin/webhooks").get_data(as_text=True)
    assert receiver.url in listing and secret not in listing
    endpoint_id = db.session.scalar(select(WebhookEndpoint.id))
    page_path = f"/admin/webhooks/{endpoint_id}"
    assert secret not in admin_client.get(page_path).get_data(as_text=True)

    sent = submit(admin_client, f"{page_path}/test", {}, form_path=page_path)
    assert sent.status_code == 303
    assert delivery.deliver_due().delivered == 1
    headers, body = receiver.received[0]
    assert Webhook(secret).verify(body, headers)["type"] == "webhook.test"
    log = admin_client.get(page_path).get_data(as_text=True)
    row = re.search(r'<table id="deliveries">.*?</table>', log, re.S)
    assert row and "webhook.test" in row.group(0) and "delivered" in row.group(0)
    assert "<td>200</td>" in row.group(0)


def test_a_bad_url_or_no_event_type_is_a_form_error_and_adds_nothing(
    admin_client: FlaskClient, app: Flask
) -> None:
    for data, message in [
        ({"url": "http://crm.example/h", **EVERYTHING}, "must start with https://"),
        ({"url": "", **EVERYTHING}, "This field is required."),
        ({"url": "https://crm.example/h", "all_resources": "y"}, "at least one event type"),
        (
            {"url": "https://crm.example/h", "all_resources": "y", "event_types": "profile.x"},
            "is not a valid choice",
        ),
    ]:
        answer = submit(admin_client, "/admin/webhooks", data)
        assert answer.status_code == 400, data
        assert message in answer.get_data(as_text=True)
    assert count(WebhookEndpoint) == 0


def test_editing_an_endpoint_changes_what_it_gets_and_keeps_its_secret(
    admin_client: FlaskClient, app: Flask, newsletter: Resource, brand: Resource
) -> None:
    endpoint, secret = endpoints.create_endpoint("https://crm.example/h")
    path = f"/admin/webhooks/{endpoint.id}"
    page = admin_client.get(path).get_data(as_text=True)
    assert 'name="all_events" type="checkbox" value="y"' in page and "checked" in page
    answer = submit(
        admin_client,
        path,
        {
            "url": "https://crm.example/v2",
            "event_types": ["profile.unsubscribed", "subscription.unsubscribed"],
            "resources": ["brand"],
        },
    )
    assert answer.status_code == 303
    db.session.rollback()
    row = db.session.get(WebhookEndpoint, endpoint.id)
    assert row is not None
    assert row.url == "https://crm.example/v2"
    assert row.event_types == ["profile.unsubscribed", "subscription.unsubscribed"]
    assert row.resource_ids == [brand.id]
    assert row.secret == secret
    listing = admin_client.get("/admin/webhooks").get_data(as_text=True)
    assert "profile.unsubscribed, subscription.unsubscribed" in listing and "brand" in listing


def test_pausing_shows_the_reason_and_stops_sending_until_resumed(
    admin_client: FlaskClient, local: Flask, receiver: Receiver, newsletter: Resource
) -> None:
    endpoint, _secret = endpoints.create_endpoint(receiver.url)
    path = f"/admin/webhooks/{endpoint.id}"
    endpoints.send_test(endpoint.id)
    answer = submit(admin_client, f"{path}/pause", {"reason": "CRM migration"}, form_path=path)
    assert answer.status_code == 303
    page = admin_client.get(path).get_data(as_text=True)
    assert "Paused" in page and "CRM migration" in page
    assert "CRM migration" in admin_client.get("/admin/webhooks").get_data(as_text=True)
    factories.signup(ALICE, "newsletter")  # not queued for a paused endpoint
    assert delivery.deliver_due().handled == 0
    assert submit(admin_client, f"{path}/resume", {}, form_path=path).status_code == 303
    assert delivery.deliver_due().delivered == 1
    assert [p["type"] for p in receiver.payloads()] == ["webhook.test"]


def test_an_endpoint_paused_by_its_failures_shows_why_in_the_admin(
    admin_client: FlaskClient, local: Flask, receiver: Receiver, newsletter: Resource
) -> None:
    endpoint, _secret = endpoints.create_endpoint(receiver.url)
    receiver.answer = lambda _number: 410
    factories.signup(ALICE, "newsletter")
    delivery.deliver_due()
    page = admin_client.get(f"/admin/webhooks/{endpoint.id}").get_data(as_text=True)
    assert re.search(r'id="paused-reason">.*410 Gone', page)
    assert "<td>410</td>" in page


def test_deleting_an_endpoint_removes_it_and_its_log_and_needs_the_csrf_token(
    admin_client: FlaskClient, app: Flask
) -> None:
    endpoint, _secret = endpoints.create_endpoint("https://crm.example/h")
    endpoints.send_test(endpoint.id)
    path = f"/admin/webhooks/{endpoint.id}"
    assert admin_client.post(f"{path}/delete").status_code == 400
    assert admin_client.post(f"{path}/test", data={"csrf_token": "forged"}).status_code == 400
    assert submit(admin_client, f"{path}/delete", {}, form_path=path).status_code == 303
    assert (count(WebhookEndpoint), count(WebhookDelivery)) == (0, 0)
    assert admin_client.get(path).status_code == 404


def test_the_webhook_pages_need_a_login(client: FlaskClient, app: Flask) -> None:
    assert client.get("/admin/webhooks").status_code == 302
    assert client.get("/admin/webhooks/1").status_code == 302


def test_the_webhook_pages_are_in_the_navigation(admin_client: FlaskClient) -> None:
    page = admin_client.get("/admin/webhooks").get_data(as_text=True)
    assert 'href="/admin/webhooks"' in page


def test_the_command_line_adds_lists_and_removes_endpoints(
    runner: FlaskCliRunner, app: Flask, newsletter: Resource
) -> None:
    added = runner.invoke(
        args=[
            "webhooks",
            "add",
            "https://crm.example/h",
            "--events",
            "profile.unsubscribed,subscription.unsubscribed",
            "--resources",
            "newsletter",
        ]
    )
    assert added.exit_code == 0, added.output
    first, secret = added.output.strip().splitlines()
    assert first.startswith("endpoint ") and secret.startswith("whsec_")
    listing = runner.invoke(args=["webhooks", "list"]).output
    assert "https://crm.example/h" in listing and "newsletter" in listing
    assert "profile.unsubscribed,subscription.unsubscribed" in listing
    assert secret not in listing
    refused = runner.invoke(args=["webhooks", "add", "http://crm.example/h"])
    assert refused.exit_code != 0 and "https://" in refused.output
    unknown = runner.invoke(args=["webhooks", "add", "https://x.example", "--resources", "nope"])
    assert unknown.exit_code != 0
    endpoint_id = first.split()[1].rstrip(":")
    assert runner.invoke(args=["webhooks", "remove", endpoint_id]).exit_code == 0
    assert count(WebhookEndpoint) == 0
    assert runner.invoke(args=["webhooks", "remove", endpoint_id]).exit_code != 0
