"""The admin view's forms (Flask-WTF: CSRF on each). The admin speaks English only."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, PasswordField, SubmitField
from wtforms.validators import InputRequired, Length


class LoginForm(FlaskForm):
    """``/admin/login``: the fields SPEC §4 names, ``email`` and ``password``."""

    email = EmailField("Email address", validators=[InputRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[InputRequired(), Length(max=200)])
    submit = SubmitField("Log in")


class ButtonForm(FlaskForm):
    """A form that is only a button and its CSRF token: log out, revoke, lift."""

    submit = SubmitField("Go")
