"""Profiles in the admin view: the list, newest first, with its filters and search box
(``/admin/profiles``), a profile's page with its subscriptions, consent proof and whole history
(``/admin/profiles/<id>``), and the forms that change its global status or a subscription's status
(POST, then back to the page)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]  # WTForms 3.3's; types-WTForms 3.2 lacks it

from app import queries
from app.addresses import email_hash
from app.admin_forms import ANY, ProfileListForm, StatusForm, aware_utc
from app.database import utcnow
from app.models import Profile
from app.services.admin_actions import change_status
from app.services.errors import InvalidInput, NotFound, RuleError
from app.services.profiles import history_of
from app.status import State, Status, admin_targets, effective
from app.views.admin import admin, admin_actor, search_term

# The list's fields that its page links carry on: the search term and every filter.
FILTER_FIELDS = ("q", "global_status", "resource", "subscription_status", "since")


@admin.get("/profiles")
def profiles() -> ResponseReturnValue:
    """The profiles, newest first, narrowed by the filters; with a search term, those whose
    email or name starts with it. A page at a time, the next one starting after the last row
    of this one: its id in the list, its (matched text, id) in a search."""
    resources = queries.all_resources()
    form = ProfileListForm(formdata=request.args)
    form.resource.choices = [
        ANY,
        *(SelectChoice(r.slug, f"{r.name} ({r.slug})") for r in resources),
    ]
    if not form.validate():
        return _list_page(form, [], None, first_page=True), 400
    filters = form.filters({r.slug: r.id for r in resources}, utcnow())
    term = form.q.data or ""
    after_id = _page_position()
    size = queries.SEARCH_PAGE_SIZE
    if not term:
        listed = queries.list_profiles(filters, before=after_id, limit=size + 1)
        more = len(listed) > size
        listed = listed[:size]
        next_page: dict[str, object] | None = {"after_id": listed[-1].id} if more else None
        return _list_page(form, listed, next_page, first_page=after_id is None)
    after_key = search_term("after")
    after = (after_key, after_id) if after_id is not None else None
    found = queries.search_profiles(term, after=after, limit=size + 1, filters=filters)
    more = len(found) > size
    found = found[:size]
    last = found[-1] if more else None
    return _list_page(
        form,
        [profile for _, profile in found],
        {"after": last[0], "after_id": last[1].id} if last else None,
        first_page=after is None,
    )


def _page_position() -> int | None:
    """The previous page's last id; a forged one beyond a 64-bit id starts at the beginning
    (the database would refuse to compare it)."""
    after_id = request.args.get("after_id", type=int)
    return after_id if after_id is not None and -(2**63) <= after_id < 2**63 else None


def _list_page(
    form: ProfileListForm,
    listed: list[Profile],
    next_page: dict[str, Any] | None,
    *,
    first_page: bool,
) -> str:
    """The profiles page; its links keep the search term and the filters as they were asked."""
    asked: dict[str, Any] = {name: form[name].data for name in FILTER_FIELDS if form[name].data}
    return render_template(
        "admin/profiles.html",
        form=form,
        term=form.q.data or "",
        filtered=any(name != "q" for name in asked),
        asked=asked,
        profiles=listed,
        next_page=url_for("admin.profiles", **asked, **next_page) if next_page else None,
        first_page=first_page,
    )


def _targets(state: State, now: datetime) -> list[str]:
    """What the status form offers for a status as it stands at ``now``."""
    current = effective(state, now)
    return [target.value for target in admin_targets(current.status if current else None)]


def render_profile(profile: Profile, *, status: int = 200) -> ResponseReturnValue:
    """The profile page; also the answer to a refused change, with its message flashed."""
    now = utcnow()
    subscriptions = queries.subscriptions_of_profile(profile.id)
    resources = {resource.id: resource for resource in queries.all_resources()}
    page = render_template(
        "admin/profile.html",
        profile=profile,
        global_targets=_targets(profile.state, now),
        subscriptions=[
            (
                s,
                resources.get(s.resource_id),
                _targets(s.state, now),
            )
            for s in subscriptions
        ],
        consent=queries.consent_proof_of_profile(profile.id),
        history=history_of(profile),
        suppression=queries.suppression_of(email_hash(profile.email)),
    )
    return page, status


def profile_or_404(profile_id: int) -> Profile:
    """The profile of a URL, or the 404 page."""
    profile = queries.profile_by_id(profile_id)
    if profile is None:
        abort(404)
    return profile


@admin.get("/profiles/<int:profile_id>")
def profile(profile_id: int) -> ResponseReturnValue:
    """A profile with its statuses, consent proof and history, and the forms to change them."""
    return render_profile(profile_or_404(profile_id))


@admin.post("/profiles/<int:profile_id>/status")
def change_global_status(profile_id: int) -> ResponseReturnValue:
    """Change the profile's global status."""
    return _change(profile_id, None)


@admin.post("/profiles/<int:profile_id>/subscriptions/<int:subscription_id>/status")
def change_subscription_status(profile_id: int, subscription_id: int) -> ResponseReturnValue:
    """Change the status of one of the profile's subscriptions."""
    return _change(profile_id, subscription_id)


def _change(profile_id: int, subscription_id: int | None) -> ResponseReturnValue:
    profile = profile_or_404(profile_id)
    form = StatusForm()
    what = "the global status" if subscription_id is None else "the subscription"
    if not form.validate():
        flash(" ".join(error for errors in form.errors.values() for error in errors), "error")
        return render_profile(profile, status=400)
    target = Status(form.status.data)
    try:
        result = change_status(
            profile.id,
            target,
            subscription_id=subscription_id,
            suspended_until=aware_utc(form.suspended_until.data),
            actor=admin_actor(form.reason.data),
        )
    except NotFound:
        abort(404)
    except (RuleError, InvalidInput) as error:
        flash(f"Not changed: {error}.", "error")
        return render_profile(profile, status=409 if isinstance(error, RuleError) else 400)
    if result.changed:
        flash(f"Changed {what} to {target.value}.", "notice")
    else:
        flash(f"Nothing changed: {what} is {target.value} already.", "notice")
    return redirect(url_for("admin.profile", profile_id=profile.id), code=303)
