"""audit: keyed chain committing to the case row; checkpoints

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 21:50:00

Existing events cannot be re-sealed here: the key is not in the database (nor should a migration hold
it). They keep their unkeyed SHA-256 and `case_row` NULL; `hub audit verify` reports them as
"unkeyed" until an operator runs `hub audit reseal` once with HUB_AUDIT_KEY (docs/architecture.md).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('case_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            'case_row', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'),
            nullable=True,
        ))


def downgrade() -> None:
    with op.batch_alter_table('case_events', schema=None) as batch_op:
        batch_op.drop_column('case_row')
