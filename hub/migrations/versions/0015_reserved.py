"""reserved slot: supervision metrics (issue 10, metrics part) — a no-op until that part fills it

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 06:45:00
"""

from collections.abc import Sequence

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
