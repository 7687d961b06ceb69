"""The suppression list in the admin view (``/admin/suppressions``): search it by the start of
an address, add an address by hand, lift one. Each hand-made change is kept with its reason."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from app import queries
from app.addresses import InvalidEmail
from app.admin_forms import LiftForm, SuppressionForm
from app.services.admin_actions import lift_suppression, suppress_address
from app.services.errors import InvalidInput, NotFound, RuleError
from app.views.admin import admin, admin_actor, search_term


def render_suppressions(
    form: SuppressionForm | None = None, status: int = 200
) -> ResponseReturnValue:
    """The list's page (a search, a page of it), with the add form and its errors if any."""
    term = search_term("q")
    page = max(request.args.get("page", 1, type=int), 1)
    # A page past a few thousand rows is a search away; the offset stays small.
    page = min(page, 100)
    size = queries.SEARCH_PAGE_SIZE
    rows = queries.search_suppressions(term, offset=(page - 1) * size, limit=size + 1)
    return render_template(
        "admin/suppressions.html",
        term=term,
        rows=rows[:size],
        page=page,
        more=len(rows) > size and page < 100,
        total=queries.suppression_count(),
        form=form or SuppressionForm(formdata=None),
        lift_form=LiftForm(formdata=None),
        recent=queries.recent_suppression_events(),
    ), status


@admin.get("/suppressions")
def suppressions() -> ResponseReturnValue:
    """The list, newest first, or the addresses that start with what was searched."""
    return render_suppressions()


@admin.post("/suppressions")
def add_suppression() -> ResponseReturnValue:
    """Put an address on the list by hand."""
    form = SuppressionForm()
    if form.validate():
        try:
            suppress_address(form.email.data or "", actor=admin_actor(form.reason.data))
        except InvalidEmail:
            form.email.errors = ["Enter an email address like name@example.com."]
        except InvalidInput as error:
            form.email.errors = [f"{error}."]
        else:
            flash(f"Suppressed {(form.email.data or '').strip()}.", "notice")
            return redirect(url_for("admin.suppressions"), code=303)
    return render_suppressions(form, 400)


@admin.post("/suppressions/<email_hash>/lift")
def lift(email_hash: str) -> ResponseReturnValue:
    """Take one address off the list, saying why."""
    form = LiftForm()
    if not form.validate():
        flash(" ".join(error for errors in form.errors.values() for error in errors), "error")
        return render_suppressions(status=400)
    try:
        address = lift_suppression(email_hash, actor=admin_actor(form.reason.data))
    except NotFound:
        abort(404)
    except (RuleError, InvalidInput) as error:
        flash(f"Not lifted: {error}.", "error")
        return render_suppressions(status=409 if isinstance(error, RuleError) else 400)
    flash(f"Lifted the suppression of {address}.", "notice")
    return redirect(url_for("admin.suppressions"), code=303)
