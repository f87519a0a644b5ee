"""exchange identity: inbox deduplication per (source, message id)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 21:50:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The primary key (partner_code, message_id) leads with partner_code, so the old index on it goes.
    with op.batch_alter_table('inbox', schema=None, recreate='auto') as batch_op:
        batch_op.drop_index('ix_inbox_partner_code')
        batch_op.drop_constraint('pk_inbox', type_='primary')
        batch_op.create_primary_key('pk_inbox', ['partner_code', 'message_id'])


def downgrade() -> None:
    # Only possible while no message id is shared between two senders.
    with op.batch_alter_table('inbox', schema=None, recreate='auto') as batch_op:
        batch_op.drop_constraint('pk_inbox', type_='primary')
        batch_op.create_primary_key('pk_inbox', ['message_id'])
        batch_op.create_index('ix_inbox_partner_code', ['partner_code'], unique=False)
