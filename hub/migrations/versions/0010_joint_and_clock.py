"""joint approval and the law's clock

cases: ``branch`` (the branch name of a joint case's child, from its definition's parallel block),
``received_on`` (the working day an application counts as received: outside working hours, the next one),
``extension_days`` (Art. 42's one extension, in working days), ``suspensions`` (every clock stop —
supplement notices and Art. 45 special procedures — with kind, reason, declared length, start and end, so a
deadline can be recomputed when a holiday notice is loaded), ``receiving_region_code`` and
``receiving_department_id`` (the window that registered a cross-region 通办 application).
items: ``workflow_id`` (the versioned definition new cases of the item start with).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 03:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('branch', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('received_on', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('extension_days', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('suspensions', sa.JSON(), server_default='[]', nullable=False))
        batch_op.add_column(sa.Column('receiving_region_code', sa.String(length=6), nullable=True))
        batch_op.add_column(sa.Column('receiving_department_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_cases_receiving_department_id_departments'), 'departments',
                                    ['receiving_department_id'], ['id'])
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.add_column(sa.Column('workflow_id', sa.String(length=64), server_default='standard.v1',
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('items', schema=None) as batch_op:
        batch_op.drop_column('workflow_id')
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_cases_receiving_department_id_departments'), type_='foreignkey')
        for column in ('receiving_department_id', 'receiving_region_code', 'suspensions', 'extension_days',
                       'received_on', 'branch'):
            batch_op.drop_column(column)
