"""import rejections: the address's hash, so that erasure finds them

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27 09:00:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('import_rejections', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_hash', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_import_rejections_email_hash'), ['email_hash'], unique=False)

    # The rejections written before: hashed the way the import hashes them now, so that erasing
    # one of those addresses finds its rows too.
    from app.services.imports import rejection_hash

    rejections = sa.table(
        'import_rejections',
        sa.column('id', sa.BigInteger),
        sa.column('email', sa.String),
        sa.column('email_hash', sa.String),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(rejections.c.id, rejections.c.email).where(rejections.c.email.is_not(None))
    ).all()
    for row_id, email in rows:
        hashed = rejection_hash(email)
        if hashed is not None:
            connection.execute(
                rejections.update().where(rejections.c.id == row_id).values(email_hash=hashed)
            )


def downgrade():
    with op.batch_alter_table('import_rejections', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_import_rejections_email_hash'))
        batch_op.drop_column('email_hash')
