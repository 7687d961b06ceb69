"""The public forms' pages as a visitor first sees them, rendered once per process and reused.

An empty signup form, the "email me a link" form and a confirmation link's page are the same for
every visitor of a resource in one language, but for the form's CSRF token. Rendering them was
about half of such a GET's CPU, and a customer action starts with one of them. So the page is
rendered once with a stand-in where the token goes, and each request gets a copy with its own
token.

The pages are kept with the process's catalogue (app/queries/catalogue.py): an admin's edit of a
resource or a consent text drops the catalogue and the pages with it, at once in the process that
made it and within ``CATALOGUE_CACHE_SECONDS`` in the others, exactly as for everything else the
public pages read from the catalogue. A page is kept only when its key names all that it shows
besides the catalogue's content: the template, the language, the mount point and the caller's key
(the resource, or the resources a link confirms). A form that holds data or errors is always
rendered afresh.
"""

from __future__ import annotations

import secrets
from collections.abc import Hashable
from typing import Any

from flask import render_template, request
from flask_babel import get_locale
from flask_wtf import FlaskForm
from markupsafe import escape

from app.queries.catalogue import catalogue

# Where the CSRF token goes in a kept page: random for each process, so no content can contain it.
_TOKEN_SLOT = "csrf-token-slot-" + secrets.token_hex(16)
# Keys are resources and languages (and, for a confirmation page, a set of resources asked for
# together), so a few hundred cover any real catalogue; past that, pages are rendered each time.
MAX_PAGES = 512


def empty_form_page(template: str, key: Hashable, form: FlaskForm, **context: Any) -> str:
    """``render_template(template, form=form, **context)`` for a form shown empty (a GET): from
    the pages kept for ``key``, with this request's CSRF token."""
    held = catalogue()
    if held is None or form.is_submitted() or form.errors:
        return render_template(template, form=form, **context)
    token = form.csrf_token.current_token
    page_key = (template, key, str(get_locale()), request.script_root)
    page = held.pages.get(page_key)
    if page is None:
        form.csrf_token.current_token = _TOKEN_SLOT
        try:
            page = render_template(template, form=form, **context)
        finally:
            form.csrf_token.current_token = token
        if page.count(_TOKEN_SLOT) != 1:  # a template that shows its token twice, or never
            return page.replace(_TOKEN_SLOT, str(escape(token)))
        if len(held.pages) < MAX_PAGES:
            held.pages[page_key] = page
    return page.replace(_TOKEN_SLOT, str(escape(token)))
