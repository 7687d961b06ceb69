"""issue 13: the admin's profile list before a search, newest first, filtered by global status,
resource and subscription status: an index range in id order for each filter

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 10:00:00.000000

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    # Plain CREATE/DROP INDEX on both databases: a batch rebuild of profiles on SQLite would lose
    # AUTOINCREMENT (see 0008). The status index gains the id so that PostgreSQL reads one
    # status in id order (SQLite's indexes end in the rowid anyway).
    op.execute('DROP INDEX ix_profiles_global_status')
    op.create_index('ix_profiles_global_status', 'profiles', ['global_status', 'id'])
    op.create_index('ix_profiles_created', 'profiles', ['created_at', 'id'])
    op.create_index(
        'ix_subscriptions_resource_profile', 'subscriptions', ['resource_id', 'profile_id']
    )
    op.create_index(
        'ix_subscriptions_resource_status', 'subscriptions', ['resource_id', 'status', 'profile_id']
    )


def downgrade():
    op.drop_index('ix_subscriptions_resource_status', table_name='subscriptions')
    op.drop_index('ix_subscriptions_resource_profile', table_name='subscriptions')
    op.drop_index('ix_profiles_created', table_name='profiles')
    op.execute('DROP INDEX ix_profiles_global_status')
    op.create_index('ix_profiles_global_status', 'profiles', ['global_status'])
