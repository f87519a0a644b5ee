"""manual verification of applicants a registry cannot know

Also: case_verifications.answer (the registry's one-word answer about the subject), and the stored
item guides brought to the catalogue's new rule — every material names its ``subject``, and only a
material about the applicant (or the applicant enterprise's legal representative) may be replaced by
a registry check. Items of the demo catalogue take the subjects of hub/seed/data/items.json; a
replaceable material of any other item whose subject is unknown stops being replaceable (it is asked
for again) rather than being waived for the wrong person.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 21:50:00
"""

import json
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import hub.db

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GUIDE = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')
ITEMS = sa.table('items', sa.column('id', sa.Integer()), sa.column('key', sa.String()), sa.column('guide', GUIDE))
REPLACEABLE_FOR = {"applicant": {"population", "enterprise", "tax", "organisation"},
                   "legal_representative": {"population"}}


def upgrade() -> None:
    with op.batch_alter_table('case_verifications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('answer', sa.String(length=24), nullable=True))

    op.create_table('manual_verifications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('case_id', sa.Integer(), nullable=False),
    sa.Column('verification_id', sa.Integer(), nullable=False),
    sa.Column('check_key', sa.String(length=48), nullable=False),
    sa.Column('registry_outcome', sa.String(length=16), nullable=False),
    sa.Column('registry_answer', sa.String(length=24), nullable=True),
    sa.Column('officer', sa.String(length=64), nullable=False),
    sa.Column('officer_name', sa.String(length=64), nullable=False),
    sa.Column('department_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('recorded_at', hub.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('event_seq', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['case_id'], ['cases.id'], name=op.f('fk_manual_verifications_case_id_cases')),
    sa.ForeignKeyConstraint(['department_id'], ['departments.id'],
                            name=op.f('fk_manual_verifications_department_id_departments')),
    sa.ForeignKeyConstraint(['verification_id'], ['case_verifications.id'],
                            name=op.f('fk_manual_verifications_verification_id_case_verifications')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_manual_verifications')),
    sa.UniqueConstraint('verification_id', name=op.f('uq_manual_verifications_verification_id'))
    )
    with op.batch_alter_table('manual_verifications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_manual_verifications_case_id'), ['case_id'], unique=False)

    _guides_name_their_subjects()


def _guides_name_their_subjects() -> None:
    seeded = {row["key"]: {m["key"]: m for m in row["materials"]}
              for row in json.loads((files("hub.seed") / "data" / "items.json").read_text(encoding="utf-8"))}
    connection = op.get_bind()
    for item_id, key, guide in connection.execute(sa.select(ITEMS.c.id, ITEMS.c.key, ITEMS.c.guide)).all():
        if isinstance(guide, str):
            guide = json.loads(guide)
        changed = [_material(m, seeded.get(key, {}).get(m.get("key"))) for m in guide.get("materials", [])]
        if changed != guide.get("materials", []):
            connection.execute(sa.update(ITEMS).where(ITEMS.c.id == item_id)
                               .values(guide={**guide, "materials": changed}))


def _material(material: dict[str, Any], seeded: dict[str, Any] | None) -> dict[str, Any]:
    if seeded is not None and "subject" not in material:
        return {**material, "subject": seeded["subject"], "replaceable_by": seeded["replaceable_by"]}
    registry, subject = material.get("replaceable_by"), material.get("subject")
    if registry and registry not in REPLACEABLE_FOR.get(subject or "", set()):
        return {**material, "replaceable_by": None}
    return material


def downgrade() -> None:
    with op.batch_alter_table('manual_verifications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_manual_verifications_case_id'))

    op.drop_table('manual_verifications')
    with op.batch_alter_table('case_verifications', schema=None) as batch_op:
        batch_op.drop_column('answer')
