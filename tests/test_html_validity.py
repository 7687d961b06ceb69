"""Issue 12, item 3: every page optin serves is valid HTML, as the Nu HTML Checker (vnu.jar, the
W3C's validator) reads it, in English and in German, and its stylesheets are valid CSS; and every
public page describes itself to search engines and link previews in the visitor's language.

The pages are the bytes the server sends (Flask's test client), not a browser's rebuilt DOM:
a browser quietly repairs what vnu reports. One vnu run checks every page (one JVM start).
"""

from __future__ import annotations

import json
import re
import subprocess  # nosec B404: runs java with arguments of our own
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.views.admin.resources import embed_snippet
from tests.checkers import vnu_command
from tests.every_page import LANGUAGES, build_site, fetch, in_order
from tests.helpers import Clock

STYLESHEETS = Path(__file__).resolve().parent.parent / "static"
DESCRIPTION = re.compile(r'<meta name="description" content="([^"]+)">')
# A page of another site that pastes the embed snippet from the admin's resource page.
HOST_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>A site that embeds the signup form</title></head>
<body>
{snippet}
</body>
</html>
"""


def render_every_page(admin_client: FlaskClient, clock: Clock) -> dict[str, str]:
    """Every page in every language, by ``language-name``: the HTML the server answered.

    One client, logged in, opens the public pages too (they show nothing of a login): the test's
    app context outlives each request, so Flask-WTF's CSRF token, kept on ``g``, would belong
    to whichever client asked first."""
    sites = {language: build_site(clock, language) for language in LANGUAGES}
    pages: dict[str, str] = {}
    for language, visit in in_order(sites):
        admin_client.environ_base["HTTP_ACCEPT_LANGUAGE"] = LANGUAGES[language]
        pages[f"{language}-{visit.name}"] = fetch(admin_client, visit).get_data(as_text=True)
    return pages


def vnu_errors(files: list[Path], *options: str) -> list[str]:
    """The errors vnu finds in ``files``, each as ``file:line:column: message``."""
    run = subprocess.run(  # nosec B603
        [*vnu_command(), *options, "--format", "json", "--exit-zero-always"]
        + [str(file) for file in files],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = json.loads(run.stderr)
    return [
        f"{Path(message.get('url', '?')).name}:{message.get('lastLine', '?')}:"
        f"{message.get('firstColumn', '?')}: {message['message']} "
        f"[{' '.join(message.get('extract', '').split())[:80]}]"
        for message in report["messages"]
        if message["type"] in ("error", "non-document-error")
    ]


@pytest.mark.slow
def test_every_page_passes_the_nu_html_checker(
    app: Flask, admin_client: FlaskClient, clock: Clock, tmp_path: Path
) -> None:
    vnu_command()  # skips (or fails under REQUIRE_CHECKERS) before any work without vnu
    pages = render_every_page(admin_client, clock)
    from app import queries

    newsletter = queries.resource_by_slug("newsletter")
    assert newsletter is not None
    with app.test_request_context():
        pages["embed-snippet"] = HOST_PAGE.format(snippet=embed_snippet(newsletter))
    files = []
    for name, html in pages.items():
        files.append(tmp_path / f"{name}.html")
        files[-1].write_text(html, encoding="utf-8")
    assert len(files) > 60  # every page, twice

    errors = vnu_errors(files)

    assert errors == [], "vnu finds errors:\n" + "\n".join(errors)


@pytest.mark.slow
def test_the_stylesheets_pass_the_css_checker() -> None:
    """Apart from the pages: vnu's --also-check-css shifts the line numbers it gives for HTML."""
    stylesheets = sorted(STYLESHEETS.glob("*.css"))
    assert len(stylesheets) >= 2
    errors = vnu_errors(stylesheets, "--css")
    assert errors == [], "vnu finds errors:\n" + "\n".join(errors)


@pytest.mark.slow
def test_the_checker_reports_an_error_with_its_page_and_line(tmp_path: Path) -> None:
    """The test above can fail: a page with a duplicate id is reported by name and line."""
    vnu_command()
    bad = tmp_path / "en-broken.html"
    bad.write_text(
        '<!doctype html><html lang="en"><head><title>x</title></head>\n'
        '<body><p id="a">one</p>\n<p id="a">two</p></body></html>\n',
        encoding="utf-8",
    )
    (error,) = vnu_errors([bad])
    assert error.startswith("en-broken.html:3:1: Duplicate ID “a”."), error


def test_every_public_page_has_a_description_in_the_visitors_language(
    admin_client: FlaskClient, clock: Clock
) -> None:
    pages = render_every_page(admin_client, clock)
    public = {name: html for name, html in pages.items() if "-admin-" not in name}
    described = {name: DESCRIPTION.findall(html) for name, html in public.items()}
    assert [name for name, found in described.items() if len(found) != 1] == []
    for name, (english,) in described.items():
        if name.startswith("en-"):
            (german,) = described["de-" + name.removeprefix("en-")]
            assert german != english, name
