"""The emails the outbox sends, rendered once per process and reused.

An email differs from the last one of its kind but for its recipient's links and, now and then,
the name it greets: the resource, its description, the language are the same for everyone who
signs up to it in that language. Rendering its three templates (subject, text, HTML) was a good
part of the CPU of a delivery after the response. So an email is rendered once with a stand-in
for each recipient's value, and each recipient gets a copy with their own values: escaped in the
HTML part, as Jinja's autoescape would have escaped them, and as they are in the subject and the
text part, which are not escaped. The technique is the public pages' (app/views/page_cache.py).

A copy is kept per app (``app.extensions``), since the templates, the translations and the
``config`` the templates read (the organisation's name and postal address, set when the process
starts) are the app's. Its key names everything else the email shows: the template and every
context value but the recipient's, the language among them, so an edit of a resource (its name
is in the context) makes a new copy and never shows a stale one. Nothing is kept while Jinja
reloads changed templates (``TEMPLATES_AUTO_RELOAD``, debug), nor for a context it cannot name
(a value that is no JSON scalar or list), nor when a template changes a stand-in before showing
it (a filter): such an email is rendered afresh each time. A template need not show every value
(a preference link shows no ``preferences_url``), but one that showed only a piece of a value
that drops the stand-in's random part (``[0]``, ``|length``) would show the stand-in's piece:
the email templates show each recipient value whole or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple

from flask import current_app
from markupsafe import escape

from app.stand_ins import StandIns

# The values that differ from one recipient to the next: the links, which carry their tokens,
# and the name a welcome greets. Only a text that is not empty gets a stand-in, which is such a
# text too, so the template takes the same branches for both; any other value (a welcome from a
# form signup has no name: "Hello," instead of "Hello Ann,") is named in the key like the rest.
PER_RECIPIENT = frozenset(
    {"confirm_url", "unsubscribe_url", "preferences_url", "preferences_link", "data_link", "name"}
)
# Keys are templates x languages x resources (a confirmation, the set of resources asked for
# together), so a few hundred cover any real catalogue. An edit of a resource's name or
# description makes new copies and leaves the old ones unused: once full, they are all dropped
# and made again as they are asked for, so that a process that runs for months, through many
# edits, still keeps its emails instead of rendering each one afresh.
MAX_EMAILS = 256
# app.extensions: the app's copies, by key.
EXTENSION = "optin_kept_emails"
_STAND_INS = StandIns("email")


class Email(NamedTuple):
    subject: str
    text: str
    html: str


def kept_email(
    template: str, context: dict[str, Any], render: Callable[[str, dict[str, Any]], Email]
) -> Email:
    """``render(template, context)``, from the copy kept for this template and the context's
    values other than the recipient's, with the recipient's values put in."""
    values = {
        name: value
        for name, value in context.items()
        if name in PER_RECIPIENT and isinstance(value, str) and value
    }
    key = _key(template, context, values)
    if key is None or current_app.jinja_env.auto_reload:
        return render(template, context)
    kept: dict[Hashable, Email] = current_app.extensions.setdefault(EXTENSION, {})
    email = kept.get(key)
    if email is None:
        stand_ins = _STAND_INS.for_names(values)
        email = render(template, {**context, **stand_ins})
        if not _STAND_INS.came_through(stand_ins, email):
            return render(template, context)
        if len(kept) >= MAX_EMAILS:
            kept.clear()
        kept[key] = email
    return Email(
        _STAND_INS.put_in(email.subject, values),
        _STAND_INS.put_in(email.text, values),
        _STAND_INS.put_in(email.html, {name: escape(value) for name, value in values.items()}),
    )


def _key(template: str, context: Mapping[str, Any], values: Mapping[str, Any]) -> Hashable | None:
    """What the email shows besides the recipient's ``values``, in any order (PostgreSQL's JSONB
    gives a context's keys back in an order of its own); None when a value cannot be named (the
    email is then rendered afresh)."""
    try:
        shown = frozenset((name, _frozen(context[name])) for name in context.keys() - values)
    except TypeError:
        return None
    return template, shown, frozenset(values)


def _frozen(value: Any) -> Hashable:
    """A JSON value as part of a key, with its type: ``1``, ``1.0`` and ``True`` are equal keys
    in Python and show differently in an email."""
    if value is None or isinstance(value, str | int | float | bool):
        return type(value).__name__, value
    if isinstance(value, list | tuple):
        return "list", tuple(_frozen(item) for item in value)
    raise TypeError(f"not kept in a key: {type(value).__name__}")
