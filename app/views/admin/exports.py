"""The admin's CSV exports (``/admin/exports``): a resource's audience, or a filtered list of
profiles, streamed to the browser as a download in constant memory."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time

from flask import Response, render_template, stream_with_context
from flask.typing import ResponseReturnValue
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]  # WTForms 3.3's; types-WTForms 3.2 lacks it

from app import queries
from app.admin_forms import AudienceExportForm, ProfilesExportForm
from app.database import utcnow
from app.services import exports
from app.services.errors import InvalidInput, NotFound
from app.services.statuses import parse_channel, resource_for
from app.views.admin import admin


def _forms() -> tuple[AudienceExportForm, ProfilesExportForm]:
    audience, profiles = (
        AudienceExportForm(prefix="audience"),
        ProfilesExportForm(prefix="profiles"),
    )
    resources = [SelectChoice(r.slug, f"{r.name} ({r.slug})") for r in queries.all_resources()]
    # A required select starts with an empty choice (HTML): no resource is exported unasked.
    audience.resource.choices = [SelectChoice("", "choose a resource"), *resources]
    profiles.resource.choices = [SelectChoice("", "any (one line a profile)"), *resources]
    return audience, profiles


def _page(
    audience: AudienceExportForm, profiles: ProfilesExportForm, status: int
) -> ResponseReturnValue:
    return render_template("admin/exports.html", audience=audience, profiles=profiles), status


def _download(blocks: Iterator[str], name: str) -> Response:
    stamp = utcnow().strftime("%Y%m%d-%H%M")
    return Response(
        stream_with_context(blocks),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}-{stamp}.csv"'},
    )


def _start(day: date | None) -> datetime | None:
    return datetime.combine(day, time.min, tzinfo=UTC) if day is not None else None


@admin.get("/exports", endpoint="exports")
def exports_page() -> ResponseReturnValue:
    """The two export forms."""
    return _page(*_forms(), 200)


@admin.post("/exports/audience")
def export_audience() -> ResponseReturnValue:
    """Everyone who may be sent a resource on a channel, with their links, as CSV."""
    audience, profiles = _forms()
    if not audience.validate_on_submit():
        return _page(audience, profiles, 400)
    try:
        resource = resource_for(audience.resource.data, parse_channel(audience.channel.data))
    except (InvalidInput, NotFound) as error:
        audience.channel.errors = [str(error)]
        return _page(audience, profiles, 400)
    blocks = exports.audience_csv(resource.id, audience.channel.data, utcnow(), safe=True)
    return _download(blocks, f"audience-{resource.slug}-{audience.channel.data}")


@admin.post("/exports/profiles")
def export_profiles() -> ResponseReturnValue:
    """Profiles by global status, resource and subscription status, and creation date, as CSV."""
    audience, profiles = _forms()
    if not profiles.validate_on_submit():
        return _page(audience, profiles, 400)
    resource = queries.resource_by_slug(profiles.resource.data) if profiles.resource.data else None
    if profiles.subscription_status.data and resource is None:
        profiles.subscription_status.errors = ["Choose the resource whose subscriptions to filter."]
        return _page(audience, profiles, 400)
    filters = exports.ProfileFilter(
        global_status=profiles.global_status.data or None,
        resource_id=resource.id if resource else None,
        subscription_status=profiles.subscription_status.data or None,
        created_from=_start(profiles.created_from.data),
        created_before=_start(profiles.created_before.data),
    )
    return _download(exports.profiles_csv(filters), "profiles")
