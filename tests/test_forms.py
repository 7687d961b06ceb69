"""The public forms' inputs and choices written by ``forms.input_tag`` (templates/_fields.html)
are the HTML that WTForms' widgets write, whatever was typed or ticked."""

from __future__ import annotations

from flask import Flask, g
from flask_wtf.csrf import validate_csrf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from app.forms import (
    PauseForm,
    PreferencesRequestForm,
    SignupAllForm,
    SignupForm,
    UnsubscribeForm,
    input_tag,
    options,
)

ATTRIBUTES = [
    None,
    {"aria-invalid": "true", "aria-describedby": "email-error"},
    {"aria-describedby": "name-hint"},
]


# The app is only read (a request context for the forms): one for every example is enough.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    typed=st.text(max_size=40),
    which=st.sampled_from([SignupForm, SignupAllForm, PreferencesRequestForm]),
    attributes=st.sampled_from(ATTRIBUTES),
)
def test_an_input_is_written_as_wtforms_writes_it(
    app: Flask, typed: str, which: type, attributes: dict[str, str] | None
) -> None:
    with app.test_request_context(method="POST"):
        data = MultiDict({"email": typed, "name": typed, "website": typed})
        form = which(formdata=data, meta={"csrf": False})
        form.validate()  # errors and normalised values, as a page shows them after a POST
        for name in ("email", "name", "website"):
            if name in form:
                field = form[name]
                assert input_tag(field, attributes) == field(**(attributes or {}))


def test_the_csrf_input_is_the_one_flask_wtf_writes(app: Flask) -> None:
    with app.test_request_context():
        form = SignupForm()
        rendered = app.jinja_env.from_string(
            '{% from "_fields.html" import csrf %}{{ csrf(form) }}'
        ).render(form=form)
        assert rendered == str(form.csrf_token())


CHOICES = '{% from "_forms.html" import choices %}{{ choices(form[name]) }}'
OWN_CHOICES = '{% from "_fields.html" import choices %}{{ choices(form[name]) }}'


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    which=st.sampled_from(["scope", "days", "resources"]),
    ticked=st.lists(st.sampled_from(["resource", "everything", "30", "90", "a&b", "<b>", "x"])),
    posted=st.booleans(),
)
def test_choices_are_written_as_wtforms_writes_them(
    app: Flask, which: str, ticked: list[str], posted: bool
) -> None:
    with app.test_request_context(method="POST" if posted else "GET"):
        data = MultiDict([(which, value) for value in ticked]) if posted else None
        form: UnsubscribeForm | PauseForm | SignupAllForm
        if which == "scope":
            form = UnsubscribeForm(formdata=data, meta={"csrf": False})
            form.scope.choices = options([("resource", "<i>News</i> only"), ("everything", "All")])
        elif which == "days":
            form = PauseForm(formdata=data, meta={"csrf": False})
        else:
            form = SignupAllForm(formdata=data, meta={"csrf": False})
            form.resources.choices = options([("a&b", "A & B"), ("<b>", "Bold"), ("x", "X")])
        if posted:
            form.validate()  # errors shown, as after a refused POST
        expected = app.jinja_env.from_string(CHOICES).render(form=form, name=which)
        assert app.jinja_env.from_string(OWN_CHOICES).render(form=form, name=which) == expected


def test_the_csrf_token_is_signed_when_a_page_shows_it_and_not_before(app: Flask) -> None:
    with app.test_request_context():
        form = SignupForm()
        assert "csrf_token" not in g  # a POST answered with a page without a form signs nothing
        shown = app.jinja_env.from_string(
            '{% from "_fields.html" import csrf %}{{ csrf(form) }}'
        ).render(form=form)
        token = g.csrf_token
        assert f'value="{token}"' in shown and str(form.csrf_token.current_token) == token
        validate_csrf(token)  # the token Flask-WTF checks when the form comes back
