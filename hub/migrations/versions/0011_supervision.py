"""electronic supervision: alerts (one per case, rule and level) with their accountability workflow, applicant
ratings (好差评) with follow-ups, colour thresholds per region, and on cases the time-limit colour with the next
day it may change (the index the scanner reads),
its working days used and whether it kept its promise once its clock stops (what the metrics aggregate)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 04:12:23.180142
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import hub.db

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('supervision_thresholds',
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('yellow_used_percent', sa.Integer(), nullable=False),
    sa.Column('yellow_days_left', sa.Integer(), nullable=False),
    sa.Column('red_escalation_days', sa.Integer(), nullable=False),
    sa.Column('updated_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('region_code', name=op.f('pk_supervision_thresholds'))
    )
    op.create_table('alerts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('rule', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('level', sa.String(length=8), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('department_id', sa.Integer(), nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('supervisor_region_code', sa.String(length=6), nullable=False),
    sa.Column('escalations', sa.Integer(), server_default='0', nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=False),
    sa.Column('raised_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('raised_on', sa.Date(), nullable=False),
    sa.Column('closed_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('explanation', sa.Text(), nullable=True),
    sa.Column('correction', sa.Text(), nullable=True),
    sa.Column('explained_by', sa.String(length=64), nullable=True),
    sa.Column('explained_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ruling', sa.String(length=16), nullable=True),
    sa.Column('ruled_by', sa.String(length=64), nullable=True),
    sa.Column('ruled_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('accountability', sa.JSON(), nullable=True),
    sa.Column('history', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_alerts_case_id_cases')),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_alerts_department_id_departments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alerts')),
    sa.UniqueConstraint('case_id', 'rule', 'level', name=op.f('uq_alerts_case_id_rule_level'))
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alerts_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_department_id'), ['department_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_raised_at'), ['raised_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_region_code'), ['region_code'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_rule'), ['rule'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_supervisor_region_code'), ['supervisor_region_code'], unique=False)

    op.create_table('ratings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('service_event', sa.String(length=32), nullable=False),
    sa.Column('level', sa.Integer(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('rated_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('department_id', sa.Integer(), nullable=False),
    sa.Column('region_code', sa.String(length=6), nullable=False),
    sa.Column('follow_up_status', sa.String(length=16), nullable=True),
    sa.Column('follow_up_due_on', sa.Date(), nullable=True),
    sa.Column('follow_up_note', sa.Text(), nullable=True),
    sa.Column('followed_up_by', sa.String(length=64), nullable=True),
    sa.Column('followed_up_at', hub.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_ratings_case_id_cases')),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'], name=op.f('fk_ratings_department_id_departments')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ratings')),
    sa.UniqueConstraint('case_id', 'service_event', name=op.f('uq_ratings_case_id_service_event'))
    )
    with op.batch_alter_table('ratings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ratings_case_id'), ['case_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ratings_department_id'), ['department_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_ratings_follow_up_status'), ['follow_up_status'], unique=False)
        batch_op.create_index(batch_op.f('ix_ratings_region_code'), ['region_code'], unique=False)

    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('colour', sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column('colour_due_on', sa.Date(), nullable=True))
        batch_op.add_column(sa.Column('working_days_used', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('on_time', sa.Boolean(), nullable=True))
        batch_op.create_index(batch_op.f('ix_cases_colour_due_on'), ['colour_due_on'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cases_colour_due_on'))
        batch_op.drop_column('on_time')
        batch_op.drop_column('working_days_used')
        batch_op.drop_column('colour_due_on')
        batch_op.drop_column('colour')

    with op.batch_alter_table('ratings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ratings_region_code'))
        batch_op.drop_index(batch_op.f('ix_ratings_follow_up_status'))
        batch_op.drop_index(batch_op.f('ix_ratings_department_id'))
        batch_op.drop_index(batch_op.f('ix_ratings_case_id'))

    op.drop_table('ratings')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alerts_supervisor_region_code'))
        batch_op.drop_index(batch_op.f('ix_alerts_status'))
        batch_op.drop_index(batch_op.f('ix_alerts_rule'))
        batch_op.drop_index(batch_op.f('ix_alerts_region_code'))
        batch_op.drop_index(batch_op.f('ix_alerts_raised_at'))
        batch_op.drop_index(batch_op.f('ix_alerts_department_id'))
        batch_op.drop_index(batch_op.f('ix_alerts_case_id'))

    op.drop_table('alerts')
    op.drop_table('supervision_thresholds')
