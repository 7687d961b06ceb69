"""The operator's endpoints (SPEC §5): ``/readyz``, whether this process can serve (its database,
and Redis when the rate limiter keeps its counters there), and ``/metrics`` for Prometheus.
``/healthz``, the cheap liveness check, stays on the public blueprint: it touches nothing."""

from __future__ import annotations

import hmac
import ipaddress

from flask import Blueprint, Flask, Response, abort, current_app, jsonify, request
from sqlalchemy import text

from app import metrics
from app.extensions import db, limiter

ops = Blueprint("ops", __name__)
# /metrics on a blueprint of its own, so that its guard is attached where it is registered.
metrics_endpoint = Blueprint("metrics", __name__)


def _database_down() -> str | None:
    """None when the database answers; otherwise the kind of error (no URL, no password)."""
    try:
        db.session.execute(text("SELECT 1"))
    except Exception as error:  # any failure means "not ready", whatever its kind
        db.session.rollback()
        return type(error).__name__
    finally:
        db.session.remove()  # a dead connection goes back to the pool as dead, not reused
    return None


def _redis_down() -> str | None:
    """None when the rate limiter's Redis answers a PING (limits' own ``check``)."""
    try:
        answered = limiter.storage.check()
    except Exception as error:  # any failure means "not ready"
        return type(error).__name__
    return None if answered else "no answer"


@ops.get("/readyz")
def ready() -> tuple[Response, int]:
    """200 when every part this process needs answers, 503 naming each one that does not (a
    load balancer takes the process out of rotation until it is ready again)."""
    checks = {"database": _database_down()}
    if current_app.config["RATELIMIT_STORAGE_URI"].startswith(("redis", "rediss")):
        checks["redis"] = _redis_down()
    down = {part: error for part, error in checks.items() if error is not None}
    body = {
        "status": "unavailable" if down else "ready",
        "checks": {part: "down" if error else "ok" for part, error in checks.items()},
    }
    if down:
        body["errors"] = down
        response = jsonify(body)
        response.headers["Retry-After"] = "5"
        return response, 503
    return jsonify(body), 200


def _from_this_machine() -> bool:
    """A request straight from the loopback address, not one a proxy on this machine forwarded
    (behind nginx without PROXY_FIX_* every visitor would look local)."""
    if "X-Forwarded-For" in request.headers or "Forwarded" in request.headers:
        return False
    try:
        return ipaddress.ip_address(request.remote_addr or "").is_loopback
    except ValueError:
        return False


def _metrics_guard() -> None:
    """Open to this machine; elsewhere only with ``Authorization: Bearer METRICS_TOKEN``, and
    not there at all (404) while no token is set."""
    if _from_this_machine():
        return
    token = current_app.config["METRICS_TOKEN"]
    if not token:
        abort(404)
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
        abort(401)


@metrics_endpoint.get("/metrics")
def scrape() -> Response:
    """Every figure of ``app/metrics.py`` in Prometheus' text format."""
    body, content_type = metrics.exposition()
    db.session.remove()
    return Response(body, content_type=content_type)


def register_ops(app: Flask) -> None:
    """The operator's endpoints, exempt from the rate limits (a scraper or a load balancer
    probing every few seconds is not abuse) and counted like every other request."""
    limiter.exempt(ops)
    limiter.exempt(metrics_endpoint)
    app.register_blueprint(ops)
    app.register_blueprint(metrics_endpoint)
    app.before_request_funcs.setdefault(metrics_endpoint.name, []).append(_metrics_guard)
    metrics.instrument(app)
