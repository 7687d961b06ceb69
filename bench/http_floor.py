"""The floor of the API benchmark: optin's three sender endpoints written as plainly as they can be,
a bare WSGI application on the standard library and the database driver alone.

``gunicorn -w 2 -k sync -b 127.0.0.1:PORT bench.http_floor:application``, configured by the
environment ``bench/http_api.py`` gives it:

- ``FLOOR_BACKEND``: ``sqlite`` or ``postgres``; ``FLOOR_DATABASE``: the SQLite file (which must
  exist), or a PostgreSQL conninfo;
- ``SECRET_KEY``, ``BASE_URL``, ``UNSUBSCRIBE_MAILTO``: the values optin's server is given, so the
  links are byte for byte optin's;
- ``FLOOR_CHUNK_BYTES``: the audience is sent in chunks of about this many bytes (default 65536;
  ``0`` sends one chunk per row, as optin does).

It answers the same URLs as optin. The audience bodies are optin's byte for byte; the eligibility
answers agree with optin's on the address, allowed or refused, and the stored statuses (``http_api``
checks both before timing). The floor has no send rule of its own: ``allowed`` is the audience
query's condition selected per row (``bench/floor_sql.py``), every refusal's reason is "refused",
and a status is the stored one (optin reports a suspension that has ended as the status it gave
back, so the check skips a stored `suspended`):

- ``GET /api/v1/eligibility?email=&resource=&channel=``: the bearer key looked up by its SHA-256,
  the resource by its slug, then one query joining profile, subscription and suppression (and for
  an unknown address one lookup of its hash on the suppression list);
- ``POST /api/v1/eligibility``: the same for up to 10,000 addresses, looked up 5,000 at a time
  (``IN (...)`` on SQLite, a join to an unnest()ed array on PostgreSQL, as optin's queries);
- ``GET /api/v1/resources/<slug>/audience``: the audience query as plain SQL (a lazy cursor on
  SQLite; on PostgreSQL a named server-side cursor fetching 2,000 rows at a time, planned for all
  its rows with ``cursor_tuple_fraction = 1.0`` as optin's), each row with
  its links: ``hmac`` + ``base64`` over the payload itsdangerous signs, ``json.dumps`` per row.

What it leaves out is what a floor may leave out: the full address validation (a regex instead,
which answers this benchmark's addresses alike), error bodies for every malformed input, an ORM,
a framework. Nothing here imports Flask, SQLAlchemy or the app.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from bench import floor_sql

MAX_BATCH = 10_000
STREAM_BATCH = 2000  # rows per fetch, as stream_audience's default batch_size
KEY_PREFIX = "optin_"
ONE_CLICK = "List-Unsubscribe=One-Click"
ADDRESS = re.compile(r"[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+")
CHANNELS = ("email", "sms", "push")

DATABASE = os.environ.get("FLOOR_DATABASE", "")
POSTGRES = os.environ.get("FLOOR_BACKEND", "sqlite") == "postgres"
MARK = "%s" if POSTGRES else "?"
SECRET = os.environ["SECRET_KEY"].encode()  # http_api gives it optin's, and so must anyone else
BASE_URL = os.environ.get("BASE_URL", "http://127.0.0.1:5000").rstrip("/")
MAILTO = os.environ.get("UNSUBSCRIBE_MAILTO", "unsubscribe@localhost")
CHUNK_BYTES = int(os.environ.get("FLOOR_CHUNK_BYTES", "65536"))


def _derived(purpose: str) -> bytes:
    """itsdangerous's key for a salt: SHA-1 of salt + "signer" + secret ("django-concat")."""
    return hashlib.sha1(f"optin.{purpose}".encode() + b"signer" + SECRET).digest()


UNSUBSCRIBE_KEY = _derived("unsubscribe")
PREFERENCES_KEY = _derived("preferences")


def token(key: bytes, payload: str) -> str:
    """``payload.signature``: HMAC-SHA1, URL-safe base64 without padding, as itsdangerous signs."""
    mac = hmac.digest(key, payload.encode("ascii"), "sha1")
    return payload + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


# --- the connection, one per worker process, opened after the fork --------------------------------

_connection: Any = None


def connection() -> Any:
    global _connection
    if _connection is None:
        if POSTGRES:
            import psycopg

            # Never prepared server-side, like optin's statements (see bench/workers.py).
            _connection = psycopg.connect(DATABASE, autocommit=True, prepare_threshold=None)
        else:
            if not os.path.isfile(DATABASE):
                raise RuntimeError(f"FLOOR_DATABASE={DATABASE!r} is not a SQLite file")
            _connection = sqlite3.connect(DATABASE, isolation_level=None)
    return _connection


def fetch(sql: str, params: Iterable[Any]) -> list[tuple[Any, ...]]:
    return connection().execute(sql, list(params)).fetchall()


def now() -> Any:
    """The current time as the database compares it: naive UTC text on SQLite (as the column
    stores it), an aware datetime on PostgreSQL."""
    moment = datetime.now(UTC)
    if POSTGRES:
        return moment
    return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


# --- the decision ---------------------------------------------------------------------------------

REFUSED = "refused"  # the floor's reason for every refusal: which rule refused is optin's to say


def answer(email: str, allowed: bool, g: str | None, s: str | None) -> dict[str, Any]:
    """One answer with optin's keys. The statuses are the stored ones (a suspension that has
    ended is reported as optin reports it only by optin: that is the rule, not raw work)."""
    return {
        "email": email,
        "allowed": allowed,
        "reason": "subscribed" if allowed else REFUSED,
        "global_status": g,
        "subscription_status": s,
    }


def decide(emails: list[str], resource_id: int | None, channel: str) -> list[dict[str, Any]]:
    normalized: list[str | None] = []
    for raw in emails:
        address = raw.strip().lower()
        normalized.append(address if ADDRESS.fullmatch(address) else None)
    known = list(dict.fromkeys(a for a in normalized if a is not None))
    rows = floor_sql.decision_rows(fetch, POSTGRES, known, resource_id, channel, now())
    # The unknown addresses' suppression lookup: optin makes it for its answer, so the floor
    # makes it too, although its own answer ("refused") is the same either way.
    unknown = [hashlib.sha256(a.encode()).hexdigest() for a in known if a not in rows]
    if unknown:
        floor_sql.suppressed_hashes(fetch, POSTGRES, unknown)
    answers = []
    for raw, asked in zip(emails, normalized, strict=True):
        row = rows.get(asked) if asked is not None else None
        if row is None:
            answers.append(answer(asked or raw, False, None, None))
        else:
            answers.append(answer(asked or raw, bool(row[1]), row[2], row[3]))
    return answers


# --- the audience ---------------------------------------------------------------------------------

AUDIENCE_SQL = floor_sql.audience_sql(MARK)


def audience_rows(resource_id: int, channel: str) -> Iterator[tuple[Any, ...]]:
    moment = now()
    params = [resource_id, channel, moment, moment]
    if not POSTGRES:
        yield from connection().execute(AUDIENCE_SQL, params)
        return
    conn = connection()
    with conn.transaction(), conn.cursor(name="audience") as cursor:
        # As optin does: plan the cursor for all its rows, not the first 10 %.
        conn.execute("SET LOCAL cursor_tuple_fraction = 1.0")
        cursor.itersize = STREAM_BATCH
        cursor.execute(AUDIENCE_SQL, params)
        yield from cursor


def audience_lines(resource_id: int, channel: str) -> Iterator[bytes]:
    dumps = json.dumps
    base, mailto = BASE_URL, MAILTO
    suffix = f"-{resource_id}-{channel}"
    buffer: list[str] = []
    size = 0
    for profile_id, email, name, key in audience_rows(resource_id, channel):
        unsubscribe = token(UNSUBSCRIBE_KEY, f"{profile_id}{suffix}-{key}")
        unsubscribe_url = f"{base}/unsubscribe/{unsubscribe}"
        mailto_url = f"mailto:{mailto}?subject=unsubscribe%20{unsubscribe}"
        line = (
            dumps(
                {
                    "email": email,
                    "name": name,
                    "unsubscribe_url": unsubscribe_url,
                    "preferences_url": (
                        f"{base}/preferences/{token(PREFERENCES_KEY, f'{profile_id}--email-{key}')}"
                    ),
                    "list_unsubscribe": f"<{unsubscribe_url}>, <{mailto_url}>",
                    "list_unsubscribe_post": ONE_CLICK,
                },
                separators=(",", ":"),
            )
            + "\n"
        )
        if CHUNK_BYTES <= 0:
            yield line.encode()
            continue
        buffer.append(line)
        size += len(line)
        if size >= CHUNK_BYTES:
            yield "".join(buffer).encode()
            buffer.clear()
            size = 0
    if buffer:
        yield "".join(buffer).encode()


# --- WSGI -----------------------------------------------------------------------------------------

Start = Callable[[str, list[tuple[str, str]]], Any]


def _json(start: Start, status: str, body: Any) -> list[bytes]:
    # As optin's jsonify writes it outside debug mode: keys in insertion order (optin turns
    # Flask's key sorting off), compact, a final newline.
    data = (json.dumps(body, separators=(",", ":")) + "\n").encode()
    start(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def _error(start: Start, status: str, code: str, message: str) -> list[bytes]:
    return _json(start, status, {"error": {"code": code, "message": message}})


def _authorized(environ: dict[str, Any]) -> bool:
    scheme, _, key = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    key = key.strip()
    if scheme.lower() != "bearer" or not key.startswith(KEY_PREFIX):
        return False
    digest = hashlib.sha256(key.encode()).hexdigest()
    rows = fetch(f"SELECT revoked_at FROM api_keys WHERE key_hash = {MARK}", [digest])
    return bool(rows) and rows[0][0] is None


def _resource(slug: str, channel: str) -> int | None:
    rows = fetch(f"SELECT id, channels FROM resources WHERE slug = {MARK}", [slug])
    if not rows or channel not in rows[0][1].split(","):
        return None
    return int(rows[0][0])


def application(environ: dict[str, Any], start: Start) -> Iterable[bytes]:
    path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
    if path == "/healthz":
        start("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]
    if not _authorized(environ):
        return _error(start, "401 UNAUTHORIZED", "unauthorized", "a valid API key is needed")
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    channel = query.get("channel") or "email"
    if path == "/api/v1/eligibility" and method == "GET":
        address = (query.get("email") or "").strip().lower()
        if not ADDRESS.fullmatch(address) or channel not in CHANNELS:
            return _error(start, "400 BAD REQUEST", "invalid_email", "not a valid address")
        slug = query.get("resource")
        resource_id = _resource(slug, channel) if slug else None
        if slug and resource_id is None:
            return _error(start, "404 NOT FOUND", "unknown_resource", "no such resource")
        return _json(start, "200 OK", decide([address], resource_id, channel)[0])
    if path == "/api/v1/eligibility" and method == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        try:
            body = json.loads(environ["wsgi.input"].read(length))
        except ValueError:
            body = None
        emails = body.get("emails") if isinstance(body, dict) else None
        if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
            return _error(start, "400 BAD REQUEST", "invalid_type", "emails must be strings")
        if len(emails) > MAX_BATCH:
            return _error(start, "413 REQUEST ENTITY TOO LARGE", "batch_too_large", "too many")
        channel = body.get("channel") or "email"
        slug = body.get("resource")
        resource_id = _resource(slug, channel) if slug else None
        if slug and resource_id is None:
            return _error(start, "404 NOT FOUND", "unknown_resource", "no such resource")
        return _json(start, "200 OK", {"results": decide(emails, resource_id, channel)})
    prefix, suffix = "/api/v1/resources/", "/audience"
    if path.startswith(prefix) and path.endswith(suffix) and method == "GET":
        resource_id = _resource(path[len(prefix) : -len(suffix)], channel)
        if resource_id is None:
            return _error(start, "404 NOT FOUND", "unknown_resource", "no such resource")
        start("200 OK", [("Content-Type", "application/x-ndjson")])
        return audience_lines(resource_id, channel)
    return _error(start, "404 NOT FOUND", "not_found", "no such endpoint")
