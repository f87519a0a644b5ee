"""partner credentials (issue 11, lifecycle): each partner's RabbitMQ user and password hash, rotation and
disabling times

The secret a partner holds stays hashed in ``secret_hash`` (argon2, REST); ``amqp_password_hash`` keeps the
same secret in RabbitMQ's sha256 format so `hub partners sync` can re-create the partner's user without it.
Rows from before this revision have neither ``amqp_username`` nor ``amqp_password_hash``: `hub partners sync`
reports them and `hub partners rotate CODE` gives them a secret of their own.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 06:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('partners', schema=None) as batch_op:
        batch_op.add_column(sa.Column('amqp_username', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('amqp_password_hash', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('secret_rotated_at', hub.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('disabled_at', hub.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_partners_amqp_username'), ['amqp_username'])


def downgrade() -> None:
    with op.batch_alter_table('partners', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_partners_amqp_username'), type_='unique')
        batch_op.drop_column('disabled_at')
        batch_op.drop_column('secret_rotated_at')
        batch_op.drop_column('amqp_password_hash')
        batch_op.drop_column('amqp_username')
