"""issue 15: the change feed that never skips: each status event's place in the feed (the
writing transaction's id on PostgreSQL, by a trigger), and erasures as feed entries

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29 18:00:00.000000

"""

import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

# As in app/models.py at this revision (a migration keeps its own copy: the models move on).
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


def upgrade():
    # A constant default: the events already there read 0 (placed by id, before every later
    # one) without rewriting the table on either database, and SQLite can add it in place (a
    # batch rebuild would lose nothing here, but costs a copy of the largest table).
    op.add_column(
        "status_events",
        sa.Column("feed_xid", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.create_index("ix_status_events_feed", "status_events", ["feed_xid", "id"])
    # The trigger reads the place of the profile's last event for each new one: the profile's
    # index gains the place, so that read is one index entry (app/models.py says why).
    op.drop_index("ix_status_events_profile_id", table_name="status_events")
    op.create_index("ix_status_events_profile_feed", "status_events", ["profile_id", "feed_xid"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FEED_XID_FUNCTION)
        op.execute(FEED_XID_TRIGGER)
    op.create_table(
        "erasures",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("profile_id", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("feed_xid", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("after_event", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_erasures_feed", "erasures", ["feed_xid", "after_event", "id"])


def downgrade():
    op.drop_index("ix_erasures_feed", table_name="erasures")
    op.drop_table("erasures")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER status_events_feed_xid ON status_events")
        op.execute("DROP FUNCTION optin_status_event_feed_xid()")
    op.drop_index("ix_status_events_profile_feed", table_name="status_events")
    op.create_index("ix_status_events_profile_id", "status_events", ["profile_id"])
    op.drop_index("ix_status_events_feed", table_name="status_events")
    with op.batch_alter_table("status_events") as batch:
        batch.drop_column("feed_xid")
