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
    _KeyedHMAC,
    make_token,
    read_token,
)
from tests.helpers import Clock

# One instance for every example, as a signer keeps one: each message must start from the keyed
# state, never from what an earlier message left in it.
KEYED = _KeyedHMAC()


@settings(max_examples=300)
@given(
    key=st.binary(min_size=0, max_size=200),
    messages=st.lists(st.binary(max_size=300), min_size=1, max_size=3),
)
def test_the_keyed_hmac_signs_every_message_as_a_fresh_hmac_would(
    key: bytes, messages: list[bytes]
) -> None:
    for message in messages:
        assert KEYED.get_signature(key, message) == hmac.new(key, message, hashlib.sha1).digest()


KEY = "0123456789abcdef0123456789abcdef"
keys = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the app is read-only here
@given(
    profile_id=st.integers(min_value=1, max_value=2**53),
    key=keys,
    resource_id=st.none() | st.integers(min_value=1, max_value=2**31),
    channel=st.sampled_from(["email", "sms", "push"]),
    purpose=st.sampled_from([Purpose.UNSUBSCRIBE, Purpose.PREFERENCES]),
)
def test_link_tokens_are_itsdangerous_signatures_and_read_back(
    app: Flask, profile_id: int, key: str, resource_id: int | None, channel: str, purpose: Purpose
) -> None:
    token = LinkSigner(purpose).token(profile_id, key, resource_id, channel)
    stock = Signer([app.config["SECRET_KEY"]], salt=f"optin.{purpose.value}")
    payload = f"{profile_id}-{'' if resource_id is None else resource_id}-{channel}-{key}"
    assert token == stock.sign(payload).decode()
    target = LinkTarget(profile_id, key, resource_id=resource_id, channel=channel)
    assert read_token(purpose, token) == target
    assert make_token(purpose, target) == token


def test_a_recipients_links_are_the_same_in_every_message(app: Flask) -> None:
    first = make_token(Purpose.UNSUBSCRIBE, LinkTarget(7, KEY, resource_id=3))
    assert make_token(Purpose.UNSUBSCRIBE, LinkTarget(7, KEY, resource_id=3)) == first
    assert make_token(Purpose.UNSUBSCRIBE, LinkTarget(7, KEY)) != first
    assert make_token(Purpose.PREFERENCES, LinkTarget(7, KEY, resource_id=3)) != first
    other_key = "f" * 32
    assert make_token(Purpose.UNSUBSCRIBE, LinkTarget(7, other_key, resource_id=3)) != first


def test_confirmation_tokens_carry_the_form_consent_version_and_signup_nonce(app: Flask) -> None:
    target = LinkTarget(
        7, KEY, resource_id=3, form="subscribe/newsletter", consent_text_id=12, nonce="a" * 32
    )
    assert read_token(Purpose.CONFIRM, make_token(Purpose.CONFIRM, target)) == target


def test_a_link_is_minted_only_with_a_well_formed_key(app: Flask) -> None:
    import pytest

    for key in ("", "7", KEY.upper(), KEY + "0", "g" * 32):
        for purpose in Purpose:
            with pytest.raises(ValueError):
                make_token(purpose, LinkTarget(7, key))


def test_a_data_token_reads_back_and_expires(app: Flask, clock: Clock) -> None:
    import pytest

    from app.tokens import TokenExpired

    token = make_token(Purpose.DATA, LinkTarget(7, KEY))
    assert read_token(Purpose.DATA, token) == LinkTarget(7, KEY)
    app.config["DATA_LINK_MAX_AGE"] = 0
    clock.advance(1)  # itsdangerous timestamps are whole seconds
    with pytest.raises(TokenExpired) as expired:
        read_token(Purpose.DATA, token)
    assert expired.value.purpose is Purpose.DATA
    assert expired.value.target == LinkTarget(7, KEY)


@given(position=st.integers(min_value=0, max_value=200), replacement=st.sampled_from("AaZz09-_."))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_one_character_changed_is_refused(app: Flask, position: int, replacement: str) -> None:
    import pytest

    from app.tokens import TokenInvalid

    for purpose in Purpose:
        target = LinkTarget(42, KEY, resource_id=7, form="form", consent_text_id=3, nonce=KEY)
        token = make_token(purpose, target)
        where = position % len(token)
        if token[where] == replacement:
            continue
        changed = token[:where] + replacement + token[where + 1 :]
        with pytest.raises(TokenInvalid):
            read_token(purpose, changed)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200)
@given(
    profile_id=st.integers(min_value=1, max_value=2**53),
    key=keys,
    resource_id=st.none() | st.integers(min_value=1, max_value=2**31),
    base=st.sampled_from(
        ["https://news.example.org", 'https://ex"ample.org/ü', "http://127.0.0.1:5000/"]
    ),
    mailto=st.sampled_from(["unsubscribe@example.org", 'odd"\\name@example.org', "ü@example.org"]),
)
def test_the_audience_rows_json_is_exactly_what_json_dumps_writes(
    app: Flask, profile_id: int, key: str, resource_id: int | None, base: str, mailto: str
) -> None:
    import json

    from app.links import LinkMaker

    app.config.update(BASE_URL=base, UNSUBSCRIBE_MAILTO=mailto)
    maker = LinkMaker()
    fields = maker.json_fields(profile_id, key, resource_id, "email")
    expected = json.dumps(
        vars(maker.links(profile_id, key, resource_id, "email")), separators=(",", ":")
    )
    assert "{" + fields + "}" == expected
