"""Languages: every page and email is in the customer's language where a translation exists
(SPEC §2). A profile's chosen language wins; otherwise the browser's Accept-Language; else English.
"""

from __future__ import annotations

from typing import Any

from babel.support import NullTranslations
from flask import Flask, g, has_app_context, request
from flask_babel import (
    Domain,
    format_date,
    get_locale,
    get_translations,
    lazy_gettext,
    refresh,
)
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup

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


# Where Flask-Babel keeps a request's locale (and, in its older releases, translations) on g.
_BABEL_STATE = "_flask_babel"


class RememberingDomain(Domain):  # type: ignore[misc]  # Flask-Babel has no type hints
    """Flask-Babel's message domain (``gettext``, ``lazy_gettext``, ``get_translations``: a
    form's labels, a view's messages, an email's strings), which keeps the translations it
    looked up in Flask-Babel's request state as ``babel_translations``: ``refresh()`` (a new
    request, ``use_locale``) deletes that, and ``force_locale`` (an email) sets it to None for
    its duration and puts it back after, so it is always the current language's. Flask-Babel's
    own lookup costs three trips through ``g`` and the locale's name for every string."""

    def get_translations(self) -> NullTranslations:
        translations = _remembered()
        if translations is None:
            translations = super().get_translations()  # which makes the request state
            if has_app_context():
                g.get(_BABEL_STATE).babel_translations = translations
        return translations


def _remembered() -> NullTranslations | None:
    """The translations the domain above remembered for this request, if any yet."""
    state = g.get(_BABEL_STATE) if has_app_context() else None
    return getattr(state, "babel_translations", None)


def _translations() -> NullTranslations:
    """The translations of the language being rendered in: those the domain above remembered
    for this request, looked up once (the first string of a request, or of an email under
    ``force_locale``, looks them up)."""
    translations = _remembered()
    return translations if translations is not None else get_translations()


def _filled(context: Context, translated: str, variables: dict[str, Any]) -> str:
    """Jinja's newstyle gettext: the translation autoescaped, then filled in with the
    variables, always (so that "%" is written "%%" in every message alike)."""
    if context.eval_ctx.autoescape:
        # The message is the templates' own text and its translation; the variables are
        # escaped by Markup's "%" below, as Jinja's own newstyle gettext does.
        translated = Markup(translated)  # nosec B704
    return translated % variables


# The templates' gettext functions, newstyle as Jinja's i18n extension makes them, in one call
# each: Jinja's ``_`` takes three (its alias, its newstyle wrapper, the installed callable), each
# through ``Context.call``'s inspection of the callee, and a page says ``_()`` a dozen times.


@pass_context
def _gettext(context: Context, string: str, **variables: Any) -> str:
    return _filled(context, _translations().ugettext(string), variables)


@pass_context
def _ngettext(context: Context, singular: str, plural: str, num: int, **variables: Any) -> str:
    variables.setdefault("num", num)
    translated = _translations().ungettext(singular, plural, num)
    return _filled(context, translated, variables)


@pass_context
def _pgettext(context: Context, msgctxt: str, string: str, **variables: Any) -> str:
    variables.setdefault("context", msgctxt)
    return _filled(context, _translations().upgettext(msgctxt, string), variables)


@pass_context
def _npgettext(
    context: Context, msgctxt: str, singular: str, plural: str, num: int, **variables: Any
) -> str:
    variables.setdefault("context", msgctxt)
    variables.setdefault("num", num)
    translated = _translations().unpgettext(msgctxt, singular, plural, num)
    return _filled(context, translated, variables)


def register_template_helpers(app: Flask) -> None:
    """``current_locale``, ``status_label`` and ``format_date`` in every template; the
    templates' ``_()`` on the request's remembered translations; and a fresh choice of language for
    every request (Flask-Babel remembers it on ``g``, which outlives a request wherever an app
    context is shared, as in tests and CLI commands)."""
    # In place of the callables Flask-Babel installed (after babel.init_app); ``{% trans %}``
    # blocks call them too, compiled for newstyle gettext.
    app.jinja_env.newstyle_gettext = True  # type: ignore[attr-defined]  # jinja2.ext.i18n's
    app.jinja_env.globals.update(
        {
            "_": _gettext,
            "gettext": _gettext,
            "ngettext": _ngettext,
            "pgettext": _pgettext,
            "npgettext": _npgettext,
        }
    )

    @app.before_request
    def _choose_again() -> None:
        g.pop("locale", None)
        refresh()

    @app.context_processor
    def _helpers() -> dict[str, Any]:
        return {
            "current_locale": str(get_locale() or DEFAULT),
            "status_label": status_label,
            "format_date": format_date,
        }
