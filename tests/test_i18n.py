"""Pages and emails in the customer's language where a translation exists (SPEC §2)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from flask import Flask, render_template_string
from flask.testing import FlaskClient
from flask_babel import force_locale

from app import queries
from app.i18n import use_locale
from app.links import links_for
from app.models import Resource
from tests import factories
from tests.helpers import CSRF, link_to, run_worker, text_of
from tests.smtp import SmtpServer

ROOT = Path(__file__).resolve().parent.parent
GERMAN = {"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"}


def test_a_german_browser_gets_german_pages(client: FlaskClient, newsletter: Resource) -> None:
    page = client.get("/subscribe/newsletter", headers=GERMAN).get_data(as_text=True)
    assert '<html lang="de">' in page
    assert "The Newsletter abonnieren" in page
    assert "E-Mail-Adresse" in page
    english = client.get("/subscribe/newsletter").get_data(as_text=True)
    assert '<html lang="en">' in english and "Subscribe to The Newsletter" in english
    assert "Seite nicht gefunden" in client.get("/nowhere", headers=GERMAN).get_data(as_text=True)


def test_a_german_signup_gets_german_emails_and_german_link_pages(
    client: FlaskClient, smtp_server: SmtpServer, newsletter: Resource
) -> None:
    form = client.get("/subscribe/newsletter", headers=GERMAN).get_data(as_text=True)
    token = CSRF.search(form).group(1)  # type: ignore[union-attr]
    client.post(
        "/subscribe/newsletter",
        data={"csrf_token": token, "email": "anna@example.com", "name": "Anna"},
        headers=GERMAN,
    )
    profile = queries.profile_by_email("anna@example.com")
    assert profile is not None and profile.locale == "de"
    run_worker()
    (message,) = smtp_server.messages
    assert message["Subject"] == "Bitte bestätigen Sie Ihre Anmeldung zu The Newsletter"
    # A confirmation greets no one by name: whoever asked for it typed the name.
    assert text_of(message).startswith("Hallo,\n") and "Anna" not in text_of(message)
    # The link opens in German whatever the browser says: the profile chose.
    confirm = client.get(link_to(message, "/confirm/")).get_data(as_text=True)
    assert "Anmeldung bestätigen" in confirm


def test_templates_translate_escape_and_fill_in_as_jinjas_newstyle_gettext(app: Flask) -> None:
    page = (
        '{{ _("Subscribe to %(name)s", name=name) }}|{{ gettext("Subscribe to %(name)s", name=1) }}'
        '|{{ ngettext("%(num)s day", "%(num)s days", 2) }}|{{ _("100%%") }}'
    )
    with app.test_request_context(headers=GERMAN):
        app.preprocess_request()  # the language is chosen afresh for every request
        assert render_template_string(page, name="<b>") == (
            "&lt;b&gt; abonnieren|1 abonnieren|2 days|100%"
        )
        # Without the page's context (a template rendered on its own, a macro imported without
        # context), the translations are looked up as Flask-Babel does.
        bare = app.jinja_env.from_string('{{ _("Subscribe to %(name)s", name="<i>") }}')
        assert bare.render() == "&lt;i&gt; abonnieren"
    with app.test_request_context():
        app.preprocess_request()
        assert render_template_string(page, name="<b>") == (
            "Subscribe to &lt;b&gt;|Subscribe to 1|2 days|100%"
        )


def test_a_bare_template_follows_every_change_of_language_within_a_request(app: Flask) -> None:
    """A template without the page's context (an email, a macro imported without it) keeps
    the first lookup of the translations for the rest of the request; a forced language (an
    email's), the profile's language and the next request must each still be obeyed."""
    bare = app.jinja_env.from_string('{{ _("Subscribe to %(name)s", name="X") }}')
    with app.test_request_context(headers=GERMAN):
        app.preprocess_request()
        assert bare.render() == "X abonnieren"
        assert bare.render() == "X abonnieren"  # the remembered translations
        with force_locale("en"):
            assert bare.render() == "Subscribe to X"
        assert bare.render() == "X abonnieren"  # the page's language again after the email
        use_locale("en")  # the profile's language
        assert bare.render() == "Subscribe to X"
        with force_locale("de"):
            assert bare.render() == "X abonnieren"
        assert bare.render() == "Subscribe to X"
    with app.test_request_context():
        app.preprocess_request()
        assert bare.render() == "Subscribe to X"


def test_the_preference_page_speaks_the_chosen_language(
    client: FlaskClient, newsletter: Resource
) -> None:
    factories.signup("anna@example.com", "newsletter")
    factories.confirm("anna@example.com", "newsletter")
    profile = queries.profile_by_email("anna@example.com")
    assert profile is not None
    path = links_for(profile.id, profile.link_key, None).preferences_url.removeprefix(
        "https://optin.test"
    )
    page = client.get(path).get_data(as_text=True)
    assert "Your preferences" in page
    token = CSRF.search(page).group(1)  # type: ignore[union-attr]
    saved = client.post(
        path, data={"csrf_token": token, "resources": ["newsletter"], "locale": "de"}
    ).get_data(as_text=True)
    assert "Ihre Einstellungen sind gespeichert." in saved
    assert "Ihre Einstellungen" in client.get(path).get_data(as_text=True)


def test_every_text_has_a_german_translation_and_the_compiled_catalog_is_current(
    tmp_path: Path,
) -> None:
    template = tmp_path / "messages.pot"
    subprocess.run(
        [
            sys.executable, "-m", "babel.messages.frontend", "--quiet", "extract",
            "-F", "babel.cfg", "-k", "_l", "-k", "lazy_gettext",
            "--ignore-dirs", ".venv bench", "-o", str(template), ".",
        ],
        cwd=ROOT,
        check=True,
    )  # fmt: skip
    with template.open("rb") as file:
        wanted = {m.id for m in read_po(file) if m.id}
    po_path = ROOT / "translations/de/LC_MESSAGES/messages.po"
    with po_path.open("rb") as file:
        german = {m.id: m.string for m in read_po(file) if m.id}
    untranslated = sorted(str(i) for i in wanted if not german.get(i))
    assert untranslated == [], "run the commands in README 'Translations'"
    with (po_path.with_suffix(".mo")).open("rb") as file:
        compiled = {m.id: m.string for m in read_mo(file) if m.id}
    assert compiled == german, "messages.mo is older than messages.po: pybabel compile"
