"""May we send? The send decision of status.py for one address or many, read from the database."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row

from app import queries
from app.addresses import InvalidEmail, email_hash, normalize_email
from app.database import utcnow
from app.services.statuses import parse_channel, resource_for
from app.status import Channel, Decision, Status, can_send, stored_state

# The most addresses one batch call may ask about (SPEC §3).
MAX_BATCH = 10_000


def decide_many(
    emails: Sequence[str],
    resource: str | None = None,
    channel: str | Channel = Channel.EMAIL,
    *,
    now: datetime | None = None,
) -> list[tuple[str, Decision]]:
    """The send decision for each address, in the order given. A malformed address is answered
    (not allowed, reason ``invalid_email``) rather than failing the whole batch."""
    now = now or utcnow()
    parsed_channel = parse_channel(channel)
    found_resource = resource_for(resource, parsed_channel) if resource is not None else None
    resource_id = found_resource.id if found_resource else None
    # Most addresses a sender asks about came from optin and are stored exactly so: look them up
    # as given (trimmed, lower-cased) first, and run the full validation, which costs about 60 us
    # an address, only on the ones not found that way.
    quick = [raw.strip().lower() if isinstance(raw, str) else "" for raw in emails]
    rows = queries.eligibility_rows([a for a in quick if a], resource_id, parsed_channel.value)
    normalized: list[str | None] = []
    address: str | None  # here always a string; in the answers' loop below None when malformed
    for raw, address in zip(emails, quick, strict=True):
        if address in rows:
            normalized.append(address)
            continue
        try:
            normalized.append(normalize_email(raw))
        except InvalidEmail:
            normalized.append(None)
    # Look up again only the addresses that validation spelled differently from the first try.
    searched = set(quick)
    missing = {a for a in normalized if a is not None and a not in rows and a not in searched}
    if missing:
        rows.update(queries.eligibility_rows(missing, resource_id, parsed_channel.value))
    known = [address for address in normalized if address is not None]
    # Suppression covers addresses without a profile too (rule 6).
    unknown_hashes = {email_hash(a): a for a in known if a not in rows}
    suppressed_unknown = queries.suppressed_hashes(unknown_hashes)

    resource_named = found_resource is not None
    # Without a suspension in play, the decision depends on three values only: decide each
    # combination once (rows of a batch repeat a handful of them thousands of times).
    plain: dict[tuple[str | None, str | None, bool], Decision] = {}

    def decided(row: Row[Any]) -> Decision:
        sub_status = row.sub_status if resource_named else None
        key = (row.status, sub_status, bool(row.suppressed))
        if Status.SUSPENDED.value not in key and key in plain:
            return plain[key]
        decision = can_send(
            stored_state(row.status, row.suspended_until, row.resume_status),
            stored_state(sub_status, row.sub_suspended_until, row.sub_resume_status)
            if resource_named
            else None,
            suppressed=bool(row.suppressed),
            resource_named=resource_named,
            now=now,
        )
        if Status.SUSPENDED.value not in key:
            plain[key] = decision
        return decision

    answers: list[tuple[str, Decision]] = []
    for raw, address in zip(emails, normalized, strict=True):
        if address is None:
            answers.append((raw, Decision(False, "invalid_email", None, None)))
            continue
        row = rows.get(address)
        if row is None:
            suppressed = email_hash(address) in suppressed_unknown
            decision = can_send(
                None, None, suppressed=suppressed, resource_named=resource_named, now=now
            )
        else:
            decision = decided(row)
        answers.append((address, decision))
    return answers


def decide(
    email: str,
    resource: str | None = None,
    channel: str | Channel = Channel.EMAIL,
    *,
    now: datetime | None = None,
) -> Decision:
    """The send decision for one address (rule 1); no resource means the global status alone."""
    address = normalize_email(email)
    return decide_many([address], resource, channel, now=now)[0][1]
