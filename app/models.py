"""The tables: columns and relationships only. The rules that change statuses are in status.py."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    event,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from app.addresses import search_key
from app.database import UTCDateTime, utcnow
from app.extensions import Model
from app.status import Channel, State, Status
from app.tokens import new_link_key

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key.
BigId = BigInteger().with_variant(Integer, "sqlite")
# Tables whose ids appear in links: without AUTOINCREMENT SQLite hands a deleted row's id (the
# highest) to the next row, and an old link would name the new one. PostgreSQL's sequences
# never give an id twice.
NEVER_REUSED = {"sqlite_autoincrement": True}
STATUS = String(16)


class StatusColumns:
    """A status with its suspension details, shared by profiles and subscriptions. The columns
    are declared by each model (the profile's is named ``global_status`` in the table)."""

    status: str
    suspended_until: datetime | None
    resume_status: str | None

    @property
    def state(self) -> State:
        return state_of(self.status, self.suspended_until, self.resume_status)

    @state.setter
    def state(self, state: State) -> None:
        for name, value in state_values(state).items():
            setattr(self, name, value)


def state_of(status: str, suspended_until: datetime | None, resume_status: str | None) -> State:
    """The State held in a row's three status columns (an entity's or a Core row's)."""
    return State(Status(status), suspended_until, Status(resume_status) if resume_status else None)


def state_values(state: State) -> dict[str, Any]:
    """The three status columns of ``state``, by their attribute names (``StatusColumns``)."""
    return {
        "status": state.status.value,
        "suspended_until": state.suspended_until,
        "resume_status": state.resume_status.value if state.resume_status else None,
    }


class Resource(Model):
    """Something a customer subscribes to: a newsletter, a brand, a product's updates."""

    __tablename__ = "resources"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    # Comma-separated channel names, in the order the resource lists them.
    channels: Mapped[str] = mapped_column(String(64), default=Channel.EMAIL.value)
    public: Mapped[bool] = mapped_column(Boolean, default=True)
    double_opt_in: Mapped[bool] = mapped_column(Boolean, default=True)
    thank_you_url: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    @property
    def channel_list(self) -> list[Channel]:
        return [Channel(name) for name in self.channels.split(",") if name]

    __table_args__ = (NEVER_REUSED,)


class Profile(StatusColumns, Model):
    """One customer, identified by a normalised email address; ``status`` is the global status."""

    __tablename__ = "profiles"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    # SHA-256 of the normalised address: joins the suppression list, which outlives erasure.
    email_hash: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(32))
    locale: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column("global_status", STATUS)
    suspended_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resume_status: Mapped[str | None] = mapped_column(STATUS)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # In every link to the profile (tokens.py): random, made with the profile, gone with it.
    link_key: Mapped[str] = mapped_column(String(32), default=new_link_key)
    # True for the profiles that existed before link keys (migration 0008): the unsubscribe links
    # in mail sent to them then carry no key, and still unsubscribe (tokens.LEGACY_PAYLOAD).
    legacy_links: Mapped[bool] = mapped_column(Boolean, server_default=false())
    # What the admin's search matches: the email and the name case-folded by Python
    # (addresses.search_key), set with them below; the import's bulk writer sets them itself.
    email_key: Mapped[str | None] = mapped_column(Text)
    name_key: Mapped[str | None] = mapped_column(Text)

    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="profile", cascade="all, delete-orphan", passive_deletes=True
    )

    __table_args__ = (
        # The dashboard counts by global status; the admin's list (queries.profile_list) reads
        # one status newest first, by id, and the first id created since a moment.
        Index("ix_profiles_global_status", "global_status", "id"),
        Index("ix_profiles_created", "created_at", "id"),
        NEVER_REUSED,
    )

    @validates("email", "name")
    def _keep_search_key(self, field: str, value: str | None) -> str | None:
        # Every ORM write of the email or the name (signup, preferences, admin, API, demo)
        # passes here, so the search key can never lag behind what it folds.
        setattr(self, f"{field}_key", search_key(value))
        return value


# The admin's profile search (queries.search_profiles) reads a prefix range of the search key
# of the email, and of the name, in index order with the id for ties. The order is byte order:
# SQLite's own; on PostgreSQL the "C" collation, since in a natural-language collation a prefix
# range is not the strings with that prefix. (The collation is given as the column's "operator
# class" because Alembic compares neither, and a COLLATE in an expression reads back differently
# and would look like a changed index.)
C_ORDER = 'COLLATE "C"'
Index("ix_profiles_email_key", Profile.email_key, Profile.id, postgresql_ops={"email_key": C_ORDER})
Index("ix_profiles_name_key", Profile.name_key, Profile.id, postgresql_ops={"name_key": C_ORDER})


class Subscription(StatusColumns, Model):
    """A profile's subscription to one resource on one channel, with its own status."""

    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"))
    resource_id: Mapped[int] = mapped_column(ForeignKey("resources.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(STATUS)
    suspended_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resume_status: Mapped[str | None] = mapped_column(STATUS)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The nonce of the signup request whose confirmation email is out; the link carries it, so
    # it confirms that request only. Replaced by each new request, cleared by any other change.
    confirm_nonce: Mapped[str | None] = mapped_column(String(32))

    profile: Mapped[Profile] = relationship(back_populates="subscriptions")
    resource: Mapped[Resource] = relationship()

    __table_args__ = (
        UniqueConstraint("profile_id", "resource_id", "channel"),
        # The audience query: one resource and channel, its sendable statuses, then the profile.
        Index("ix_subscriptions_audience", "resource_id", "channel", "status", "profile_id"),
        # Retention (rule 8) looks for old unconfirmed subscriptions.
        Index("ix_subscriptions_status_created", "status", "created_at"),
        # The admin's list filtered by a resource, and by its subscription status: the
        # subscribers' profile ids newest first (queries.profile_list).
        Index("ix_subscriptions_resource_profile", "resource_id", "profile_id"),
        Index("ix_subscriptions_resource_status", "resource_id", "status", "profile_id"),
        NEVER_REUSED,
    )


class StatusEvent(Model):
    """One status change, global or of a subscription (rule 7). Rows are only ever appended;
    erasure alone blanks the personal data in them."""

    __tablename__ = "status_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    profile_id: Mapped[int | None] = mapped_column(ForeignKey("profiles.id", ondelete="SET NULL"))
    # None: the event is about the global status.
    resource_id: Mapped[int | None] = mapped_column(ForeignKey("resources.id", ondelete="SET NULL"))
    channel: Mapped[str | None] = mapped_column(String(8))
    old_status: Mapped[str | None] = mapped_column(STATUS)
    new_status: Mapped[str] = mapped_column(STATUS)
    suspended_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cause: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # Where the change feed (queries/changes.py) places the event: on PostgreSQL the writing
    # transaction's id, set by a trigger (FEED_XID_TRIGGER) so that every writer, the import's
    # bulk writer too, fills it without code; 0 on SQLite, whose writers are serialized, and
    # for events written before migration 0014.
    feed_xid: Mapped[int] = mapped_column(BigInteger, server_default="0")

    __table_args__ = (
        Index("ix_status_events_feed", "feed_xid", "id"),
        # A profile's events; and the place of its last one, which the trigger reads for every
        # event written (an index range of one row: with the place beside the profile, no plan
        # can pick max() from ix_status_events_feed instead and scan it for each new row).
        Index("ix_status_events_profile_feed", "profile_id", "feed_xid"),
    )


# PostgreSQL ids transactions in the order they first write, not the order they commit; the
# feed serves an event once every transaction with a smaller id has ended. The event of a
# transaction that waited on a profile's lock held by a younger one (an import chunk, a batch
# of provider events, each locking many profiles) would then come before the event it followed,
# so the id given is at least that of the profile's previous event: per-profile order holds,
# and an event is still never placed below its own transaction's id.
FEED_XID_FUNCTION = """
CREATE OR REPLACE FUNCTION optin_status_event_feed_xid() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.feed_xid := GREATEST(
        pg_current_xact_id()::text::bigint,
        COALESCE((SELECT max(feed_xid) FROM status_events WHERE profile_id = NEW.profile_id), 0)
    );
    RETURN NEW;
END
$$
"""
FEED_XID_TRIGGER = """
CREATE TRIGGER status_events_feed_xid BEFORE INSERT ON status_events
FOR EACH ROW EXECUTE FUNCTION optin_status_event_feed_xid()
"""
for _ddl in (FEED_XID_FUNCTION, FEED_XID_TRIGGER):
    _on_postgres = DDL(_ddl).execute_if(dialect="postgresql")  # type: ignore[no-untyped-call]  # DDL() is untyped in SQLAlchemy
    event.listen(StatusEvent.__table__, "after_create", _on_postgres)


class Erasure(Model):
    """An erased profile, as the change feed shows it (issue 15): which id to forget, when and
    by whom, never the address. Its own table, because status_events rows are status changes
    (history pages and counts read them) and an erasure is none. ``feed_xid`` as for events;
    ``after_event`` is the newest status event id when it was written, which places it in the
    feed after every event its transaction could see."""

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # No foreign key: the profile is gone; its id never recurs (NEVER_REUSED).
    profile_id: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str | None] = mapped_column(String(200))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    feed_xid: Mapped[int] = mapped_column(BigInteger, server_default="0")
    after_event: Mapped[int] = mapped_column(BigInteger, server_default="0")

    __table_args__ = (
        Index("ix_erasures_feed", "feed_xid", "after_event", "id"),
        NEVER_REUSED,
    )


class Suppression(Model):
    """The platform-wide suppression list (rule 6): no message goes to these addresses.

    Keyed by the address's hash so that erasure can drop the address and keep the block.
    """

    __tablename__ = "suppressions"

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SuppressionEvent(Model):
    """An address put on the suppression list or taken off it, by hand or by a status change
    (a bounce, an import, a confirmed opt-in), with who and why. The
    list itself keeps only its current rows; this is their history (rule 7 for the list).
    Erasure blanks the address and keeps the hash, as it does on the list."""

    __tablename__ = "suppression_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64), index=True)
    email: Mapped[str | None] = mapped_column(String(320))
    # "added" or "lifted".
    action: Mapped[str] = mapped_column(String(16))
    # What put it there or took it off (a status.Cause word): `admin` by hand, `bounce`,
    # `complaint` and `import` add, `confirm` and `api` (consent proof) lift.
    cause: Mapped[str] = mapped_column(String(32), default="admin", server_default="admin")
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str | None] = mapped_column(String(200))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConsentText(Model):
    """A version of the consent text shown on a signup form; versions are added, never edited."""

    __tablename__ = "consent_texts"

    id: Mapped[int] = mapped_column(primary_key=True)
    resource_id: Mapped[int | None] = mapped_column(ForeignKey("resources.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("resource_id", "version"), NEVER_REUSED)


class ConsentRecord(Model):
    """The proof of consent stored with a confirmation: when, from where, on which form, and
    which version of the consent text the customer saw."""

    __tablename__ = "consent_records"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"), index=True
    )
    consent_text_id: Mapped[int | None] = mapped_column(ForeignKey("consent_texts.id"))
    confirmed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    form: Mapped[str | None] = mapped_column(String(200))


class OutboxMessage(Model):
    """An email waiting to be delivered, written in the transaction of the change that caused it."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    to_address: Mapped[str] = mapped_column(String(320))
    template: Mapped[str] = mapped_column(String(64))
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    profile_id: Mapped[int | None] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"))
    resource_id: Mapped[int | None] = mapped_column(ForeignKey("resources.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    # A worker that claimed the row owns it until then; a crashed worker's rows come back after.
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set when the message was not sent because it may no longer be (can_send said no).
    dropped_reason: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_outbox_pending", "sent_at", "next_attempt_at"),
        # The per-address cap on confirmation emails counts recent rows inside the signup's
        # transaction; without this it scans the whole outbox under the write lock.
        Index("ix_outbox_recent_to_address", "to_address", "template", "created_at"),
    )


class ApiKey(Model):
    """A key the sending platform uses (``Authorization: Bearer ...``). Only its SHA-256 is
    stored: keys are long random strings, so a fast hash is enough and lookups stay O(1)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters, to tell keys apart in listings without revealing them.
    prefix: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DeliveryEvent(Model):
    """A delivery event reported by the sending platform or a provider webhook. The provider's
    event id makes a second delivery of the same event a no-op (rule 9); soft bounces are
    counted from here for the suspension policy."""

    __tablename__ = "delivery_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(16))
    email_hash: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[int | None] = mapped_column(ForeignKey("resources.id", ondelete="SET NULL"))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("source", "event_id"),
        Index("ix_delivery_events_soft_bounces", "email_hash", "type", "occurred_at"),
    )


class AdminUser(Model):
    """A member of the marketing team who may use the admin view (SPEC §4). The password is
    stored as a Werkzeug hash; the address is the login name and the actor in the event log."""

    __tablename__ = "admin_users"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Sessions are signed cookies that the server does not keep; each names the version it was
    # made under, and logout or a password change moves the version on, so that every session
    # made before (a copied cookie too) is refused from then on.
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")

    # Flask-Login's user protocol: every stored user is an active, authenticated one.
    is_active = True
    is_authenticated = True
    is_anonymous = False

    def get_id(self) -> str:
        """What the session stores: the user and the session version ("7:2"); the user loader
        (``services.admin_users.user_by_id``) accepts it only while the version is current."""
        return f"{self.id}:{self.session_version}"


class ImportJob(Model):
    """One CSV import of existing subscribers (SPEC §4), run in the background. The counters are
    updated as it goes, so the admin page and the command line can show its progress."""

    __tablename__ = "import_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The resource rows without a resource column go to (the import's --resource).
    resource_id: Mapped[int | None] = mapped_column(ForeignKey("resources.id", ondelete="SET NULL"))
    filename: Mapped[str] = mapped_column(String(300))
    # Where the uploaded file waits for the background worker (under the instance folder).
    path: Mapped[str | None] = mapped_column(String(500))
    actor: Mapped[str | None] = mapped_column(String(200))
    # queued, running, done or failed.
    state: Mapped[str] = mapped_column(String(16), default="queued")
    total_rows: Mapped[int] = mapped_column(Integer, default=0)
    processed_rows: Mapped[int] = mapped_column(Integer, default=0)
    imported_rows: Mapped[int] = mapped_column(Integer, default=0)
    unchanged_rows: Mapped[int] = mapped_column(Integer, default=0)
    rejected_rows: Mapped[int] = mapped_column(Integer, default=0)
    # Addresses the import put on the suppression list (its `hardbounced` rows, rule 6).
    suppressed_addresses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The last sign of life of a queued or running import: set when it is queued and after each
    # chunk. A job whose process ended (a restart, a crash) stops moving it and reads as stalled.
    progressed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The lease of the worker running it (services/imports/jobs.py): renewed before each chunk;
    # once it has run out, the worker is taken for dead and the next one resumes the job.
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # How many times a worker claimed it: the claim's identity (a worker whose job was claimed
    # again after its lease ran out writes nothing more), and a limit on retries.
    claims: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ImportRejection(Model):
    """A row of an import that was not imported, with its line number and why."""

    __tablename__ = "import_rejections"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("import_jobs.id", ondelete="CASCADE"))
    line: Mapped[int] = mapped_column(Integer)
    # The raw address as written in the file (cut to fit), to help find the row.
    email: Mapped[str | None] = mapped_column(String(320))
    # SHA-256 of the address normalised (None when it is not an address): the raw spelling can
    # differ from the profile's in case or Unicode form, and erasure must still find the row.
    email_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    reason: Mapped[str] = mapped_column(String(300))

    __table_args__ = (Index("ix_import_rejections_job_line", "job_id", "line"),)


class WebhookEndpoint(Model):
    """A URL of the sending platform that receives each status change as a signed POST
    (issue 15). ``event_types`` and ``resource_ids`` are None for "all"; the secret signs every
    delivery, so it is kept as it is (a hash could not sign) and shown once, at creation."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    # A list of changes.EVENT_TYPES words, or None: every type, those added later too.
    event_types: Mapped[list[str] | None] = mapped_column(JSON)
    # A list of resource ids whose subscription changes are sent, or None: every resource.
    resource_ids: Mapped[list[int] | None] = mapped_column(JSON)
    secret: Mapped[str] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # Why it was paused (by an admin, or by the delivery after it kept failing), and when.
    paused_reason: Mapped[str | None] = mapped_column(Text)
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The last answer in 2xx: an endpoint that has had none for longer than its deliveries'
    # whole retry schedule is the one that "keeps failing".
    last_delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (NEVER_REUSED,)


class WebhookDelivery(Model):
    """One change to send to one endpoint. It holds a reference, not the payload: the document
    is built at send time from the status event (or, for an erasure, the profile id), so
    erasure has nothing to scrub here and a delivery queued before it never sends the address.
    Its id is the ``webhook-id`` the receiver deduplicates by, so ids are never reused."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    # changes.event_type of the document, or "webhook.test".
    type: Mapped[str] = mapped_column(String(64))
    status_event_id: Mapped[int | None] = mapped_column(ForeignKey("status_events.id"))
    # The profile the change is about, kept as a bare number (no foreign key): deliveries of one
    # profile go out in order, the erasure's last, after the profile row is gone.
    profile_id: Mapped[int | None] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    # An erasure's time and who asked for it (an admin, or None: the customer).
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    actor: Mapped[str | None] = mapped_column(String(200))
    # pending, delivered or failed (its retries are over).
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)

    event: Mapped[StatusEvent | None] = relationship()

    __table_args__ = (
        # The claim: pending rows that are due.
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
        # Order per profile (an earlier undelivered one holds the later back), and the log.
        Index("ix_webhook_deliveries_order", "endpoint_id", "profile_id", "state", "id"),
        Index("ix_webhook_deliveries_log", "endpoint_id", "id"),
        NEVER_REUSED,
    )
