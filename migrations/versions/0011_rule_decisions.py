"""issue 14: the cause of each suppression-list change, the addresses an import suppressed

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 10:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    # Every row so far was a change by hand: `admin`.
    with op.batch_alter_table('suppression_events', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('cause', sa.String(length=32), server_default='admin', nullable=False)
        )
    with op.batch_alter_table('import_jobs', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('suppressed_addresses', sa.Integer(), server_default='0', nullable=False)
        )


def downgrade():
    with op.batch_alter_table('import_jobs', schema=None) as batch_op:
        batch_op.drop_column('suppressed_addresses')
    with op.batch_alter_table('suppression_events', schema=None) as batch_op:
        batch_op.drop_column('cause')
