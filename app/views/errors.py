"""One clear page for every error a visitor can meet, with the right status code."""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask, Response, abort, current_app, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DBAPIError
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException, InternalServerError

from app.database import unreachable
from app.extensions import db

MESSAGES = {
    400: (_l("Something in that request was wrong"), _l("Please go back and try again.")),
    403: (_l("Not allowed"), _l("You cannot open this page.")),
    404: (
        _l("Page not found"),
        _l("There is nothing at this address. Check the link and try again."),
    ),
    405: (_l("Not like this"), _l("This page cannot be used that way.")),
    410: (_l("This link no longer works"), _l("What it pointed to is gone.")),
    413: (_l("Too much data"), _l("What you sent is larger than this form accepts.")),
    429: (_l("Too many attempts"), _l("Please wait a little and try again later.")),
    500: (
        _l("Something went wrong on our side"),
        _l("Nothing was changed. Please try again later."),
    ),
    503: (
        _l("Back in a moment"),
        _l("We cannot answer right now. Please try again in a minute."),
    ),
}
# Seconds a client is asked to wait while the database is unreachable (a restart takes a few).
RETRY_AFTER = 30


# The pages of the standard messages, kept per app by status, language and mount point: a
# refused request (over a rate limit, a page that is not there) should cost little, and the page
# was a fifth of a rate-limited POST. Kept apart from the public pages' cache, which reads the
# database: an error page must render when the database is down.
_KEPT_PAGES = "optin_error_pages"
# Statuses x languages x mount points: a handful. The bound holds if a proxy lets a visitor choose
# the mount point (SCRIPT_NAME): past it, pages are rendered each time.
MAX_KEPT_ERROR_PAGES = 64


def error_page(status: int, title: object = None, detail: object = None) -> tuple[str, int]:
    if title is None and detail is None:
        kept: dict[tuple[int, str, str], str] = current_app.extensions.setdefault(_KEPT_PAGES, {})
        key = (status, str(get_locale()), request.script_root)
        page = kept.get(key)
        if page is None:
            page = _error_page(status, None, None)
            if len(kept) < MAX_KEPT_ERROR_PAGES:
                kept[key] = page
        return page, status
    return _error_page(status, title, detail), status


def _error_page(status: int, title: object, detail: object) -> str:
    default_title, default_detail = MESSAGES.get(status, MESSAGES[400])
    return render_template(
        "errors/error.html",
        status=status,
        title=title or default_title,
        detail=detail or default_detail,
    )


# Bodies werkzeug parses into ``request.form`` (and ``request.files``).
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def refuse_nul_bytes() -> None:
    """No text optin stores may hold a NUL character (PostgreSQL refuses them outright), so a
    request carrying one in its path, query or form is a clear 400 before any view runs.

    It runs for every request, so it looks at what was sent before it decodes anything: a
    path value can hold a NUL only if the path does, a query value only if the raw query
    string holds a NUL byte or its escape ``%00``. The form is parsed here as before (the
    view reads it anyway)."""
    # One context lookup instead of one for each attribute below.
    sent = request._get_current_object()  # type: ignore[attr-defined]
    if "\x00" in sent.path and _holds_nul((sent.view_args or {}).values()):
        abort(400)
    query = sent.query_string
    if (b"\x00" in query or b"%00" in query) and _pairs_hold_nul(sent.args):
        abort(400)
    if sent.mimetype in FORM_TYPES:
        filenames = (upload.filename for upload in sent.files.values())
        if _pairs_hold_nul(sent.form) or _holds_nul(filenames):
            abort(400)


def _holds_nul(values: Iterable[object]) -> bool:
    return any(isinstance(value, str) and "\x00" in value for value in values)


def _pairs_hold_nul(pairs: MultiDict[str, str]) -> bool:
    """Every name and every value, a repeated name's too (``values()`` gives only the first)."""
    return any("\x00" in name or "\x00" in value for name, value in pairs.items(multi=True))


def register_error_pages(app: Flask) -> None:
    """Handlers for the HTTP errors and for a missing or wrong CSRF token."""
    app.before_request(refuse_nul_bytes)

    @app.errorhandler(CSRFError)
    def _csrf(_error: CSRFError) -> tuple[str, int]:
        return error_page(
            400,
            _l("This form has expired"),
            _l(
                "For your safety, forms only work for a while. "
                "Go back, reload the page and try again."
            ),
        )

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> ResponseReturnValue:
        if wants_json():
            return json_error(error.code or 500, error.name.lower().replace(" ", "_"))
        return error_page(error.code or 500)

    @app.errorhandler(DBAPIError)
    def _database_away(error: DBAPIError) -> ResponseReturnValue:
        # The database restarting or out of reach is an outage to wait out, not a fault: the
        # transaction was rolled back with its connection, so nothing was half made. Any other
        # database error stays what it was (a 500).
        if not unreachable(error):
            raise error
        db.session.remove()
        answer = json_error(503, "unavailable") if wants_json() else error_page(503)
        return answer[0], answer[1], {"Retry-After": str(RETRY_AFTER)}

    @app.errorhandler(InternalServerError)
    def _internal(_error: InternalServerError) -> ResponseReturnValue:
        if wants_json():
            return json_error(500, "internal_error")
        return error_page(500)


def wants_json() -> bool:
    """API and webhook clients get JSON errors, people get pages."""
    return request.path.startswith(("/api/", "/webhooks/"))


def json_error(status: int, code: str) -> tuple[Response, int]:
    _title, detail = MESSAGES.get(status, MESSAGES[400])
    return jsonify({"error": {"code": code, "message": str(detail)}}), status
