"""The public forms (Flask-WTF: CSRF on each, labels and clear error messages)."""

from __future__ import annotations

from typing import Any

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    RadioField,
    SelectChoice,
    SelectField,
    SelectMultipleField,
    StringField,
    SubmitField,
    ValidationError,
    widgets,
)
from wtforms.validators import InputRequired, Length, Optional

from app.addresses import InvalidEmail, normalize_email
from app.services.subscriptions import PAUSE_DAYS


def options(pairs: list[tuple[str, str]]) -> list[SelectChoice]:
    """Choices for a select, radio or checkbox field, from (value, label) pairs."""
    return [SelectChoice(value, label) for value, label in pairs]


LANGUAGES = options([("", "Not set"), ("en", "English"), ("de", "Deutsch"), ("fr", "Français")])


def valid_address(_form: Any, field: Any) -> None:
    try:
        field.data = normalize_email(field.data or "")
    except InvalidEmail:
        raise ValidationError("Enter an email address like name@example.com.") from None


def one_line(_form: Any, field: Any) -> None:
    if field.data and any(ch in field.data for ch in "\r\n\0"):
        raise ValidationError("Use a single line.")


class CheckboxesField(SelectMultipleField):
    """Several choices shown as checkboxes."""

    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class SignupForm(FlaskForm):
    email = EmailField(
        "Email address",
        validators=[InputRequired("Enter your email address."), Length(max=254), valid_address],
        render_kw={"autocomplete": "email"},
    )
    name = StringField(
        "Name (optional)",
        validators=[Optional(), Length(max=200), one_line],
        render_kw={"autocomplete": "name"},
    )
    # The honeypot: hidden from people, filled in by form-spamming robots.
    website = StringField(
        "Leave this field empty", render_kw={"autocomplete": "off", "tabindex": "-1"}
    )
    submit = SubmitField("Subscribe")


class SignupAllForm(SignupForm):
    resources = CheckboxesField(
        "Choose what you want to receive",
        validators=[InputRequired("Choose at least one.")],
        choices=[],
    )


class ButtonForm(FlaskForm):
    """A form that is only a button (and its CSRF token): confirm, resend."""

    submit = SubmitField("Continue")


class UnsubscribeForm(FlaskForm):
    scope = RadioField(
        "Unsubscribe from",
        choices=options([("resource", "This newsletter only"), ("everything", "Everything")]),
        default="resource",
    )
    submit = SubmitField("Unsubscribe")


class PreferencesForm(FlaskForm):
    name = StringField("Name", validators=[Optional(), Length(max=200), one_line])
    locale = SelectField("Language", choices=LANGUAGES, default="")
    resources = CheckboxesField("What you receive", choices=[], validate_choice=True)
    submit = SubmitField("Save my preferences")


class PauseForm(FlaskForm):
    days = RadioField(
        "Pause everything for",
        choices=options([(str(days), f"{days} days") for days in PAUSE_DAYS]),
        default=str(PAUSE_DAYS[0]),
        validators=[InputRequired()],
    )
    submit = SubmitField("Pause")


class EraseForm(FlaskForm):
    understood = BooleanField(
        "I understand: my data is deleted and nothing will be sent to this address again.",
        validators=[InputRequired("Tick the box to confirm.")],
    )
    submit = SubmitField("Erase my data")


class PreferencesRequestForm(FlaskForm):
    email = EmailField(
        "Email address",
        validators=[InputRequired("Enter your email address."), Length(max=254), valid_address],
        render_kw={"autocomplete": "email"},
    )
    submit = SubmitField("Send me the link")
