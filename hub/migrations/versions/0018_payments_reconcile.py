"""reserved for issue 12, part reconcile (refunds, query job, reconciliation)

A no-op until the part that owns this slot fills it: parallel branches never add two heads.

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30 10:05:00
"""

from collections.abc import Sequence

revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
