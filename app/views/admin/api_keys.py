"""API keys in the admin view (``/admin/api-keys``): the list, a new key (shown on the answer
to its creation and never again: only its hash is stored), and revoking one."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue

from app import queries
from app.admin_forms import ApiKeyForm, ButtonForm
from app.services import api_keys
from app.services.errors import InvalidInput, NotFound
from app.views.admin import admin


def render_keys(
    form: ApiKeyForm | None = None, *, new_key: str | None = None, status: int = 200
) -> ResponseReturnValue:
    """The keys' page; with ``new_key``, the answer to its creation, the one time it is shown."""
    page = render_template(
        "admin/api_keys.html",
        keys=api_keys.all_keys(),
        form=form or ApiKeyForm(formdata=None),
        button=ButtonForm(formdata=None),
        new_key=new_key,
    )
    # The page that shows a new key must not stay in a cache or the history.
    return page, status, {"Cache-Control": "no-store"}


@admin.get("/api-keys", endpoint="api_keys")
def api_keys_page() -> ResponseReturnValue:
    """Every key, live or revoked, with when it was last used."""
    return render_keys()


@admin.post("/api-keys")
def create_api_key() -> ResponseReturnValue:
    """Create a key and show it this once (no redirect: the key must not wait in a session)."""
    form = ApiKeyForm()
    if form.validate():
        try:
            row, key = api_keys.create_key(form.name.data or "")
        except InvalidInput as error:
            form.name.errors = [f"{error}."]
        else:
            flash(f"Created the key {row.name}. Copy it now: it is not shown again.", "notice")
            return render_keys(new_key=key, status=201)
    return render_keys(form, status=400)


@admin.post("/api-keys/<int:key_id>/revoke")
def revoke_api_key(key_id: int) -> ResponseReturnValue:
    """Stop a key from working; it stays listed, as the actor of what it changed."""
    if not ButtonForm().validate():
        abort(400)
    row = queries.api_key_by_id(key_id)
    if row is None:
        abort(404)
    try:
        api_keys.revoke_key(row.name)
    except NotFound:
        abort(404)
    flash(f"Revoked the key {row.name}.", "notice")
    return redirect(url_for("admin.api_keys"), code=303)
