"""indexes for the performance metrics: a period's cases by acceptance and completion, its ratings by time

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 05:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cases_accepted_on'), ['accepted_on'], unique=False)
        batch_op.create_index(batch_op.f('ix_cases_completed_at'), ['completed_at'], unique=False)
    with op.batch_alter_table('ratings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ratings_rated_at'), ['rated_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('ratings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ratings_rated_at'))
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cases_completed_at'))
        batch_op.drop_index(batch_op.f('ix_cases_accepted_on'))
