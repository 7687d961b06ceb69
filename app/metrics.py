"""What `/metrics` tells an operator, in Prometheus' text format (prometheus_client).

Two kinds of figure, each where it is true:

- **Counted in the process** that does the work: HTTP requests by route and status, with a
  latency histogram (the web workers), and emails the mail server accepted or refused (whichever
  process delivers them: an outbox worker, or the web process with inline delivery). Under
  gunicorn and honcho every process writes its counters to ``PROMETHEUS_MULTIPROC_DIR`` and a
  scrape of any web worker adds them all up (prometheus_client's multiprocess mode); without
  that directory each process counts for itself, which is right for one process (``make run``).
- **Read from the database at scrape time**: signups, confirmations, unsubscribes, bounces and
  complaints by resource, the outbox's depth and the age of its oldest due message, and the
  import jobs running. The database is the only place that knows these for every process on
  every machine: a counter in the web worker that committed a signup would be lost with that
  worker, and would miss the changes made by workers on other machines. The customer events are
  the dashboard's own series (``queries.DAILY_SERIES``), so both always agree; since status
  events are never deleted, their totals only grow, as a Prometheus counter must.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from flask import Flask, Response, g, request, request_finished, request_started
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from app import queries
from app.database import utcnow

REQUESTS = Counter(
    "optin_http_requests",
    "HTTP requests answered, by route (the URL rule, never the path: paths carry tokens), "
    "method and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "optin_http_request_duration_seconds",
    "Time from the request reaching Flask to its response being ready, by route and method.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
MAIL_DELIVERIES = Counter(
    "optin_mail_deliveries", "Emails handed to the mail backend and accepted by it."
)
MAIL_FAILURES = Counter(
    "optin_mail_failures", "Emails the mail backend refused or could not take (retried later)."
)

# A request that matched no URL rule is counted under this route (a 404, a probe for /wp-admin):
# its path is the client's text and would make a new series of every probe.
UNMATCHED = "<unmatched>"


def _started() -> None:
    g.metrics_started = time.perf_counter()


# The request counter's and latency histogram's series of a (route, method, status), made once:
# ``labels()`` checks and locks on every call, and a series, once made, is the same object for
# the life of the process. The metrics keep every series they made anyway, so this holds no more.
_SERIES: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def _finished(response: Response) -> None:
    started = g.pop("metrics_started", None)
    rule = request.url_rule
    route = rule.rule if rule is not None else UNMATCHED
    method = request.method
    key = (route, method, response.status_code)
    series = _SERIES.get(key)
    if series is None:
        series = (REQUESTS.labels(route, method, str(key[2])), LATENCY.labels(route, method))
        _SERIES[key] = series
    counted, timed = series
    counted.inc()
    if started is not None:
        timed.observe(time.perf_counter() - started)


def _on_request_started(_sender: Flask, **_extra: object) -> None:
    _started()


def _on_request_finished(_sender: Flask, response: Response, **_extra: object) -> None:
    _finished(response)


def instrument(app: Flask) -> None:
    """Count and time every request. The signals fire before the first ``before_request`` and
    after the last ``after_request`` (and for error pages too), so a request refused by the rate
    limiter or a guard is counted like any other."""
    request_started.connect(_on_request_started, app)
    request_finished.connect(_on_request_finished, app)


class DatabaseCollector(Collector):
    """The figures read from the database when Prometheus scrapes (see the module docstring)."""

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        events = CounterMetricFamily(
            "optin_customer_events",
            "Status changes customers and providers made, as the dashboard counts them: "
            "signups, confirmations, unsubscribes, bounces and complaints, by resource slug "
            '(empty for the global status: bounces, complaints, "unsubscribe from everything").',
            labels=["event", "resource"],
        )
        for (event, resource), total in queries.customer_event_totals().items():
            events.add_metric([event, resource or ""], total)
        yield events

        backlog = queries.outbox_backlog(utcnow())
        yield GaugeMetricFamily(
            "optin_outbox_depth", "Emails in the outbox not sent yet.", value=backlog.unsent
        )
        yield GaugeMetricFamily(
            "optin_outbox_due", "Emails whose time to be sent has come.", value=backlog.due
        )
        yield GaugeMetricFamily(
            "optin_outbox_retrying",
            "Unsent emails that failed at least once and wait for their next try.",
            value=backlog.retrying,
        )
        yield GaugeMetricFamily(
            "optin_outbox_oldest_due_age_seconds",
            "How long the oldest due email has been waiting for its try (0: none is due). "
            "Growing: no worker is delivering.",
            value=backlog.oldest_due_age,
        )
        yield GaugeMetricFamily(
            "optin_import_jobs_running",
            "CSV imports queued or running.",
            value=queries.import_jobs_in_progress(),
        )


def exposition() -> tuple[bytes, str]:
    """The text of one scrape and its content type: every process's counters (added up across
    processes in multiprocess mode), then the database's figures."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)  # type: ignore[no-untyped-call]  # unannotated upstream
        counted = generate_latest(processes)
    else:
        counted = generate_latest(REGISTRY)
    from_database = CollectorRegistry(auto_describe=False)
    from_database.register(DatabaseCollector())
    return counted + generate_latest(from_database), CONTENT_TYPE_LATEST
