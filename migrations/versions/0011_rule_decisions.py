"""issue 14: the cause of each suppression-list change, the addresses an import suppressed, and
the admin search's keys folded by Python (the same rows on SQLite and PostgreSQL)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 10:00:00.000000

"""
import unicodedata

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

# Profiles whose search keys are filled per statement: memory stays flat at any size.
FILL_CHUNK = 10_000


def _search_key(text):
    # app.addresses.search_key as it is at this revision (a migration must not change when the
    # app's code does).
    if text is None:
        return None
    return unicodedata.normalize('NFC', unicodedata.normalize('NFC', text).casefold())


def _on_postgres():
    return op.get_bind().dialect.name == 'postgresql'


def _fill_search_keys():
    connection = op.get_bind()
    select = sa.text('SELECT id, email, name FROM profiles WHERE id > :last ORDER BY id LIMIT :n')
    update = sa.text('UPDATE profiles SET email_key = :email_key, name_key = :name_key WHERE id = :id')
    last = 0
    while True:
        rows = connection.execute(select, {'last': last, 'n': FILL_CHUNK}).all()
        if not rows:
            return
        connection.execute(
            update,
            [
                {'id': row.id, 'email_key': _search_key(row.email), 'name_key': _search_key(row.name)}
                for row in rows
            ],
        )
        last = rows[-1].id


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

    # The search keys: plain ADD COLUMN on both databases (no SQLite table rebuild, which would
    # lose AUTOINCREMENT and the expression index, see 0008), filled, then indexed in byte order.
    op.add_column('profiles', sa.Column('email_key', sa.Text(), nullable=True))
    op.add_column('profiles', sa.Column('name_key', sa.Text(), nullable=True))
    _fill_search_keys()
    op.execute('DROP INDEX ix_profiles_name_prefix')
    if _on_postgres():
        op.execute('DROP INDEX ix_profiles_email_prefix')
        op.execute('CREATE INDEX ix_profiles_email_key ON profiles (email_key COLLATE "C", id)')
        op.execute('CREATE INDEX ix_profiles_name_key ON profiles (name_key COLLATE "C", id)')
    else:
        op.execute('CREATE INDEX ix_profiles_email_key ON profiles (email_key, id)')
        op.execute('CREATE INDEX ix_profiles_name_key ON profiles (name_key, id)')


def downgrade():
    op.execute('DROP INDEX ix_profiles_name_key')
    op.execute('DROP INDEX ix_profiles_email_key')
    # SQLite 3.35 and later drop a column in place, without the rebuild batch mode would do.
    op.execute('ALTER TABLE profiles DROP COLUMN name_key')
    op.execute('ALTER TABLE profiles DROP COLUMN email_key')
    if _on_postgres():
        op.execute('CREATE INDEX ix_profiles_name_prefix ON profiles (lower(name) COLLATE "C", id)')
        op.execute('CREATE INDEX ix_profiles_email_prefix ON profiles (lower(email) COLLATE "C", id)')
    else:
        op.execute('CREATE INDEX ix_profiles_name_prefix ON profiles (lower(name), id)')
    with op.batch_alter_table('import_jobs', schema=None) as batch_op:
        batch_op.drop_column('suppressed_addresses')
    with op.batch_alter_table('suppression_events', schema=None) as batch_op:
        batch_op.drop_column('cause')
