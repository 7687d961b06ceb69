"""The public pages that customer actions show, rendered once per process and reused.

Most public pages are the same for every visitor of a resource in one language but for a value
or two: an empty signup form but for its CSRF token, "check your inbox" but for the address, "you
are unsubscribed" but for the preference link. Rendering such a page was about half of a GET's
CPU and a fifth of a POST's, and every customer action shows two of them. So a page is rendered
once with a stand-in for each such value, and each request gets a copy with its own values,
escaped as the template would have escaped them.

The pages are kept with the process's catalogue (app/queries/catalogue.py): an admin's edit of a
resource or a consent text drops the catalogue and the pages with it, at once in the process that
made it and within ``CATALOGUE_CACHE_SECONDS`` in the others, exactly as for everything else the
public pages read from the catalogue. A page is kept only when its key names all that it shows
besides the catalogue's content and the per-visitor values: the template, the language, the mount
point and the caller's key (the resource, the resources a link confirms). A form that holds data
or errors, a missing value, or a template that changes a value before showing it (a stand-in that
does not come out as it went in) is rendered afresh every time.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any

from flask import render_template, request
from flask_babel import get_locale
from flask_wtf import FlaskForm
from flask_wtf.csrf import generate_csrf
from markupsafe import escape

from app.queries.catalogue import catalogue
from app.stand_ins import StandIns

_STAND_INS = StandIns("page")
_CSRF = "csrf"  # the stand-in of the form's CSRF token
# Keys are resources and languages (and, for a confirmation page, a set of resources asked for
# together), so a few hundred cover any real catalogue; past that, pages are rendered each time.
MAX_PAGES = 512


def kept_page(
    template: str,
    key: Hashable,
    *,
    form: FlaskForm | Callable[[], FlaskForm] | None = None,
    per_visitor: Mapping[str, str | None] | None = None,
    **context: Any,
) -> str:
    """``render_template(template, form=form, **per_visitor, **context)``, from the page kept
    for ``key`` with this request's ``per_visitor`` values and the form's CSRF token put in.

    ``form``: the form the page shows, or, for a page that shows an empty one (a GET), what
    makes it: it is made only if the page is rendered afresh. A kept page needs only the
    request's CSRF token, which Flask-WTF's ``generate_csrf`` signs as the form's field would,
    and making a form (binding its fields) cost more than the rest of the copy."""
    values: dict[str, Any] = dict(per_visitor or {})
    held = catalogue()
    made: FlaskForm | None = None
    if isinstance(form, FlaskForm):
        made = form
        if form.is_submitted() or form.errors:
            held = None
        values[_CSRF] = form.csrf_token.current_token
    elif form is not None:
        values[_CSRF] = generate_csrf()

    def afresh(shown: dict[str, Any]) -> str:
        shown_form = made if made is not None else (form() if form is not None else None)
        if shown_form is not None:
            context["form"] = shown_form
        return _rendered(template, shown_form, shown, context)

    if held is None or any(value is None for value in values.values()):
        return afresh(values)
    page_key = (template, key, str(get_locale()), request.script_root)
    page = held.pages.get(page_key)
    if page is None:
        stand_ins = _STAND_INS.for_names(values)
        page = afresh(stand_ins)
        if not all(stand_in in page for stand_in in stand_ins.values()):
            return afresh(values)
        if len(held.pages) < MAX_PAGES:
            held.pages[page_key] = page
    return _STAND_INS.put_in(page, {name: escape(value) for name, value in values.items()})


def _rendered(
    template: str, form: FlaskForm | None, values: dict[str, Any], context: dict[str, Any]
) -> str:
    values = dict(values)
    if form is None:
        return render_template(template, **values, **context)
    token = form.csrf_token.current_token
    form.csrf_token.current_token = values.pop(_CSRF)
    try:
        return render_template(template, **values, **context)
    finally:
        form.csrf_token.current_token = token
