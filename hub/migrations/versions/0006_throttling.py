"""abuse limits: login and query-code attempts, WS-Security nonces

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 21:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('attempt_counters',
    sa.Column('scope', sa.String(length=32), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('window_start', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('window_end', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('scope', 'key', name=op.f('pk_attempt_counters'))
    )
    with op.batch_alter_table('attempt_counters', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attempt_counters_window_end'), ['window_end'], unique=False)

    op.create_table('wsse_nonces',
    sa.Column('username', sa.String(length=128), nullable=False),
    sa.Column('nonce', sa.String(length=128), nullable=False),
    sa.Column('expires_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('username', 'nonce', name=op.f('pk_wsse_nonces'))
    )
    with op.batch_alter_table('wsse_nonces', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_wsse_nonces_expires_at'), ['expires_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('wsse_nonces', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_wsse_nonces_expires_at'))

    op.drop_table('wsse_nonces')
    with op.batch_alter_table('attempt_counters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attempt_counters_window_end'))

    op.drop_table('attempt_counters')
