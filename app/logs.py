"""Logs an operator's tools can read: with ``LOG_FORMAT=json`` every record is one JSON object a
line (python-json-logger) with its time, level, logger and message, and, when it was written
while a request was served, the request's id and route. Every request gets an id, the proxy's
``X-Request-ID`` when it sends a sane one, so one line of nginx's log finds optin's lines."""

from __future__ import annotations

import logging
import os
import re
import sys

from flask import Flask, Response, g, has_request_context, request
from pythonjsonlogger.json import JsonFormatter

FORMATS = ("text", "json")
# A proxy's request id is echoed into logs and a header: short, and nothing but safe characters.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_OURS = "optin_handler"


class RequestFields(logging.Filter):
    """Adds the request id and route (the URL rule: a path carries tokens) to a record written
    while a request is served."""

    def filter(self, record: logging.LogRecord) -> bool:
        if has_request_context():
            record.request_id = g.get("request_id")
            record.route = request.url_rule.rule if request.url_rule is not None else None
        return True


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        ["levelname", "name", "message"],
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
    )


def configure_logging(log_format: str) -> None:
    """With ``json``, give the root logger one handler on stderr writing JSON lines, INFO and
    above; with ``text``, leave Python's and Flask's defaults as they are. Called by every
    ``create_app``: it replaces or removes its own handler and leaves anyone else's alone."""
    if log_format not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, not {log_format!r}")
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _OURS, False)]:
        root.removeHandler(handler)
    if log_format != "json":
        return
    handler = logging.StreamHandler(sys.stderr)
    setattr(handler, _OURS, True)
    handler.addFilter(RequestFields())
    handler.setFormatter(json_formatter())
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def _name_request() -> None:
    # The header straight from the WSGI environ (what ``request.headers.get`` returns, without
    # its key translation), and 128 random bits in hex: the same 32 characters as a uuid4's
    # hex, without building a UUID for every request.
    given = request.environ.get("HTTP_X_REQUEST_ID")
    g.request_id = given if given and SANE_REQUEST_ID.fullmatch(given) else os.urandom(16).hex()


def _echo_request_id(response: Response) -> Response:
    request_id = g.get("request_id")
    if request_id is not None:
        response.headers["X-Request-ID"] = request_id
    return response


def register_request_ids(app: Flask) -> None:
    """Name every request (first of all the hooks, so every later line carries the id)."""
    app.before_request_funcs.setdefault(None, []).insert(0, _name_request)
    app.after_request(_echo_request_id)
