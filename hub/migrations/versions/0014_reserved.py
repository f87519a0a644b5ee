"""reserved slot: partner feedback (issue 11, feedback part) — a no-op until that part fills it

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30 06:45:00
"""

from collections.abc import Sequence

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
