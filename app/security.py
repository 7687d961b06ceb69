"""What protects optin where a person or a browser meets it: the secret key that signs sessions
and links when none is set, the signed session cookie, and the protective headers on every
response.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import tempfile
import unicodedata
from collections.abc import Iterable
from urllib.parse import urlsplit

from flask import Flask, Response, request
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer

logger = logging.getLogger(__name__)

# The key generated when SECRET_KEY is not set lives in the instance folder under this name.
GENERATED_KEY_FILE = "secret_key"
# The longest thank-you URL a resource may have (its column is 500 characters).
MAX_URL_LENGTH = 500


def instance_secret_key(instance_path: str) -> str:
    """The key in ``instance/secret_key``, generated on the first start without SECRET_KEY.

    A constant default would let anyone forge an admin session and every customer link, so a
    missing key is made at random and kept, readable by its owner only. Two processes that start
    together must agree on it: the new key is written to a private temporary file and linked to
    its name, which either succeeds whole or finds the other process's key there already; nobody
    ever reads a half-written file.
    """
    path = os.path.join(instance_path, GENERATED_KEY_FILE)
    if os.path.exists(path):
        return _read_key(path)
    key = secrets.token_urlsafe(48)
    handle, draft = tempfile.mkstemp(dir=instance_path, prefix=".secret_key-")  # mode 0600
    try:
        with os.fdopen(handle, "w") as file:
            file.write(key + "\n")
            file.flush()
            os.fsync(file.fileno())
        os.link(draft, path)
    except FileExistsError:
        return _read_key(path)
    finally:
        os.unlink(draft)
    logger.warning(
        "SECRET_KEY is not set: generated a random key into %s (mode 0600). Every process and "
        "server of this optin must use the same key: set SECRET_KEY to one value everywhere, or "
        "share this file, or links and sessions made by one are refused by the others.",
        path,
    )
    return key


class SignedCookieSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie session, the same cookie, with its serializer made once per set of
    keys: Flask builds a new one twice in every request (to open the session and to save it),
    and every request opens one, even the one-click POST that has no cookie."""

    def __init__(self) -> None:
        self._serializers: dict[tuple[str | bytes, ...], URLSafeTimedSerializer] = {}

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        if not app.secret_key:
            return None
        # Keyed by the keys themselves, so a changed SECRET_KEY or fallback list takes effect.
        keys = (*(app.config["SECRET_KEY_FALLBACKS"] or ()), app.secret_key)
        serializer = self._serializers.get(keys)
        if serializer is None:
            serializer = super().get_signing_serializer(app)
            if serializer is not None:
                self._serializers[keys] = serializer
        return serializer


def _read_key(path: str) -> str:
    with open(path, encoding="utf-8") as file:
        key = file.read().strip()
    if not key:
        raise RuntimeError(f"{path} is empty: delete it to generate a new key, or set SECRET_KEY")
    return key


def thank_you_url_problem(url: str, trusted_hosts: Iterable[str]) -> str | None:
    """Why ``url`` may not be a resource's thank-you address, or None when it may.

    A visitor is sent there after a signup, so it must name a trusted host beyond doubt. Browsers
    read URLs more loosely than ``urlsplit``: they turn a backslash into a slash and drop tabs
    and newlines, so ``https://evil.example\\@trusted.example/`` is a user name "evil.example\\"
    on trusted.example to Python and the host evil.example to a browser. Whatever could be read
    two ways is refused, rather than guessed at.
    """
    if len(url) > MAX_URL_LENGTH:
        return f"a thank-you URL has at most {MAX_URL_LENGTH} characters"
    if "\\" in url:
        return "a thank-you URL may not contain a backslash"
    if any(char.isspace() or unicodedata.category(char) in ("Cc", "Cf") for char in url):
        return "a thank-you URL may not contain spaces, tabs, line breaks or control characters"
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError:
        return "a thank-you URL must be a well-formed http or https address"
    if parts.scheme not in ("https", "http") or not url.lower().startswith(parts.scheme + "://"):
        return "a thank-you URL starts with https:// (or http://)"
    if "@" in parts.netloc:
        return "a thank-you URL may not contain a user name or password"
    trusted = {name.strip().lower().rstrip(".") for name in trusted_hosts}
    if not host or host not in trusted:
        listed = ", ".join(sorted(trusted)) or "none"
        return (
            f"a thank-you URL must be on a host in TRUSTED_REDIRECT_HOSTS (now: {listed}), "
            f"not {host or 'no host'}"
        )
    return None


# The pages that may be framed by the sites in FRAME_ANCESTORS: the signup forms only, never a
# page with a button that changes something (confirm, unsubscribe, erase) nor the admin.
FRAMEABLE_ENDPOINTS = frozenset(
    {"public.subscribe", "public.subscribe_all", "public.subscribe_embedded"}
)
# A host name or a scheme-and-host as CSP source expressions take them: nothing that could end a
# directive (";", ",") or add another source (space).
CSP_SOURCE = re.compile(r"^(?:https?://)?(?:\*\.)?[A-Za-z0-9.-]+(?::[0-9]{1,5})?$")
# Two years, what the HSTS preload list asks for; not includeSubDomains, which would bind the
# operator's other sites to HTTPS too.
HSTS = "max-age=63072000"


def register_protective_headers(app: Flask) -> None:
    """Protective headers on every response, and the cookie flags that go with them.

    Written here rather than with Flask-Talisman: Talisman overwrites SESSION_COOKIE_* with its
    own arguments (the environment would no longer decide), sends HSTS by ``request.is_secure``
    and trusts any X-Forwarded-Proto, has no Cache-Control, and sets per-page policies through
    decorators on each view, where optin decides by endpoint in one place.
    """
    https = app.config["BASE_URL"].lower().startswith("https://")
    if app.config.get("SESSION_COOKIE_SECURE") is None:
        app.config["SESSION_COOKIE_SECURE"] = https
    policy = _content_security_policy(app.config["TRUSTED_REDIRECT_HOSTS"])
    ancestors = _sources(app.config["FRAME_ANCESTORS"])
    # "same-origin": the full URL (a token's path too) goes to optin itself, and nothing at all
    # to any other site. Not "no-referrer": under https Flask-WTF refuses a form whose POST
    # carries no same-origin Referer (WTF_CSRF_SSL_STRICT), which would break every button on
    # the token pages.
    shared = [("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "same-origin")]
    if https:
        shared.append(("Strict-Transport-Security", HSTS))
    # Both sets written once: the settings they come from do not change while the app runs.
    unframed = [
        ("Content-Security-Policy", f"{policy}; frame-ancestors 'none'"),
        ("X-Frame-Options", "DENY"),
        *shared,
    ]
    framed = [("Content-Security-Policy", f"{policy}; frame-ancestors {' '.join(ancestors)}")]
    framed += shared
    static_prefix = (app.static_url_path or "/static") + "/"

    @app.after_request
    def protect(response: Response) -> Response:
        headers = response.headers
        chosen = framed if ancestors and request.endpoint in FRAMEABLE_ENDPOINTS else unframed
        # A header the view set itself stays (a page may frame or cache differently); looked up
        # once for all, where setdefault() scans the headers and raises KeyError for each.
        present = {name.lower() for name, _value in headers}
        for name, value in chosen:
            if name.lower() not in present:
                headers.add(name, value)
        # Every answer but the static files may carry personal data or a CSRF token bound to one
        # browser's session: no cache, shared or private, keeps a copy.
        if not request.path.startswith(static_prefix):
            headers["Cache-Control"] = "no-store"
        return response


def _content_security_policy(trusted_hosts: Iterable[str]) -> str:
    """Everything from optin itself and nothing inline; forms may post to optin and be sent on
    to a trusted thank-you host (browsers check a form's redirects against form-action too)."""
    form_action = " ".join(["'self'", *_sources(trusted_hosts)])
    return "; ".join(
        [
            "default-src 'self'",
            "base-uri 'none'",
            "object-src 'none'",
            f"form-action {form_action}",
        ]
    )


def _sources(names: Iterable[str]) -> list[str]:
    """The names usable as CSP sources; a malformed one is dropped and logged, never let
    through to widen or break the policy."""
    found = []
    for name in names:
        name = name.strip()
        if CSP_SOURCE.match(name):
            found.append(name)
        elif name:
            logger.warning("%r is not a host name; left out of the Content-Security-Policy", name)
    return found
