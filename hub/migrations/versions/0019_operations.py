"""reserved for issue 13, part ops (migrations once, readiness, deliveries never silent)

A no-op until the part that owns this slot fills it: parallel branches never add two heads.

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30 10:05:00
"""

from collections.abc import Sequence

revision: str = '0019'
down_revision: str | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
