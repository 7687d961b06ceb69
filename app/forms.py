"""The public forms (Flask-WTF: CSRF on each, labels and clear error messages)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.csrf import _FlaskFormCSRF
from markupsafe import Markup, escape
from wtforms import (  # type: ignore[attr-defined]  # SelectChoice: WTForms 3.3's; types-WTForms 3.2 lacks it
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
from app.i18n import LANGUAGES
from app.services.preferences import PAUSE_DAYS


def options(pairs: list[tuple[str, Any]]) -> list[SelectChoice]:
    """Choices for a select, radio or checkbox field, from (value, label) pairs."""
    return [SelectChoice(value, label) for value, label in pairs]


def input_tag(field: Any, attributes: dict[str, Any] | None = None) -> Markup:
    """A field's ``<input>`` (text-like, or one checkbox or radio button of a choice), the same
    HTML that WTForms' widget writes (its render_kw, ``checked``, the flags of its validators
    that the widget shows, attributes sorted by name and escaped) without the generic machinery
    (``html_params`` formats each attribute through ``Markup.format``): the public forms render
    on every signup and every link, and that machinery was a fifth of a signup page's CPU. For
    the templates' ``_fields.html``."""
    values: dict[str, Any] = dict(field.render_kw or {})
    values.update(attributes or {})
    widget = field.widget
    if (isinstance(widget, widgets.RadioInput) and field.checked) or (
        isinstance(widget, widgets.CheckboxInput) and getattr(field, "checked", field.data)
    ):
        values.setdefault("checked", True)
    values.setdefault("id", field.id)
    values.setdefault("type", widget.input_type)
    values.setdefault("value", field._value())
    values["name"] = field.name
    flags = field.flags
    for flag in widget.validation_attrs:
        value = getattr(flags, flag, None)  # an unset flag reads None
        if value is not None and flag not in values:
            values[flag] = value() if callable(value) else value
    parts = []
    for key in sorted(values):
        value = values[key]
        if value is True:
            parts.append(key)
        elif value is not False:
            parts.append(f'{key}="{escape(value)}"')
    # Every value is escaped above; the names are the field's own and the template's literals.
    return Markup("<input " + " ".join(parts) + ">")  # nosec B704


LANGUAGE_CHOICES = options([("", _l("Not set")), *LANGUAGES.items()])


def valid_address(_form: Any, field: Any) -> None:
    try:
        field.data = normalize_email(field.data or "")
    except InvalidEmail:
        raise ValidationError(_l("Enter an email address like name@example.com.")) from None


def one_line(_form: Any, field: Any) -> None:
    if field.data and any(ch in field.data for ch in "\r\n\0"):
        raise ValidationError(_l("Use a single line."))


class _SignedWhenShown:
    """A form's CSRF token that is signed when a page shows it. Flask-WTF signs it as the form
    is made, but most POSTs are answered with a page that has no form (check your inbox, you
    are subscribed), so that signature was thrown away at every signup and every link's
    button. Shown twice, it is signed once: Flask-WTF keeps the request's token on ``g``."""

    def __init__(self, sign: Callable[[], str]) -> None:
        self._sign = sign

    def __str__(self) -> str:
        return self._sign()

    def __html__(self) -> Markup:
        return escape(self._sign())


class _CsrfSignedWhenShown(_FlaskFormCSRF):
    def generate_csrf_token(self, csrf_token_field: Any) -> _SignedWhenShown:
        return _SignedWhenShown(partial(super().generate_csrf_token, csrf_token_field))


class PublicForm(FlaskForm):
    """The public forms' base: Flask-WTF's, with the CSRF token signed only when shown."""

    class Meta:
        csrf_class = _CsrfSignedWhenShown


class CheckboxesField(SelectMultipleField):
    """Several choices shown as checkboxes."""

    widget = widgets.ListWidget(prefix_label=False)
    option_widget = widgets.CheckboxInput()


class SignupForm(PublicForm):
    email = EmailField(
        _l("Email address"),
        validators=[InputRequired(_l("Enter your email address.")), Length(max=254), valid_address],
        render_kw={"autocomplete": "email"},
    )
    name = StringField(
        _l("Name (optional)"),
        validators=[Optional(), Length(max=200), one_line],
        render_kw={"autocomplete": "name"},
    )
    # The honeypot: hidden from people, filled in by form-spamming robots.
    website = StringField(
        _l("Leave this field empty"), render_kw={"autocomplete": "off", "tabindex": "-1"}
    )
    submit = SubmitField(_l("Subscribe"))


class SignupAllForm(SignupForm):
    resources = CheckboxesField(
        _l("Choose what you want to receive"),
        validators=[InputRequired(_l("Choose at least one."))],
        choices=[],
    )


class ButtonForm(PublicForm):
    """A form that is only a button (and its CSRF token): confirm, resend."""

    submit = SubmitField(_l("Continue"))


class UnsubscribeForm(PublicForm):
    scope = RadioField(
        _l("Unsubscribe from"),
        choices=options(
            [("resource", _l("This newsletter only")), ("everything", _l("Everything"))]
        ),
        default="resource",
    )
    submit = SubmitField(_l("Unsubscribe"))


class PreferencesForm(PublicForm):
    name = StringField(_l("Name"), validators=[Optional(), Length(max=200), one_line])
    locale = SelectField(_l("Language"), choices=LANGUAGE_CHOICES, default="")
    resources = CheckboxesField(_l("What you receive"), choices=[], validate_choice=True)
    submit = SubmitField(_l("Save my preferences"))


class PauseForm(PublicForm):
    days = RadioField(
        _l("Pause everything for"),
        choices=options([(str(days), _l("%(days)s days", days=days)) for days in PAUSE_DAYS]),
        default=str(PAUSE_DAYS[0]),
        validators=[InputRequired()],
    )
    submit = SubmitField(_l("Pause"))


class EraseForm(PublicForm):
    understood = BooleanField(
        _l("I understand: my data is deleted and nothing will be sent to this address again."),
        validators=[InputRequired(_l("Tick the box to confirm."))],
    )
    submit = SubmitField(_l("Erase my data"))


class PreferencesRequestForm(PublicForm):
    email = EmailField(
        _l("Email address"),
        validators=[InputRequired(_l("Enter your email address.")), Length(max=254), valid_address],
        render_kw={"autocomplete": "email"},
    )
    submit = SubmitField(_l("Send me the link"))
