"""payments (issue 12): case fees, payment orders and their history, the notification inbox, refunds and the
daily reconciliation reports (hub/payments/models.py, docs/payments.md)

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 09:49:17.252403
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('payment_notifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('gateway', sa.String(length=16), nullable=False),
    sa.Column('notify_id', sa.String(length=128), nullable=False),
    sa.Column('order_no', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('received_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_notifications')),
    sa.UniqueConstraint('gateway', 'notify_id', name=op.f('uq_payment_notifications_gateway_notify_id'))
    )
    with op.batch_alter_table('payment_notifications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payment_notifications_order_no'), ['order_no'], unique=False)

    op.create_table('reconciliation_reports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('gateway', sa.String(length=16), nullable=False),
    sa.Column('business_date', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.Column('differences', sa.JSON(), nullable=False),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reconciliation_reports')),
    sa.UniqueConstraint('gateway', 'business_date', name=op.f('uq_reconciliation_reports_gateway_business_date'))
    )
    op.create_table('case_fees',
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('amount_fen', sa.Integer(), nullable=False),
    sa.Column('due', sa.String(length=24), nullable=False),
    sa.Column('basis', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('exemption', sa.Text(), nullable=True),
    sa.Column('waived_reason', sa.Text(), nullable=True),
    sa.Column('waived_by', sa.String(length=64), nullable=True),
    sa.Column('waived_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('paid_fen', sa.Integer(), nullable=False),
    sa.Column('reported', sa.JSON(), nullable=True),
    sa.Column('assessed_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_fees_case_id_cases')),
    sa.PrimaryKeyConstraint('case_id', name=op.f('pk_case_fees'))
    )
    with op.batch_alter_table('case_fees', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_fees_status'), ['status'], unique=False)

    op.create_table('payment_orders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_no', sa.String(length=32), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('gateway', sa.String(length=16), nullable=False),
    sa.Column('amount_fen', sa.Integer(), nullable=False),
    sa.Column('refunded_fen', sa.Integer(), nullable=False),
    sa.Column('subject', sa.String(length=128), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('gateway_trade_no', sa.String(length=64), nullable=True),
    sa.Column('checkout', sa.JSON(), nullable=True),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('paid_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('notified_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_queried_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('query_attempts', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_payment_orders_case_id_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_orders')),
    sa.UniqueConstraint('order_no', name=op.f('uq_payment_orders_order_no'))
    )
    with op.batch_alter_table('payment_orders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payment_orders_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payment_orders_state'), ['state'], unique=False)

    op.create_table('payment_order_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('from_state', sa.String(length=16), nullable=True),
    sa.Column('to_state', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('occurred_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['order_id'], ['payment_orders.id'], name=op.f('fk_payment_order_events_order_id_payment_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_order_events'))
    )
    with op.batch_alter_table('payment_order_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payment_order_events_order_id'), ['order_id'], unique=False)

    op.create_table('payment_refunds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('refund_no', sa.String(length=64), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('amount_fen', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('gateway_refund_no', sa.String(length=64), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('next_attempt_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('requested_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('completed_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['order_id'], ['payment_orders.id'], name=op.f('fk_payment_refunds_order_id_payment_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_refunds')),
    sa.UniqueConstraint('refund_no', name=op.f('uq_payment_refunds_refund_no'))
    )
    with op.batch_alter_table('payment_refunds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payment_refunds_order_id'), ['order_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_payment_refunds_state'), ['state'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('payment_refunds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payment_refunds_state'))
        batch_op.drop_index(batch_op.f('ix_payment_refunds_order_id'))

    op.drop_table('payment_refunds')
    with op.batch_alter_table('payment_order_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payment_order_events_order_id'))

    op.drop_table('payment_order_events')
    with op.batch_alter_table('payment_orders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payment_orders_state'))
        batch_op.drop_index(batch_op.f('ix_payment_orders_case_id'))

    op.drop_table('payment_orders')
    with op.batch_alter_table('case_fees', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_fees_status'))

    op.drop_table('case_fees')
    op.drop_table('reconciliation_reports')
    with op.batch_alter_table('payment_notifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payment_notifications_order_no'))

    op.drop_table('payment_notifications')
