"""verification: registry checks of a case's applicant, and the personal-data access log

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 18:18:43.754275
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('registry_access_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('occurred_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('actor_kind', sa.String(length=16), nullable=False),
    sa.Column('tracking_no', sa.String(length=21), nullable=True),
    sa.Column('region_code', sa.String(length=6), nullable=True),
    sa.Column('purpose', sa.String(length=128), nullable=False),
    sa.Column('registry', sa.String(length=16), nullable=False),
    sa.Column('operation', sa.String(length=32), nullable=False),
    sa.Column('subject_kind', sa.String(length=24), nullable=False),
    sa.Column('subject_hash', sa.String(length=64), nullable=False),
    sa.Column('outcome', sa.String(length=24), nullable=False),
    sa.Column('message_id', sa.String(length=36), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_registry_access_log'))
    )
    with op.batch_alter_table('registry_access_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_registry_access_log_actor'), ['actor'], unique=False)
        batch_op.create_index(batch_op.f('ix_registry_access_log_occurred_at'), ['occurred_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_registry_access_log_region_code'), ['region_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_registry_access_log_registry'), ['registry'], unique=False)
        batch_op.create_index(batch_op.f('ix_registry_access_log_subject_hash'), ['subject_hash'], unique=False)
        batch_op.create_index(batch_op.f('ix_registry_access_log_tracking_no'), ['tracking_no'], unique=False)

    op.create_table('case_verifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('check_key', sa.String(length=48), nullable=False),
    sa.Column('registry', sa.String(length=16), nullable=False),
    sa.Column('subject', sa.String(length=32), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('detail', sa.String(length=255), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.String(length=36), nullable=True),
    sa.Column('created_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('checked_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_case_verifications_case_id_cases')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_case_verifications')),
    sa.UniqueConstraint('case_id', 'check_key', name=op.f('uq_case_verifications_case_id_check_key'))
    )
    with op.batch_alter_table('case_verifications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_case_verifications_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_case_verifications_outcome'), ['outcome'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('case_verifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_case_verifications_outcome'))
        batch_op.drop_index(batch_op.f('ix_case_verifications_case_id'))

    op.drop_table('case_verifications')
    with op.batch_alter_table('registry_access_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_registry_access_log_tracking_no'))
        batch_op.drop_index(batch_op.f('ix_registry_access_log_subject_hash'))
        batch_op.drop_index(batch_op.f('ix_registry_access_log_registry'))
        batch_op.drop_index(batch_op.f('ix_registry_access_log_region_code'))
        batch_op.drop_index(batch_op.f('ix_registry_access_log_occurred_at'))
        batch_op.drop_index(batch_op.f('ix_registry_access_log_actor'))

    op.drop_table('registry_access_log')
