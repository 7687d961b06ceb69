"""Resources in the admin view: the list (``/admin/resources``), a new one
(``/admin/resources/new``) and a resource's page (``/admin/resources/<id>``) with its edit form,
its consent text versions and the HTML snippet that embeds its signup form on another site."""

from __future__ import annotations

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from markupsafe import escape

from app import queries
from app.admin_forms import ResourceForm
from app.models import Resource
from app.services.errors import InvalidInput, NotFound
from app.services.resources import create_resource, update_resource
from app.services.subscriptions import consent_text_for
from app.views.admin import admin


@admin.get("/resources")
def resources() -> ResponseReturnValue:
    """Every resource, with a link to edit it."""
    return render_template("admin/resources.html", resources=queries.all_resources())


@admin.route("/resources/new", methods=["GET", "POST"])
def new_resource() -> ResponseReturnValue:
    """Create a resource; its first consent text is the one typed in, or the default one."""
    form = ResourceForm()
    if form.validate_on_submit():
        try:
            resource = create_resource(
                form.slug.data or "",
                form.name.data or "",
                channels=form.channels.data or [],
                public=form.public.data,
                double_opt_in=form.double_opt_in.data,
                description=(form.description.data or "").strip(),
                thank_you_url=form.thank_you_url.data,
                consent_text=form.consent_text.data,
            )
        except InvalidInput as error:
            form.form_errors.append(f"{error}.")
        else:
            flash(f"Created {resource.slug}.", "notice")
            return redirect(url_for("admin.edit_resource", resource_id=resource.id), code=303)
    status = 400 if request.method == "POST" else 200
    return render_template("admin/resource_form.html", form=form, resource=None), status


@admin.route("/resources/<int:resource_id>", methods=["GET", "POST"])
def edit_resource(resource_id: int) -> ResponseReturnValue:
    """Edit a resource; see its consent text versions and its embed snippet."""
    resource = queries.resource_by_id(resource_id)
    if resource is None:
        abort(404)
    form = ResourceForm(obj=resource if request.method == "GET" else None)
    if request.method == "GET":
        form.channels.data = resource.channels.split(",")
        form.consent_text.data = consent_text_for(resource)
    if form.validate_on_submit():
        try:
            update_resource(
                resource.id,
                name=form.name.data or "",
                description=form.description.data or "",
                channels=form.channels.data or [],
                public=form.public.data,
                double_opt_in=form.double_opt_in.data,
                thank_you_url=form.thank_you_url.data,
                consent_text=form.consent_text.data or "",
            )
        except NotFound:
            abort(404)
        except InvalidInput as error:
            form.form_errors.append(f"{error}.")
        else:
            flash(f"Saved {resource.slug}.", "notice")
            return redirect(url_for("admin.edit_resource", resource_id=resource.id), code=303)
    status = 400 if request.method == "POST" else 200
    return render_resource(resource, form, status)


EMBED_SNIPPET = """<form method="post" action="{action}">
  <label for="optin-email">Email address</label>
  <input type="email" id="optin-email" name="email" required autocomplete="email">
  <label for="optin-name">Name (optional)</label>
  <input type="text" id="optin-name" name="name" autocomplete="name">
  <div style="position:absolute;left:-10000px" aria-hidden="true">
    <label for="optin-website">Leave this field empty</label>
    <input type="text" id="optin-website" name="website" tabindex="-1" autocomplete="off">
  </div>
  <p>{consent}</p>
  <button type="submit">Subscribe</button>
</form>"""


def embed_snippet(resource: Resource) -> str:
    """The HTML another site pastes to host this resource's signup form. It posts the public
    signup form's fields (``email``, ``name`` and the ``website`` honeypot) to the CSRF-exempt
    embed endpoint; the consent text is escaped as HTML, since the snippet is HTML."""
    action = current_app.config["BASE_URL"].rstrip("/") + url_for(
        "public.subscribe_embedded", slug=resource.slug
    )
    return EMBED_SNIPPET.format(action=escape(action), consent=escape(consent_text_for(resource)))


def render_resource(resource: Resource, form: ResourceForm, status: int) -> ResponseReturnValue:
    """A resource's page: its form (with any errors), snippet and consent text versions."""
    trusted = {host.lower() for host in current_app.config["TRUSTED_REDIRECT_HOSTS"]}
    page = render_template(
        "admin/resource_form.html",
        form=form,
        resource=resource,
        versions=queries.consent_texts_of_resource(resource.id),
        embed_snippet=embed_snippet(resource),
        trusted_hosts=sorted(trusted),
    )
    return page, status
