"""payments, part reconcile (issue 12): when the query job asks about an open order next
(payment_orders.next_query_at, indexed) and an index for the daily reconciliation (gateway, paid_at)

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30 10:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('payment_orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('next_query_at', hub.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_payment_orders_next_query_at'), ['next_query_at'], unique=False)
        batch_op.create_index('ix_payment_orders_gateway_paid_at', ['gateway', 'paid_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('payment_orders', schema=None) as batch_op:
        batch_op.drop_index('ix_payment_orders_gateway_paid_at')
        batch_op.drop_index(batch_op.f('ix_payment_orders_next_query_at'))
        batch_op.drop_column('next_query_at')
