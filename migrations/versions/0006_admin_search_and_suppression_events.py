"""admin profile search indexes and the suppression list's history

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 10:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('suppression_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('email_hash', sa.String(length=64), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=True),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('actor', sa.String(length=200), nullable=True),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_suppression_events'))
    )
    with op.batch_alter_table('suppression_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_suppression_events_email_hash'), ['email_hash'], unique=False)

    # The admin's prefix search (queries.search_profiles, see models.py): byte-order ranges of
    # the lower-cased name and email with the id for ties; "C" on PostgreSQL whatever the
    # database's collation; SQLite reads the email's range in its unique index.
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('CREATE INDEX ix_profiles_name_prefix ON profiles (lower(name) COLLATE "C", id)')
        op.execute('CREATE INDEX ix_profiles_email_prefix ON profiles (lower(email) COLLATE "C", id)')
    else:
        op.execute('CREATE INDEX ix_profiles_name_prefix ON profiles (lower(name), id)')


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP INDEX ix_profiles_email_prefix')
    op.execute('DROP INDEX ix_profiles_name_prefix')
    with op.batch_alter_table('suppression_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_suppression_events_email_hash'))

    op.drop_table('suppression_events')
