"""The public forms' inputs written by ``forms.input_tag`` (templates/_fields.html) are the HTML
that WTForms' widgets write, whatever was typed into them."""

from __future__ import annotations

from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from app.forms import PreferencesRequestForm, SignupAllForm, SignupForm, input_tag

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
