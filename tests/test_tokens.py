"""Tokens: one purpose each, rotation, and the fast signing path agreeing with itsdangerous."""

from __future__ import annotations

import hashlib
import hmac

from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from itsdangerous import Signer

from app.tokens import (
    LinkSigner,
    LinkTarget,
    Purpose,
    _PrecomputedHMAC,
    make_token,
    read_token,
)


@settings(max_examples=300)
@given(key=st.binary(min_size=0, max_size=200), message=st.binary(max_size=300))
def test_the_precomputed_hmac_is_the_standard_hmac(key: bytes, message: bytes) -> None:
    assert (
        _PrecomputedHMAC().get_signature(key, message)
        == hmac.new(key, message, hashlib.sha1).digest()
    )


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the app is read-only here
@given(
    profile_id=st.integers(min_value=1, max_value=2**53),
    resource_id=st.none() | st.integers(min_value=1, max_value=2**31),
    channel=st.sampled_from(["email", "sms", "push"]),
    purpose=st.sampled_from([Purpose.UNSUBSCRIBE, Purpose.PREFERENCES]),
)
def test_link_tokens_are_itsdangerous_signatures_and_read_back(
    app: Flask, profile_id: int, resource_id: int | None, channel: str, purpose: Purpose
) -> None:
    token = LinkSigner(purpose).token(profile_id, resource_id, channel)
    stock = Signer([app.config["SECRET_KEY"]], salt=f"optin.{purpose.value}")
    payload = f"{profile_id}-{'' if resource_id is None else resource_id}-{channel}"
    assert token == stock.sign(payload).decode()
    assert read_token(purpose, token) == LinkTarget(profile_id, resource_id, channel)
    assert make_token(purpose, LinkTarget(profile_id, resource_id, channel)) == token


def test_a_recipients_links_are_the_same_in_every_message(app: Flask) -> None:
    first = make_token(Purpose.UNSUBSCRIBE, LinkTarget(7, 3))
    assert make_token(Purpose.UNSUBSCRIBE, LinkTarget(7, 3)) == first
    assert make_token(Purpose.UNSUBSCRIBE, LinkTarget(7, None)) != first
    assert make_token(Purpose.PREFERENCES, LinkTarget(7, 3)) != first


def test_confirmation_tokens_carry_the_form_and_consent_version(app: Flask) -> None:
    target = LinkTarget(7, 3, "email", "subscribe/newsletter", 12)
    assert read_token(Purpose.CONFIRM, make_token(Purpose.CONFIRM, target)) == target


@given(position=st.integers(min_value=0, max_value=200), replacement=st.sampled_from("AaZz09-_."))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_one_character_changed_is_refused(app: Flask, position: int, replacement: str) -> None:
    import pytest

    from app.tokens import TokenInvalid

    for purpose in Purpose:
        token = make_token(purpose, LinkTarget(42, 7, "email", "form", 3))
        where = position % len(token)
        if token[where] == replacement:
            continue
        changed = token[:where] + replacement + token[where + 1 :]
        with pytest.raises(TokenInvalid):
            read_token(purpose, changed)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200)
@given(
    profile_id=st.integers(min_value=1, max_value=2**53),
    resource_id=st.none() | st.integers(min_value=1, max_value=2**31),
    base=st.sampled_from(
        ["https://news.example.org", 'https://ex"ample.org/ü', "http://127.0.0.1:5000/"]
    ),
    mailto=st.sampled_from(["unsubscribe@example.org", 'odd"\\name@example.org', "ü@example.org"]),
)
def test_the_audience_rows_json_is_exactly_what_json_dumps_writes(
    app: Flask, profile_id: int, resource_id: int | None, base: str, mailto: str
) -> None:
    import json

    from app.links import LinkMaker

    app.config.update(BASE_URL=base, UNSUBSCRIBE_MAILTO=mailto)
    maker = LinkMaker()
    fields = maker.json_fields(profile_id, resource_id, "email")
    expected = json.dumps(
        vars(maker.links(profile_id, resource_id, "email")), separators=(",", ":")
    )
    assert "{" + fields + "}" == expected
