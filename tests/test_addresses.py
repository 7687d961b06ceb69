"""Addresses: the fast path for plain addresses gives email-validator's answer, always."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import example, given, settings
from hypothesis import strategies as st

from app.addresses import PLAIN_ADDRESS, InvalidEmail, normalize_email, plain_address


def validator_answer(candidate: str) -> str | None:
    """What email-validator alone makes of ``candidate``: its lower-cased spelling, or None."""
    try:
        return validate_email(candidate, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


# Addresses shaped like the fast path's pattern, in mixed case, with the traps it must pass on:
# reserved hyphens, special-use domains, over-long parts.
ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-"
atoms = st.text(alphabet=ATEXT, min_size=1, max_size=30)
labels = st.one_of(
    st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,8}[a-zA-Z0-9])?", fullmatch=True),
    st.sampled_from(
        ["xn--ab", "ab--cd", "a--b", "-a", "a-", "test", "local", "localhost", "x" * 64]
    ),
)
tlds = st.one_of(
    st.from_regex(r"[a-zA-Z]{1,8}", fullmatch=True),
    st.sampled_from(["test", "invalid", "onion", "arpa", "com1", "123", "x" * 64]),
)
shaped = st.builds(
    lambda local, domain, tld: ".".join(local) + "@" + ".".join([*domain, tld]),
    st.lists(atoms, min_size=1, max_size=4),
    st.lists(labels, min_size=1, max_size=4),
    tlds,
)


@pytest.mark.slow  # 1,500 examples
@settings(max_examples=1500)
@given(candidate=st.one_of(shaped, st.text(max_size=40), st.from_regex(PLAIN_ADDRESS)))
@example("Anna.Schmidt@Example.COM")
@example("a@b.c")
@example("o'brien@example.de")
@example("a@a--b.com")
@example("a@xn--abc.com")
@example("a@b.test")
@example("a@mail.localhost")
@example("\u212a@example.com")  # KELVIN SIGN lower-cases to an ASCII k
def test_the_fast_path_agrees_with_email_validator(candidate: str) -> None:
    fast = plain_address(candidate)
    if fast is not None:
        assert fast == validator_answer(candidate)


@given(shaped)
def test_normalize_email_gives_the_validators_spelling_or_refuses(candidate: str) -> None:
    expected = validator_answer(candidate)
    if expected is None or len(candidate) > 254:
        with pytest.raises(InvalidEmail):
            normalize_email(candidate)
    else:
        assert normalize_email(candidate) == expected


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("  Anna.Schmidt@Example.COM ", "anna.schmidt@example.com"),
        ("user+tag@sub.example.co.uk", "user+tag@sub.example.co.uk"),
        ("Jürgen@Bücher.example", "jürgen@bücher.example"),
    ],
)
def test_addresses_are_stored_in_one_spelling(raw: str, stored: str) -> None:
    assert normalize_email(raw) == stored


@pytest.mark.parametrize(
    "raw", ["", "plain", "a@b", "a..b@example.com", "a@-example.com", "a@example.test", "a@1.2.3.4"]
)
def test_malformed_addresses_are_refused(raw: str) -> None:
    with pytest.raises(InvalidEmail):
        normalize_email(raw)
