"""reserved slot: partner credentials (issue 11, lifecycle part) — a no-op until that part fills it

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 06:45:00
"""

from collections.abc import Sequence

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
