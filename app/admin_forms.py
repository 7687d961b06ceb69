"""The admin view's forms (Flask-WTF: CSRF on each). The admin speaks English only."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import DateField, EmailField, PasswordField, SelectField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import InputRequired, Length, Optional

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
