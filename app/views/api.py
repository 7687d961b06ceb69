"""The JSON API for the sending platform (SPEC §3), under /api/v1.

Every request carries ``Authorization: Bearer <key>``; the check is attached when the blueprint is
registered (``register_api``), so a new route cannot forget it. Errors are always
``{"error": {"code", "message"}}`` (with ``field`` for a bad field) and a 4xx status.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal, overload

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    jsonify,
    request,
    stream_with_context,
)
from flask_limiter.util import get_remote_address

from app import queries
from app.addresses import InvalidEmail, normalize_email
from app.database import utcnow
from app.extensions import csrf, limiter
from app.links import LinkMaker, links_for
from app.models import ApiKey, Profile
from app.openapi import openapi_document
from app.services import api_keys, events, statuses
from app.services import changes as change_feed
from app.services.eligibility import MAX_BATCH, decide_many
from app.services.errors import (
    InvalidInput,
    NotFound,
    TransitionRefused,
    UnknownChannel,
    UnknownProfile,
    UnknownResource,
    UnknownStatus,
)
from app.services.events import EventType, IncomingEvent, InvalidEvent
from app.services.exports import STREAM_BLOCK, audience_csv
from app.services.profiles import profile_record
from app.services.statuses import Actor, parse_channel, resource_for
from app.services.subscriptions import ConsentProof, api_signup, subscription_with_consent
from app.status import Cause, Channel, Decision, Status, parse_status

api = Blueprint("api", __name__, url_prefix="/api/v1")


class ApiError(Exception):
    """A request the API answers with a JSON error."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if field:
        error["field"] = field
    return {"error": error}


@api.errorhandler(ApiError)
def _api_error(error: ApiError) -> tuple[Response, int]:
    return jsonify(error_body(error.code, error.message, error.field)), error.status


# Domain errors, mapped once for every endpoint: (status, code, field).
DOMAIN_ERRORS: list[tuple[type[Exception], int, str, str | None]] = [
    (InvalidEmail, 400, "invalid_email", "email"),
    (UnknownStatus, 400, "invalid_status", "status"),
    (UnknownChannel, 400, "unknown_channel", "channel"),
    (InvalidEvent, 400, "invalid_event", None),
    (InvalidInput, 400, "invalid", None),
    (UnknownResource, 404, "unknown_resource", "resource"),
    (UnknownProfile, 404, "unknown_profile", "email"),
    (NotFound, 404, "not_found", None),
    (TransitionRefused, 409, "transition_refused", "status"),
]


def _domain_error(error: Exception) -> tuple[Response, int]:
    for kind, status, code, field in DOMAIN_ERRORS:
        if isinstance(error, kind):
            where = getattr(error, "field", None) or field
            return jsonify(error_body(code, str(error), where)), status
    raise error


for _kind, *_ in DOMAIN_ERRORS:
    api.register_error_handler(_kind, _domain_error)


# --- Authentication, attached at registration ---------------------------------------------------


API_KEY_ENVIRON = "optin.api_key"


def current_key() -> ApiKey | None:
    """The live key this request carries, looked up once: the rate limit, which runs first, is
    counted per key, and the guard then needs the same row."""
    # Kept in the WSGI environ, which belongs to this request alone: ``g`` lives as long as the
    # app context, which a test (or a CLI command) may keep across several requests.
    if API_KEY_ENVIRON not in request.environ:
        header = request.headers.get("Authorization", "")
        scheme, _, key = header.partition(" ")
        found = api_keys.authenticate(key.strip()) if scheme.lower() == "bearer" else None
        request.environ[API_KEY_ENVIRON] = found
    kept: ApiKey | None = request.environ[API_KEY_ENVIRON]
    return kept


def rate_limit_key() -> str:
    """Flask-Limiter's bucket: the key itself, so that one platform's workers behind any number
    of addresses share one budget (and two platforms behind one NAT do not); requests without a
    live key are counted per client IP."""
    row = current_key()
    return f"api-key:{row.id}" if row is not None else f"api-ip:{get_remote_address()}"


def rate_limit() -> str:
    limit: str = current_app.config["API_RATE_LIMIT"]
    return limit


def require_api_key() -> None:
    """Every API request needs a live key; its name is the actor of every change it makes."""
    if request.endpoint == "api.openapi":
        return
    row = current_key()
    if row is None:
        raise ApiError(401, "unauthorized", "a valid API key is needed: Authorization: Bearer KEY")
    g.api_key_name = row.name
    api_keys.note_use(row)


@api.errorhandler(429)
def _too_many(_error: Exception) -> tuple[Response, int, dict[str, str]]:
    """Over API_RATE_LIMIT: the JSON error shape, and when to come back."""
    current = limiter.current_limit
    wait = max(1, int(current.reset_at - time.time())) if current is not None else 60
    body = error_body("rate_limited", f"more than {rate_limit()} for this key; retry later")
    return jsonify(body), 429, {"Retry-After": str(wait)}


def actor(reason: str | None = None) -> Actor:
    return Actor(name=f"api:{g.api_key_name}", ip=request.remote_addr, reason=reason)


def register_api(app: Flask) -> None:
    """Register the API with its guard: bearer keys instead of cookies and CSRF tokens."""
    app.register_blueprint(api)
    # The guard belongs to this app's registration of the blueprint, for every route in it.
    app.before_request_funcs.setdefault(api.name, []).append(require_api_key)
    csrf.exempt(api)


# One budget per key over every route of the blueprint (a shared scope: a plain limit would
# count each route apart). Flask-Limiter checks it before the guard runs.
limiter.shared_limit(rate_limit, scope="api", key_func=rate_limit_key)(api)


# --- Parsing -------------------------------------------------------------------------------------


# A \uD800-\uDFFF escape in the raw body: the only way JSON text can carry a lone surrogate.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def json_body() -> dict[str, Any]:
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        # Nesting deeper than the parser's recursion is as malformed as a syntax error.
        body = None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    if SURROGATE_ESCAPE.search(request.get_data(cache=True)) and not _encodable(body):
        raise ApiError(400, "invalid_text", "the body holds text that is not valid Unicode")
    return body


def _encodable(value: Any) -> bool:
    """Whether every string in ``value`` can be written as UTF-8. JSON may escape a lone
    surrogate (``"\\ud800"``), which no database driver can store. Walked with a stack, not
    recursion, since the document may be nested almost as deep as the parser allows; only run
    when the raw body has such an escape, so that a 10,000-address batch does not pay for it."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


# A required field is never None: said to the type checker, so callers need not check again.
@overload
def text_field(body: dict[str, Any], name: str, *, required: Literal[True]) -> str: ...
@overload
def text_field(body: dict[str, Any], name: str, *, required: bool = False) -> str | None: ...
def text_field(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(400, "missing_field", f"{name} is required", name)
        return None
    if not isinstance(value, str):
        raise ApiError(400, "invalid_type", f"{name} must be a string", name)
    if "\x00" in value:
        # No column can hold it (PostgreSQL refuses NUL outright); fields optin ignores may.
        raise ApiError(400, "invalid_text", f"{name} may not contain NUL characters", name)
    return value


def status_field(body: dict[str, Any]) -> Status:
    if "status" not in body:
        raise ApiError(400, "missing_field", "status is required", "status")
    value = body["status"]
    # A float too: JSON has one number type, and JSON Schema's integer includes 5.0.
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ApiError(400, "invalid_status", "status is a word of SPEC §1 or 0-6", "status")
    return parse_status(value)


def time_field(body: dict[str, Any], name: str) -> datetime | None:
    """An ISO 8601 time; without a zone it is read as UTC."""
    value = text_field(body, name)
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ApiError(400, "invalid_time", f"{name} must be an ISO 8601 time", name) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def channel_arg(value: str | None) -> Channel:
    return parse_channel(value or Channel.EMAIL.value)


# --- Representations -----------------------------------------------------------------------------


def decision_json(email: str, decision: Decision) -> dict[str, Any]:
    return {
        "email": email,
        "allowed": decision.allowed,
        "reason": decision.reason,
        "global_status": decision.global_status,
        "subscription_status": decision.subscription_status,
    }


def profile_json(profile: Profile) -> dict[str, Any]:
    return profile_record(profile)


def profile_of(email: str) -> Profile:
    address = normalize_email(email)
    profile = queries.profile_by_email(address)
    if profile is None:
        raise UnknownProfile(address)
    return profile


# --- Endpoints ----------------------------------------------------------------------------------


@api.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3.1 document of this API (no key needed to read it)."""
    return jsonify(openapi_document())


@api.get("/eligibility")
def eligibility() -> Response:
    """May we send to this address, on this resource and channel? (SPEC §1 rule 1)"""
    email = request.args.get("email")
    if not email:
        raise ApiError(400, "missing_field", "email is required", "email")
    address = normalize_email(email)
    resource = request.args.get("resource") or None
    ((_, decision),) = decide_many([address], resource, channel_arg(request.args.get("channel")))
    return jsonify(decision_json(address, decision))


@api.post("/eligibility")
def eligibility_batch() -> Response:
    """The same for up to 10,000 addresses, answered in the order asked."""
    body = json_body()
    emails = body.get("emails")
    if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
        raise ApiError(400, "invalid_type", "emails must be a list of strings", "emails")
    if len(emails) > MAX_BATCH:
        raise ApiError(
            413, "batch_too_large", f"at most {MAX_BATCH} addresses in one call", "emails"
        )
    resource = text_field(body, "resource")
    channel = channel_arg(text_field(body, "channel"))
    answers = decide_many(emails, resource, channel)
    return jsonify({"results": [decision_json(email, d) for email, d in answers]})


@api.get("/links")
def links() -> Response:
    """The unsubscribe and preferences links and the List-Unsubscribe header values for one
    recipient (no resource: the links of a message sent to the whole database)."""
    email = request.args.get("email")
    if not email:
        raise ApiError(400, "missing_field", "email is required", "email")
    profile = profile_of(email)
    channel = channel_arg(request.args.get("channel"))
    slug = request.args.get("resource") or None
    resource = resource_for(slug, channel) if slug else None
    resource_id = resource.id if resource else None
    found = links_for(profile.id, profile.link_key, resource_id, channel.value)
    return jsonify(vars(found))


@api.get("/resources/<slug>/audience")
def audience(slug: str) -> Response:
    """Everyone who may be sent this resource on this channel, streamed in constant memory as
    NDJSON (default) or CSV (``Accept: text/csv``), each with their links."""
    channel = channel_arg(request.args.get("channel"))
    resource = resource_for(slug, channel)
    now = utcnow()
    as_csv = request.accept_mimetypes.best_match(["application/x-ndjson", "text/csv"]) == "text/csv"

    maker = LinkMaker()

    def as_ndjson() -> Iterator[str]:
        # Blocks of about 64 KiB: one HTTP chunk per row costs the server and the client more
        # than building the rows does (15.1 s against 11.4 s for 550,000 rows).
        block: list[str] = []
        size = 0
        dumps, resource_id, channel_name = json.dumps, resource.id, channel.value
        for row in queries.stream_audience(resource_id, channel_name, now):
            links = maker.json_fields(row.id, row.link_key, resource_id, channel_name)
            line = f'{{"email":{dumps(row.email)},"name":{dumps(row.name)},{links}}}\n'
            block.append(line)
            size += len(line)
            if size >= STREAM_BLOCK:
                yield "".join(block)
                block, size = [], 0
        if block:
            yield "".join(block)

    if as_csv:
        # For programs: the values as stored, no spreadsheet quoting (services/exports.py).
        blocks = audience_csv(resource.id, channel.value, now, safe=False)
        return Response(stream_with_context(blocks), mimetype="text/csv")
    return Response(stream_with_context(as_ndjson()), mimetype="application/x-ndjson")


@api.get("/changes")
def changes() -> Response:
    """The status changes and erasures after the cursor ``after`` (none: from the beginning),
    in the order they became final, with the cursor to continue from (issue 15)."""
    try:
        after = change_feed.parse_cursor(request.args.get("after"))
    except change_feed.InvalidCursor as error:
        raise ApiError(400, "invalid_cursor", str(error), "after") from None
    raw = request.args.get("limit", str(change_feed.DEFAULT_LIMIT))
    limit = int(raw) if re.fullmatch("[0-9]{1,4}", raw) else 0
    if not 1 <= limit <= change_feed.MAX_LIMIT:
        message = f"limit is a whole number from 1 to {change_feed.MAX_LIMIT}"
        raise ApiError(400, "invalid_limit", message, "limit")
    page = change_feed.changes_after(after, limit)
    return jsonify({"changes": page.changes, "next": page.next})


@api.get("/profiles/<path:email>")
def profile(email: str) -> Response:
    """A profile, its subscriptions and its whole event history."""
    return jsonify(profile_json(profile_of(email)))


@api.put("/profiles/<path:email>/status")
def put_status(email: str) -> Response:
    """Change the global status (``suspended`` needs ``suspended_until``)."""
    body = json_body()
    status = status_field(body)
    until = time_field(body, "suspended_until")
    reason = text_field(body, "reason")
    statuses.set_status(
        email,
        status,
        suspended_until=until,
        cause=Cause.API,
        consent_proof=False,
        actor=actor(reason),
    )
    return jsonify(profile_json(profile_of(email)))


@api.put("/profiles/<path:email>/subscriptions/<slug>")
def put_subscription(email: str, slug: str) -> tuple[Response, int]:
    """Create or change a subscription. ``subscribed`` without consent proof is a signup: the
    confirmation email goes out (202) where the resource needs double opt-in."""
    body = json_body()
    status = status_field(body)
    channel = channel_arg(text_field(body, "channel"))
    until = time_field(body, "suspended_until")
    reason = text_field(body, "reason")
    consent = body.get("consent")
    if consent is not None and not isinstance(consent, dict):
        raise ApiError(400, "invalid_type", "consent must be an object", "consent")
    resource_for(slug, channel)
    if status is Status.SUBSCRIBED and consent is None:
        confirmation_sent = api_signup(
            email, slug, channel=channel, name=text_field(body, "name"), actor=actor(reason)
        )
        return jsonify(
            {**profile_json(profile_of(email)), "confirmation_sent": confirmation_sent}
        ), 202 if confirmation_sent else 200
    if status is Status.SUBSCRIBED and consent is not None:  # (None was a signup, above)
        proof = ConsentProof(
            confirmed_at=time_field(consent, "confirmed_at") or utcnow(),
            ip=text_field(consent, "ip"),
            user_agent=text_field(consent, "user_agent"),
            form=text_field(consent, "form") or "api",
        )
        subscription_with_consent(email, slug, channel=channel, proof=proof, actor=actor(reason))
    else:
        statuses.set_status(
            email,
            status,
            resource=slug,
            channel=channel,
            suspended_until=until,
            cause=Cause.API,
            actor=actor(reason),
        )
    return jsonify(profile_json(profile_of(email))), 200


@api.post("/events")
def post_events() -> Response:
    """Delivery events in the generic format: hard_bounce, soft_bounce, complaint, unsubscribe.
    The same event_id twice is a duplicate and changes nothing."""
    body = json_body()
    items = body.get("events")
    if not isinstance(items, list):
        raise ApiError(400, "invalid_type", "events must be a list", "events")
    if len(items) > MAX_BATCH:
        raise ApiError(413, "batch_too_large", f"at most {MAX_BATCH} events in one call", "events")
    parsed = [_event(index, item) for index, item in enumerate(items)]
    report = events.record_events(parsed, source="api", actor=actor())
    return jsonify({"accepted": report.accepted, "duplicates": report.duplicates})


def _event(index: int, item: object) -> IncomingEvent:
    where = f"events[{index}]"
    if not isinstance(item, dict):
        raise ApiError(400, "invalid_type", f"{where} must be an object", where)
    kind = text_field(item, "type", required=True)
    try:
        event_type = EventType(kind)
    except ValueError:
        choices = ", ".join(t.value for t in EventType)
        raise ApiError(400, "invalid_event", f"type is one of {choices}", f"{where}.type") from None
    for name in ("email", "event_id"):
        if not isinstance(item.get(name), str) or not item[name]:
            raise ApiError(400, "missing_field", f"{name} is required", f"{where}.{name}")
    try:
        occurred = time_field(item, "occurred_at") or utcnow()
    except ApiError as error:
        raise ApiError(400, error.code, error.message, f"{where}.occurred_at") from None
    resource = item.get("resource")
    if resource is not None and not isinstance(resource, str):
        raise ApiError(400, "invalid_type", "resource must be a string", f"{where}.resource")
    channel = item.get("channel") or Channel.EMAIL.value
    if not isinstance(channel, str):
        raise ApiError(400, "invalid_type", "channel must be a string", f"{where}.channel")
    return IncomingEvent(
        type=event_type,
        email=item["email"],
        event_id=item["event_id"],
        occurred_at=occurred,
        resource=resource,
        channel=channel,
    )
