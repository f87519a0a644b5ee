"""reserved for issue 12, part fees (fee rules on items, waivers, partner-reported payment status)

A no-op until the part that owns this slot fills it: parallel branches never add two heads.

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30 10:05:00
"""

from collections.abc import Sequence

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
