"""Erasure (SPEC §2): what "erase my data" removes, and the little it keeps.

The profile goes, and with it (by the database's cascades) its subscriptions, consent records
and outbox rows. Everything else that was written about the person is scrubbed in the same
transaction: the IP, browser, free-text reason and profile of their status events; the address
and reason in the suppression list's history; the address in import rejections; the address in
the outbox (rows not tied to the profile too, so an unsent message never goes out); provider
event ids that spell the address. What stays is what holds no personal data: the events as
anonymous counts, and the address's hash on the suppression list, so that no import brings the
person back. The messages the console backend saved are deleted once the transaction is
committed (``forget_files``).

``tests/test_erasure.py`` classifies every text column of the schema, so a column added later
that could hold personal data cannot be forgotten here.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, SQLColumnExpression, delete, func, or_, select, update

from app import queries
from app.addresses import email_hash, hash_address_in
from app.database import utcnow
from app.extensions import db
from app.mailer import forget_saved_mail
from app.models import (
    DeliveryEvent,
    ImportRejection,
    OutboxMessage,
    Profile,
    StatusEvent,
    Suppression,
    SuppressionEvent,
)
from app.services import changes
from app.services.statuses import Actor
from app.services.webhooks import queueing as webhooks

ERASED = "erased"


def _names(column: SQLColumnExpression[str | None], address: str) -> ColumnElement[bool]:
    """Whether a free-text column (an actor) spells the address, in any case."""
    return func.lower(column).contains(address, autoescape=True)


def forget_in_transaction(profile: Profile, *, actor: Actor) -> str:
    """Erase ``profile`` inside the caller's write transaction; returns the address's hash,
    which ``forget_files`` needs once the transaction is committed."""
    address = profile.email
    hashed = email_hash(address)

    # The profile's lock first, so that no status change of it commits between the change
    # feed's entry of the erasure and the scrub below; the entry goes after its last event.
    queries.lock_profile(profile.id)
    named = actor.name and address in actor.name.lower()
    changes.record_erasure(profile.id, actor=None if named else actor.name, now=utcnow())

    # Status events stay as the history of counts (cause, statuses, time, resource); who the
    # person was, where from, and any words about them go. An actor is an admin, a key, a
    # provider or the system, and is kept, unless it spells the person's own address.
    db.session.execute(
        update(StatusEvent)
        .where(StatusEvent.profile_id == profile.id, _names(StatusEvent.actor, address))
        .values(actor=None)
    )
    db.session.execute(
        update(StatusEvent)
        .where(StatusEvent.profile_id == profile.id)
        .values(profile_id=None, ip=None, user_agent=None, reason=None)
    )

    # The suppression list and its history keep the hash, and forget the address and the words.
    db.session.execute(
        update(SuppressionEvent)
        .where(SuppressionEvent.email_hash == hashed, _names(SuppressionEvent.actor, address))
        .values(actor=None)
    )
    db.session.execute(
        update(SuppressionEvent)
        .where(SuppressionEvent.email_hash == hashed)
        .values(email=None, reason=None)
    )
    suppression = queries.suppression_of(hashed)
    if suppression is None:
        db.session.add(Suppression(email_hash=hashed, email=None, reason=ERASED, actor=actor.name))
    else:
        suppression.email = None
        if suppression.actor and address in suppression.actor.lower():
            suppression.actor = None

    # An import's rejected row keeps its line and reason, so the job's report still adds up.
    db.session.execute(
        update(ImportRejection)
        .where(ImportRejection.email_hash == hashed)
        .values(email=None, email_hash=None)
    )

    # Sent or not: an unsent message to an erased person must never go out, and a sent one is a
    # copy of their address and name. The profile's own rows go by cascade as well.
    db.session.execute(
        delete(OutboxMessage).where(
            or_(OutboxMessage.profile_id == profile.id, OutboxMessage.to_address == address)
        )
    )

    _scrub_event_ids(address, hashed)
    webhooks.queue_erasure(profile.id, actor=actor.name)  # the id to forget, no address
    db.session.delete(profile)
    return hashed


def _scrub_event_ids(address: str, hashed: str) -> None:
    """A provider's event id may spell the address (SES's per-recipient ids did); the address
    in it becomes its hash, which keeps the id unique and a redelivery still a duplicate."""
    found = db.session.scalars(
        select(DeliveryEvent).where(
            DeliveryEvent.email_hash == hashed, _names(DeliveryEvent.event_id, address)
        )
    )
    for event in found:
        scrubbed = hash_address_in(event.event_id, address)[:200]
        clash = db.session.scalar(
            select(DeliveryEvent.id).where(
                DeliveryEvent.source == event.source, DeliveryEvent.event_id == scrubbed
            )
        )
        if clash is not None:
            db.session.delete(event)  # the same event, recorded once already under its hash
        else:
            event.event_id = scrubbed


def forget_files(hashed: str) -> None:
    """After the commit: the messages the console backend saved for the erased address."""
    forget_saved_mail(hashed)
