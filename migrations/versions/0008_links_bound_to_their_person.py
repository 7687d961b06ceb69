"""links bound to their person: a link key per profile, a nonce per signup, ids never reused

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 09:00:00

Every link names its profile by id AND by the profile's random link key, so a link of an erased
profile opens nothing even if its id came back; a confirmation link names its signup request by a
nonce stored on the subscriptions it asks for. On SQLite the tables whose ids appear in links are
rebuilt with AUTOINCREMENT, so that a deleted row's id is never handed out again (PostgreSQL's
sequences never do). Existing profiles get random keys, and are marked ``legacy_links``: the
unsubscribe links already sent to them carry no key and still unsubscribe (a mail provider's
one-click included), but open nothing else; their preference and confirmation links stop working,
because they cannot be told apart from links to a reused id.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

# The tables whose ids appear in links (tokens.py): profiles, resources, consent texts; and
# subscriptions, whose ids the import and the admin's forms name.
NEVER_REUSED = ('resources', 'profiles', 'subscriptions', 'consent_texts')
# SQLite's batch rebuild does not carry expression indexes over: dropped first, made again after.
NAME_PREFIX_INDEX = 'CREATE INDEX ix_profiles_name_prefix ON profiles (lower(name), id)'


def _on_sqlite():
    return op.get_bind().dialect.name == 'sqlite'


def upgrade():
    op.add_column('profiles', sa.Column('link_key', sa.String(length=32), nullable=True))
    op.add_column('subscriptions', sa.Column('confirm_nonce', sa.String(length=32), nullable=True))
    # The profiles already here received mail whose unsubscribe links carry no key; those links
    # keep unsubscribing them (and nobody after them: ids are never reused from now on).
    op.add_column(
        'profiles',
        sa.Column('legacy_links', sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.execute('UPDATE profiles SET legacy_links = true')
    if _on_sqlite():
        op.execute('UPDATE profiles SET link_key = lower(hex(randomblob(16)))')
        op.execute('DROP INDEX ix_profiles_name_prefix')
        for table in NEVER_REUSED:
            with op.batch_alter_table(
                table, recreate='always', table_kwargs={'sqlite_autoincrement': True}
            ) as batch_op:
                if table == 'profiles':
                    batch_op.alter_column(
                        'link_key', existing_type=sa.String(length=32), nullable=False
                    )
        op.execute(NAME_PREFIX_INDEX)
    else:
        # gen_random_uuid() is built in since PostgreSQL 13: 122 random bits as 32 hex digits.
        op.execute("UPDATE profiles SET link_key = replace(gen_random_uuid()::text, '-', '')")
        op.alter_column('profiles', 'link_key', existing_type=sa.String(length=32), nullable=False)


def downgrade():
    if _on_sqlite():
        op.execute('DROP INDEX ix_profiles_name_prefix')
        for table in NEVER_REUSED:
            with op.batch_alter_table(
                table, recreate='always', table_kwargs={'sqlite_autoincrement': False}
            ) as batch_op:
                if table == 'profiles':
                    batch_op.drop_column('link_key')
                    batch_op.drop_column('legacy_links')
                elif table == 'subscriptions':
                    batch_op.drop_column('confirm_nonce')
        op.execute(NAME_PREFIX_INDEX)
    else:
        op.drop_column('subscriptions', 'confirm_nonce')
        op.drop_column('profiles', 'link_key')
        op.drop_column('profiles', 'legacy_links')
