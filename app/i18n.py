"""Languages: every page and email is in the customer's language where a translation exists
(SPEC §2). A profile's chosen language wins; otherwise the browser's Accept-Language; else English.
"""

from __future__ import annotations

from flask import Flask, g, request
from flask_babel import format_date, get_locale, lazy_gettext, refresh

# The languages with a translation under translations/ (English is the source).
LANGUAGES = {"en": "English", "de": "Deutsch"}
DEFAULT = "en"


def supported(locale: str | None) -> str | None:
    """The language code if optin has it, else None."""
    if not locale:
        return None
    code = locale.replace("-", "_").split("_")[0].lower()
    return code if code in LANGUAGES else None


def use_locale(locale: str | None) -> None:
    """Make the rest of this request speak the profile's language (when it has a translation)."""
    if supported(locale):
        g.locale = supported(locale)
        refresh()  # Flask-Babel keeps the locale it chose first for the whole request


def select_locale() -> str:
    """Flask-Babel's locale selector."""
    chosen: str | None = g.get("locale")
    if chosen:
        return chosen
    if request:
        return request.accept_languages.best_match(list(LANGUAGES), DEFAULT) or DEFAULT
    return DEFAULT


STATUS_LABELS = {
    "subscribed": lazy_gettext("subscribed"),
    "unsubscribed": lazy_gettext("unsubscribed"),
    "complainer": lazy_gettext("marked as spam"),
    "hardbounced": lazy_gettext("undeliverable"),
    "unconfirmed": lazy_gettext("unconfirmed"),
    "suspended": lazy_gettext("paused"),
    "invalid": lazy_gettext("blocked"),
}


def status_label(status: str | None) -> str:
    """A status as the customer reads it, in their language."""
    return str(STATUS_LABELS.get(status or "", status or ""))


def register_template_helpers(app: Flask) -> None:
    """``current_locale``, ``status_label`` and ``format_date`` in every template; and a fresh
    choice of language for every request (Flask-Babel remembers it on ``g``, which outlives a
    request wherever an app context is shared, as in tests and CLI commands)."""

    @app.before_request
    def _choose_again() -> None:
        g.pop("locale", None)
        refresh()

    @app.context_processor
    def _helpers() -> dict[str, object]:
        return {
            "current_locale": str(get_locale() or DEFAULT),
            "status_label": status_label,
            "format_date": format_date,
        }
