"""Webhook endpoints in the admin view (``/admin/webhooks``): the list and a new endpoint (its
secret shown on the answer to its creation and never again), and an endpoint's page
(``/admin/webhooks/<id>``) with its edit form, pause or resume, "send a test event", delete,
and its delivery log."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from app import queries
from app.admin_forms import ButtonForm, PauseForm, WebhookEndpointForm
from app.models import WebhookEndpoint
from app.services.errors import InvalidInput, NotFound
from app.services.webhooks import endpoints
from app.views.admin import admin


def _form(endpoint: WebhookEndpoint | None = None) -> WebhookEndpointForm:
    """The endpoint form with this app's resources to choose from; filled from ``endpoint``
    on a GET, from the request on a POST."""
    resources = queries.all_resources()
    if endpoint is None or request.method == "POST":
        form = WebhookEndpointForm()
    else:
        slugs = {r.id: r.slug for r in resources}
        form = WebhookEndpointForm(
            formdata=None,
            url=endpoint.url,
            all_events=endpoint.event_types is None,
            event_types=endpoint.event_types or [],
            all_resources=endpoint.resource_ids is None,
            resources=[slugs[i] for i in endpoint.resource_ids or [] if i in slugs],
        )
    return form.resource_choices([r.slug for r in resources])


def _names(endpoint: WebhookEndpoint) -> str:
    if endpoint.resource_ids is None:
        return "all"
    slugs = {r.id: r.slug for r in queries.all_resources()}
    return ", ".join(slugs.get(i, f"#{i}") for i in endpoint.resource_ids)


def render_list(
    form: WebhookEndpointForm | None = None, *, secret: str | None = None, status: int = 200
) -> ResponseReturnValue:
    """The endpoints' page; with ``secret``, the answer to a creation, the one time it shows."""
    rows = queries.webhook_endpoints()
    page = render_template(
        "admin/webhooks.html",
        endpoints=[(row, _names(row)) for row in rows],
        form=form or _form(),
        secret=secret,
    )
    return page, status, {"Cache-Control": "no-store"}


@admin.get("/webhooks", endpoint="webhooks")
def webhooks_page() -> ResponseReturnValue:
    """Every endpoint, enabled or paused (with why), and the form to add one."""
    return render_list()


@admin.post("/webhooks")
def create_webhook() -> ResponseReturnValue:
    """Add an endpoint and show its secret this once (no redirect: the secret must not wait in
    a session)."""
    form = _form()
    if form.validate():
        types, slugs = form.chosen()
        try:
            endpoint, secret = endpoints.create_endpoint(
                form.url.data or "", endpoints.Choice(types, slugs)
            )
        except (InvalidInput, NotFound) as error:
            form.form_errors.append(f"{error}.")
        else:
            flash(
                f"Added endpoint {endpoint.id}. Copy its secret now: it is not shown again.",
                "notice",
            )
            return render_list(secret=secret, status=201)
    return render_list(form, status=400)


def _endpoint_or_404(endpoint_id: int) -> WebhookEndpoint:
    endpoint = queries.webhook_endpoint(endpoint_id)
    if endpoint is None:
        abort(404)
    return endpoint


def render_endpoint(
    endpoint: WebhookEndpoint, form: WebhookEndpointForm | None = None, status: int = 200
) -> ResponseReturnValue:
    page = render_template(
        "admin/webhooks_endpoint.html",
        endpoint=endpoint,
        resources=_names(endpoint),
        form=form or _form(endpoint),
        pause=PauseForm(formdata=None),
        button=ButtonForm(formdata=None),
        deliveries=queries.webhook_deliveries_of(endpoint.id),
    )
    return page, status


@admin.get("/webhooks/<int:endpoint_id>")
def webhook(endpoint_id: int) -> ResponseReturnValue:
    """An endpoint: its settings, its state, and its newest deliveries."""
    return render_endpoint(_endpoint_or_404(endpoint_id))


@admin.post("/webhooks/<int:endpoint_id>")
def edit_webhook(endpoint_id: int) -> ResponseReturnValue:
    """Change an endpoint's URL, event types or resources; its secret and queue stay."""
    endpoint = _endpoint_or_404(endpoint_id)
    form = _form(endpoint)
    if form.validate():
        types, slugs = form.chosen()
        try:
            endpoints.update_endpoint(
                endpoint_id, form.url.data or "", endpoints.Choice(types, slugs)
            )
        except (InvalidInput, NotFound) as error:
            form.form_errors.append(f"{error}.")
        else:
            flash("Saved.", "notice")
            return redirect(url_for("admin.webhook", endpoint_id=endpoint_id), code=303)
    return render_endpoint(endpoint, form, status=400)


def _act(endpoint_id: int, done: str) -> ResponseReturnValue:
    flash(done, "notice")
    return redirect(url_for("admin.webhook", endpoint_id=endpoint_id), code=303)


@admin.post("/webhooks/<int:endpoint_id>/pause")
def pause_webhook(endpoint_id: int) -> ResponseReturnValue:
    """Stop sending to an endpoint; its pending deliveries wait for the resume."""
    form = PauseForm()
    if not form.validate():
        abort(400)
    try:
        endpoints.pause_endpoint(endpoint_id, form.reason.data or "")
    except NotFound:
        abort(404)
    return _act(endpoint_id, "Paused.")


@admin.post("/webhooks/<int:endpoint_id>/resume")
def resume_webhook(endpoint_id: int) -> ResponseReturnValue:
    """Send to it again, its waiting and failed deliveries first."""
    if not ButtonForm().validate():
        abort(400)
    try:
        endpoints.resume_endpoint(endpoint_id)
    except NotFound:
        abort(404)
    return _act(endpoint_id, "Resumed.")


@admin.post("/webhooks/<int:endpoint_id>/test")
def test_webhook(endpoint_id: int) -> ResponseReturnValue:
    """Queue a ``webhook.test`` delivery; the log below shows how the endpoint answered."""
    if not ButtonForm().validate():
        abort(400)
    try:
        endpoints.send_test(endpoint_id)
    except NotFound:
        abort(404)
    return _act(endpoint_id, "Queued a test event.")


@admin.post("/webhooks/<int:endpoint_id>/delete")
def delete_webhook(endpoint_id: int) -> ResponseReturnValue:
    """Remove an endpoint and its delivery log."""
    if not ButtonForm().validate():
        abort(400)
    try:
        endpoints.delete_endpoint(endpoint_id)
    except NotFound:
        abort(404)
    flash(f"Removed endpoint {endpoint_id}.", "notice")
    return redirect(url_for("admin.webhooks"), code=303)
