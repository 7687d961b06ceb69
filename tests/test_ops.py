"""The operator's side (issue 10, items 4 and 5): `/readyz` says whether the database and Redis
answer, `/metrics` what the service does, and `LOG_FORMAT=json` logs a machine can read."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from app import create_app
from app.database import write_transaction
from app.logs import configure_logging
from app.models import ImportJob, OutboxMessage, Resource
from tests import factories
from tests.conftest import mail_app, make_app
from tests.helpers import run_worker, submit
from tests.smtp import free_port

ELSEWHERE = {"REMOTE_ADDR": "203.0.113.7"}


def _nowhere() -> str:
    """A PostgreSQL URL on a port where nothing listens."""
    return f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"


# --- /healthz and /readyz ---------------------------------------------------------------------


def test_readyz_is_ready_when_the_database_answers(client: FlaskClient) -> None:
    answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json == {"status": "ready", "checks": {"database": "ok"}}


def test_readyz_answers_503_naming_the_database_when_it_is_unreachable() -> None:
    app = make_app(_nowhere())
    answer = app.test_client().get("/readyz")
    assert answer.status_code == 503
    assert answer.json["status"] == "unavailable"
    assert answer.json["checks"] == {"database": "down"}
    assert answer.json["errors"]["database"] == "OperationalError"
    assert answer.headers["Retry-After"] == "5"
    # Liveness is not readiness: the process is alive, and /healthz touches no database.
    assert app.test_client().get("/healthz").status_code == 200


def test_readyz_answers_503_naming_redis_when_the_limiters_redis_is_down(
    app: Flask, database_url: str
) -> None:
    down = make_app(database_url, RATELIMIT_STORAGE_URI=f"redis://127.0.0.1:{free_port()}/0")
    answer = down.test_client().get("/readyz")
    assert answer.status_code == 503
    assert answer.json["checks"] == {"database": "ok", "redis": "down"}


def test_readyz_checks_redis_when_the_limiter_keeps_its_counters_there(
    app: Flask, database_url: str
) -> None:
    # The machine's Redis (CI starts it); a PING reads and writes nothing.
    up = make_app(database_url, RATELIMIT_STORAGE_URI="redis://127.0.0.1:6379/15")
    answer = up.test_client().get("/readyz")
    assert answer.status_code == 200, answer.json
    assert answer.json["checks"] == {"database": "ok", "redis": "ok"}


# --- /metrics ---------------------------------------------------------------------------------


def scrape(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics answer from this machine, by name and labels."""
    answer = client.get("/metrics")
    assert answer.status_code == 200, answer.status_code
    assert answer.content_type.startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(answer.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_requests_by_route_never_by_the_path_with_its_token(
    client: FlaskClient,
) -> None:
    before = scrape(client)
    token = "NotARealTokenButSecretLooking.abcdef"
    assert client.get(f"/confirm/{token}").status_code in (400, 404)
    assert client.get(f"/preferences/{token}x").status_code in (400, 404)
    assert client.get("/wp-admin/setup.php").status_code == 404
    assert client.get("/healthz").status_code == 200
    answer = client.get("/metrics")
    text = answer.get_data(as_text=True)
    assert token not in text and "wp-admin" not in text
    after = scrape(client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "optin_http_requests_total"
    confirm_status = str(client.get(f"/confirm/{token}").status_code)
    assert grew(requests, route="/confirm/<token>", method="GET", status=confirm_status) == 1
    assert grew(requests, route="<unmatched>", method="GET", status="404") == 1
    assert grew(requests, route="/healthz", method="GET", status="200") == 1
    latency = "optin_http_request_duration_seconds_count"
    assert grew(latency, route="/healthz", method="GET") == 1
    assert (
        grew(
            "optin_http_request_duration_seconds_bucket", route="/healthz", method="GET", le="+Inf"
        )
        == 1
    )


def test_metrics_are_closed_to_other_machines_without_a_token(client: FlaskClient) -> None:
    assert client.get("/metrics", environ_base=ELSEWHERE).status_code == 404
    # A proxy on this machine forwards visitors from anywhere: not local.
    assert client.get("/metrics", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 404
    assert client.get("/metrics").status_code == 200


def test_metrics_open_to_other_machines_with_the_bearer_token(
    database_url: str, app: Flask
) -> None:
    guarded = make_app(database_url, METRICS_TOKEN="scrape-me-please")
    client = guarded.test_client()
    assert client.get("/metrics", environ_base=ELSEWHERE).status_code == 401
    wrong = {"Authorization": "Bearer scrape-me-not"}
    assert client.get("/metrics", environ_base=ELSEWHERE, headers=wrong).status_code == 401
    right = {"Authorization": "Bearer scrape-me-please"}
    answer = client.get("/metrics", environ_base=ELSEWHERE, headers=right)
    assert answer.status_code == 200
    assert b"optin_outbox_depth" in answer.data


def test_metrics_count_customer_events_by_resource_as_the_dashboard_does(
    client: FlaskClient, newsletter: Resource, offers: Resource
) -> None:
    for address in ("a@example.com", "b@example.com", "c@example.com"):
        factories.signup(address, "newsletter")
    factories.confirm("a@example.com", "newsletter")
    factories.confirm("b@example.com", "newsletter")
    factories.unsubscribe("a@example.com", "newsletter")
    factories.unsubscribe("b@example.com", None)
    factories.signup("d@example.com", "offers")
    factories.hard_bounce("c@example.com")
    factories.complaint("d@example.com", "offers")
    samples = scrape(client)
    events = "optin_customer_events_total"
    assert value(samples, events, event="signups", resource="newsletter") == 3
    assert value(samples, events, event="signups", resource="offers") == 1
    assert value(samples, events, event="confirmations", resource="newsletter") == 2
    assert value(samples, events, event="unsubscribes", resource="newsletter") == 1
    assert value(samples, events, event="unsubscribes", resource="") == 1
    assert value(samples, events, event="bounces", resource="") == 1
    assert value(samples, events, event="complaints", resource="") == 1


def test_metrics_show_the_outbox_backlog_deliveries_and_failures(
    app: Flask, client: FlaskClient, database_url: str, newsletter: Resource
) -> None:
    before = scrape(client)
    submit(client, "/subscribe/newsletter", {"email": "e@example.com", "name": ""})
    submit(client, "/subscribe/newsletter", {"email": "f@example.com", "name": ""})
    waited = datetime.now(UTC) - timedelta(minutes=10)
    with write_transaction() as session:
        session.execute(update(OutboxMessage).values(next_attempt_at=waited))
    samples = scrape(client)
    assert value(samples, "optin_outbox_depth") == 2
    assert value(samples, "optin_outbox_due") == 2
    assert 600 <= value(samples, "optin_outbox_oldest_due_age_seconds") < 700

    # The mail server is down: the first try fails, and the batch's other message waits with it
    # without knocking on the dead server again (outbox: one refusal ends the batch's tries).
    down = mail_app(database_url, free_port(), OUTBOX_DELIVER_INLINE=False)
    with down.app_context():
        assert run_worker().failed == 2
    samples = scrape(client)
    failures = "optin_mail_failures_total"
    assert value(samples, failures) - value(before, failures) == 1
    assert value(samples, "optin_outbox_retrying") == 2
    assert value(samples, "optin_outbox_due") == 0
    assert value(samples, "optin_outbox_oldest_due_age_seconds") == 0

    with write_transaction() as session:
        session.execute(update(OutboxMessage).values(next_attempt_at=waited))
    assert run_worker().sent == 2
    samples = scrape(client)
    deliveries = "optin_mail_deliveries_total"
    assert value(samples, deliveries) - value(before, deliveries) == 2
    assert value(samples, "optin_outbox_depth") == 0


def test_metrics_show_the_import_jobs_running(client: FlaskClient) -> None:
    with write_transaction() as session:
        session.add(ImportJob(filename="a.csv", state="running"))
        session.add(ImportJob(filename="b.csv", state="queued"))
        session.add(ImportJob(filename="c.csv", state="done"))
    assert value(scrape(client), "optin_import_jobs_running") == 2


# --- LOG_FORMAT=json ----------------------------------------------------------------------------


@pytest.fixture
def text_logs_after() -> Iterator[None]:
    yield
    configure_logging("text")


def json_app(database_url: str) -> Flask:
    """An app logging JSON, made inside the test so that its handler writes to the stderr that
    ``capsys`` captures, with a page that logs a line."""
    logged = make_app(database_url, LOG_FORMAT="json")

    @logged.get("/log-something/<token>")
    def log_something(token: str) -> str:
        logging.getLogger("app.views.test").warning("something happened")
        return "logged"

    return logged


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_json_logs_are_one_object_a_line_with_the_request_id_and_route(
    app: Flask, database_url: str, capsys: pytest.CaptureFixture[str], text_logs_after: None
) -> None:
    client = json_app(database_url).test_client()
    answer = client.get("/log-something/secret-token", headers={"X-Request-ID": "edge-42"})
    assert answer.headers["X-Request-ID"] == "edge-42"
    (line,) = _json_lines(capsys.readouterr().err)
    assert line["level"] == "WARNING"
    assert line["logger"] == "app.views.test"
    assert line["message"] == "something happened"
    assert line["request_id"] == "edge-42"
    assert line["route"] == "/log-something/<token>"
    assert datetime.fromisoformat(line["time"]).tzinfo is not None
    assert "secret-token" not in json.dumps(line)


def test_a_request_without_a_sane_id_gets_one_of_its_own(
    app: Flask, database_url: str, capsys: pytest.CaptureFixture[str], text_logs_after: None
) -> None:
    client = json_app(database_url).test_client()
    answer = client.get("/log-something/x", headers={"X-Request-ID": "evil line <b>"})
    given = answer.headers["X-Request-ID"]
    assert len(given) == 32 and given.isalnum()
    (line,) = _json_lines(capsys.readouterr().err)
    assert line["request_id"] == given


def test_json_logs_outside_a_request_carry_no_request_fields(
    app: Flask, database_url: str, capsys: pytest.CaptureFixture[str], text_logs_after: None
) -> None:
    json_app(database_url)
    logging.getLogger("app.services.upkeep").error("the database is unreachable")
    (line,) = _json_lines(capsys.readouterr().err)
    assert set(line) == {"time", "level", "logger", "message"}


def test_an_unknown_log_format_is_refused_at_startup() -> None:
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        create_app({"TESTING": True, "SECRET_KEY": "x", "LOG_FORMAT": "xml"})
