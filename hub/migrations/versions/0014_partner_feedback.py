"""partner feedback (issue 11, feedback part): what each partner was told about its rejected messages

One row per (partner, message id, outcome) in ``partner_rejections``: it stops a message sent again from
producing a second ``partner.rejected.v1`` event, and answers ``GET /api/v1/exchange/records/{message_id}``
for a message that never reached the inbox.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 06:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('partner_rejections',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('partner_code', sa.String(length=40), nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=True),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('routing_key', sa.String(length=255), nullable=False),
    sa.Column('category', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('errors', sa.JSON(), nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('received_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_partner_rejections')),
    sa.UniqueConstraint('partner_code', 'message_id', 'outcome',
                        name=op.f('uq_partner_rejections_partner_code_message_id_outcome'))
    )


def downgrade() -> None:
    op.drop_table('partner_rejections')
