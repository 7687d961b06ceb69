"""Schemathesis against the OpenAPI document: generated requests for every operation, valid and
invalid, and every answer must be one the document allows (status, content type, schema) and
never a 500.

The operations are driven from a plain test (hypothesis ``given`` over each operation's
strategy) rather than schemathesis's pytest plugin, which does not load under pytest 9.
"""

from __future__ import annotations

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from app.models import Resource
from app.services import api_keys
from tests import factories

pytestmark = pytest.mark.slow

MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]

# JSON Schema's "email" format admits addresses optin refuses on purpose (RFC 6761 special-use
# domains such as .test, which no mail can reach); generate the deliverable kind.
schemathesis.openapi.format(
    "email",
    st.from_regex(r"[a-z0-9][a-z0-9+_]{0,30}@[a-z0-9]{1,20}\.(com|org|net|de)", fullmatch=True),
)


def names_a_channel_the_resource_lacks(response) -> bool:  # type: ignore[no-untyped-def]
    """A schema-valid request may still ask about a channel the resource does not use (``sms``
    for the email-only newsletter): that is a 400 by design, which the schema cannot express."""
    if response.status_code != 400:
        return False
    return response.json()["error"]["code"] == "unknown_channel"


@pytest.mark.parametrize("mode", MODES, ids=lambda mode: mode.value)
def test_every_answer_is_one_the_document_allows(
    app: Flask, newsletter: Resource, mode: GenerationMode
) -> None:
    factories.signup("alice@example.com", "newsletter")
    factories.confirm("alice@example.com", "newsletter")
    key = api_keys.create_key("fuzzer")[1]
    headers = {"Authorization": f"Bearer {key}"}
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 9

    for operation in operations:

        @settings(
            max_examples=30,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case) -> None:  # type: ignore[no-untyped-def]
            # On the case itself, so that schemathesis's auth probes can take it away again.
            case.headers = {**(case.headers or {}), **headers}
            response = case.call()
            assert response.status_code < 500, (case.path, response.text[:300])
            if mode is GenerationMode.POSITIVE and not names_a_channel_the_resource_lacks(response):
                case.validate_response(response)

        check()
