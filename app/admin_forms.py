"""The admin view's forms (Flask-WTF: CSRF on each). The admin speaks English only."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any

from flask import current_app
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    DateField,
    DateTimeLocalField,
    EmailField,
    Field,
    PasswordField,
    SearchField,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    TextAreaField,
    URLField,
)
from wtforms.fields.choices import SelectChoice  # type: ignore[attr-defined]  # WTForms 3.3's; types-WTForms 3.2 lacks it
from wtforms.validators import DataRequired, InputRequired, Length, Optional, ValidationError
from wtforms.widgets import CheckboxInput, ListWidget

from app.changes import EVENT_TYPES
from app.forms import options
from app.queries import ProfileFilter
from app.security import thank_you_url_problem
from app.status import Channel, Status

STATUS_CHOICES = [SelectChoice(status.value) for status in Status]
ANY = SelectChoice("", "any")


class LoginForm(FlaskForm):
    """``/admin/login``: the fields SPEC §4 names, ``email`` and ``password``."""

    email = EmailField("Email address", validators=[InputRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[InputRequired(), Length(max=200)])
    submit = SubmitField("Log in")


class ButtonForm(FlaskForm):
    """A form that is only a button and its CSRF token: log out, revoke, lift."""

    submit = SubmitField("Go")


def strip(value: str | None) -> str | None:
    """A field filter: a reason of spaces alone is no reason."""
    return value.strip() if isinstance(value, str) else value


def aware_utc(moment: datetime | None) -> datetime | None:
    """A ``datetime-local`` input has no zone; the admin view states its times in UTC."""
    return moment.replace(tzinfo=UTC) if moment is not None else None


class StatusForm(FlaskForm):
    """A status change on the profile page, global or of one subscription. The page offers the
    statuses of ``status.admin_targets``; the service checks that again, so any status word is
    accepted here and a forged one is refused there, with the rule's own message."""

    status = SelectField("New status", choices=options([(s.value, s.value) for s in Status]))
    suspended_until = DateTimeLocalField(
        "Suspended until (UTC)", format="%Y-%m-%dT%H:%M", validators=[Optional()]
    )
    reason = StringField("Reason", validators=[Length(max=500)])
    submit = SubmitField("Change")

    def validate(self, extra_validators: Any = None) -> bool:
        """The fields, then what one field asks of another (an Optional() end time stops its
        own validators when empty, so the suspension's need of one is checked here)."""
        valid: bool = super().validate(extra_validators)
        suspending = self.status.data == Status.SUSPENDED.value
        if suspending and self.suspended_until.data is None and not self.suspended_until.errors:
            self.suspended_until.errors = ["A suspension needs an end time."]
            valid = False
        elif not suspending and self.suspended_until.data is not None:
            self.suspended_until.errors = ["Only a suspension takes an end time."]
            valid = False
        if self.status.data == Status.INVALID.value and not (self.reason.data or "").strip():
            self.reason.errors = ["Say why the address is invalid."]
            valid = False
        return valid


def reason_field(missing: str) -> StringField:
    """The required, stripped "Reason" of a suppression added or lifted by hand (kept in the
    audit trail); ``missing`` is the error shown when it is left empty."""
    return StringField(
        "Reason", filters=[strip], validators=[DataRequired(missing), Length(max=500)]
    )


class SuppressionForm(FlaskForm):
    """Add an address to the suppression list by hand."""

    email = StringField("Email address", validators=[DataRequired(), Length(max=320)])
    reason = reason_field("Say why the address is suppressed.")
    submit = SubmitField("Suppress")


class LiftForm(FlaskForm):
    """Take one address off the suppression list, saying why."""

    reason = reason_field("Say why the suppression is lifted.")
    submit = SubmitField("Lift")


class ResourceForm(FlaskForm):
    """Create or edit a resource. The slug is set once, at creation (links carry it)."""

    slug = StringField("Slug (in links; cannot change later)", validators=[Length(max=64)])
    name = StringField("Name", validators=[InputRequired(), Length(max=200)])
    description = TextAreaField("Description", validators=[Length(max=2000)])
    channels = SelectMultipleField(
        "Channels",
        choices=options([(c.value, c.value) for c in Channel]),
        default=[Channel.EMAIL.value],
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
    )
    public = BooleanField("Shown on the public pages", default=True)
    double_opt_in = BooleanField("Double opt-in (a confirmation email)", default=True)
    thank_you_url = URLField("Thank-you URL (optional)", validators=[Length(max=500)])
    consent_text = TextAreaField(
        "Consent text (a change adds a new version)", validators=[Length(max=5000)]
    )
    submit = SubmitField("Save")

    def validate_thank_you_url(self, field: Field) -> None:
        """The error beside the field, in the words of the check made again on every use."""
        url = (field.data or "").strip()
        problem = url and thank_you_url_problem(url, current_app.config["TRUSTED_REDIRECT_HOSTS"])
        if problem:
            raise ValidationError(f"{problem}.")


class ApiKeyForm(FlaskForm):
    """Create an API key for the sending platform."""

    name = StringField("Key name", validators=[InputRequired(), Length(max=100)])
    submit = SubmitField("Create key")


class WebhookEndpointForm(FlaskForm):
    """Add or edit a webhook endpoint. "All" boxes mean every type or resource, those added
    later too; unticked, the list below them is the choice. The resources' choices are set by
    the view (``resource_choices``)."""

    url = URLField("URL (https://…)", validators=[InputRequired(), Length(max=2000)])
    all_events = BooleanField("Every event type, those added later too", default=True)
    event_types = SelectMultipleField(
        "Event types",
        choices=options([(kind, kind) for kind in EVENT_TYPES]),
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
    )
    all_resources = BooleanField("Every resource, those added later too", default=True)
    resources = SelectMultipleField(
        "Resources (for subscription changes; global changes go to every endpoint)",
        choices=[],
        widget=ListWidget(prefix_label=False),
        option_widget=CheckboxInput(),
    )
    submit = SubmitField("Save")

    def resource_choices(self, slugs: list[str]) -> WebhookEndpointForm:
        self.resources.choices = options([(slug, slug) for slug in slugs])
        return self

    def chosen(self) -> tuple[list[str] | None, list[str] | None]:
        """The event types and the resource slugs chosen (None: all)."""
        types = None if self.all_events.data else list(self.event_types.data or [])
        slugs = None if self.all_resources.data else list(self.resources.data or [])
        return types, slugs


class PauseForm(FlaskForm):
    """Pause a webhook endpoint, with the reason the admin list shows."""

    reason = StringField("Reason", validators=[Length(max=500)], filters=[strip])
    submit = SubmitField("Pause")


class ImportUploadForm(FlaskForm):
    """``/admin/imports``: a CSV file and the resource for rows that name none."""

    file = FileField("CSV file", validators=[FileRequired("Choose a CSV file.")])
    resource = SelectField("Resource for rows without a resource column", choices=[])
    submit = SubmitField("Upload and preview")


class AudienceExportForm(FlaskForm):
    """``/admin/exports``: everyone who may be sent one resource on one channel."""

    resource = SelectField("Resource", choices=[], validators=[InputRequired()])
    channel = SelectField("Channel", choices=[SelectChoice(c.value) for c in Channel])
    submit = SubmitField("Export the audience")


class ProfilesExportForm(FlaskForm):
    """``/admin/exports``: profiles filtered by status, resource and creation date."""

    global_status = SelectField("Global status", choices=[ANY, *STATUS_CHOICES])
    resource = SelectField("Subscribed to resource", choices=[])
    subscription_status = SelectField("Subscription status", choices=[ANY, *STATUS_CHOICES])
    created_from = DateField("Created on or after", validators=[Optional()])
    created_before = DateField("Created before", validators=[Optional()])
    submit = SubmitField("Export the profiles")


# The "created" choices of the profiles page: how far back each reaches from ``now``.
SINCE: dict[str, Callable[[datetime], datetime]] = {
    "today": lambda now: datetime.combine(now.date(), time.min, tzinfo=UTC),
    "7d": lambda now: now - timedelta(days=7),
    "30d": lambda now: now - timedelta(days=30),
}


def search_text(value: str | None) -> str:
    """A search box's text as the queries take it: trimmed, at most 320 characters (the longest
    address), as ``views.admin.search_term`` does."""
    return (value or "").strip()[:320]


class ProfileListForm(FlaskForm):
    """``/admin/profiles``: the search box and the list's filters, a GET form (it changes
    nothing, so it has no CSRF token). A value no choice offers is a form error (400)."""

    class Meta:
        csrf = False

    # A filter left out of the query string is "any" (the default), not a missing choice.
    q = SearchField("Email address or name starts with", filters=[search_text])
    global_status = SelectField("Global status", choices=[ANY, *STATUS_CHOICES], default="")
    resource = SelectField("Resource", choices=[], default="")
    subscription_status = SelectField(
        "Subscription status to the resource", choices=[ANY, *STATUS_CHOICES], default=""
    )
    since = SelectField(
        "Created",
        choices=options(
            [
                ("", "any time"),
                ("today", "today (UTC)"),
                ("7d", "in the last 7 days"),
                ("30d", "in the last 30 days"),
            ]
        ),
        default="",
    )

    def validate_subscription_status(self, field: Field) -> None:
        """Whose subscription: the status is of the chosen resource's subscriptions."""
        if field.data and not self.resource.data:
            raise ValidationError("Choose the resource whose subscription status to show.")

    def filters(self, resource_ids: dict[str, int], now: datetime) -> ProfileFilter:
        """The valid form's filters for the queries; ``resource_ids`` maps the offered slugs."""
        since = SINCE.get(self.since.data or "")
        return ProfileFilter(
            global_status=Status(self.global_status.data) if self.global_status.data else None,
            resource_id=resource_ids.get(self.resource.data or ""),
            subscription_status=(
                Status(self.subscription_status.data) if self.subscription_status.data else None
            ),
            since=since(now) if since else None,
        )
