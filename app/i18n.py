"""Languages: every page and email is in the customer's language where a translation exists
(SPEC §2). A profile's chosen language wins; otherwise the browser's Accept-Language; else English.
"""

from __future__ import annotations

from typing import Any

from babel.support import NullTranslations
from flask import Flask, g, request
from flask_babel import format_date, get_locale, get_translations, lazy_gettext, refresh
from jinja2 import pass_context
from jinja2.runtime import Context

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


# The render context's name for the translations of the language the page is rendered in.
TRANSLATIONS = "_translations"


def _translations_of(context: Context) -> NullTranslations:
    """The page's translations, looked up once per render by the context processor below;
    Flask-Babel's own lookup (three trips through ``g`` and the locale's name per string) is
    the fallback where a template has no page context, as in a macro imported without it."""
    translations: NullTranslations | None = context.get(TRANSLATIONS)
    return translations if translations is not None else get_translations()


@pass_context
def _gettext(context: Context, string: str) -> str:
    return _translations_of(context).ugettext(string)


@pass_context
def _ngettext(context: Context, singular: str, plural: str, n: int) -> str:
    return _translations_of(context).ungettext(singular, plural, n)


@pass_context
def _pgettext(context: Context, msgctxt: str, string: str) -> str:
    return _translations_of(context).upgettext(msgctxt, string)


@pass_context
def _npgettext(context: Context, msgctxt: str, singular: str, plural: str, n: int) -> str:
    return _translations_of(context).unpgettext(msgctxt, singular, plural, n)


def register_template_helpers(app: Flask) -> None:
    """``current_locale``, ``status_label`` and ``format_date`` in every template; the
    templates' ``_()`` bound to the page's translations; and a fresh choice of language for
    every request (Flask-Babel remembers it on ``g``, which outlives a request wherever an app
    context is shared, as in tests and CLI commands)."""
    # In place of the callables Flask-Babel installed (after babel.init_app), with the same
    # newstyle behaviour: autoescaped, and "%(name)s" filled in by Jinja's i18n extension.
    app.jinja_env.install_gettext_callables(  # type: ignore[attr-defined]  # added by jinja2.ext.i18n
        gettext=_gettext,
        ngettext=_ngettext,
        newstyle=True,
        pgettext=_pgettext,
        npgettext=_npgettext,
    )

    @app.before_request
    def _choose_again() -> None:
        g.pop("locale", None)
        refresh()

    @app.context_processor
    def _helpers() -> dict[str, Any]:
        return {
            TRANSLATIONS: get_translations(),
            "current_locale": str(get_locale() or DEFAULT),
            "status_label": status_label,
            "format_date": format_date,
        }
