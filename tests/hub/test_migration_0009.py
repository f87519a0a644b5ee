"""Migration 0009 brings item guides stored before material subjects existed to the catalogue's rule:
demo items take the seeded subjects (the marriage registration's ID cards stop being waived), and a
replaceable material of any other item that names no subject stops being replaceable."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import JSON, column, select, table, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine

from hub.catalog.models import Item
from hub.catalog.schemas import Guide
from hub.db import make_engine, make_session_factory, unit_of_work
from hub.migrate import alembic_config, upgrade
from hub.seed.service import seed_demo
from tests.conftest import START


@pytest.fixture
def fresh(backend: str, tmp_path: Path) -> Iterator[Engine]:
    """An empty database of the backend under test, apart from the suite's shared one."""
    if backend == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
        yield engine
        engine.dispose()
        return
    schema = f"m0009_{uuid.uuid4().hex[:8]}"
    engine = make_engine(os.environ["HUB_TEST_POSTGRES_URL"], connect_args={"options": f"-csearch_path={schema}"})
    with engine.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        yield engine
    finally:
        with engine.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


def old_guide(guide: dict[str, Any]) -> dict[str, Any]:
    """A guide as 0008 stored it: no subjects, and the marriage ID cards marked replaceable."""
    materials = [{k: v for k, v in m.items() if k != "subject"} for m in guide["materials"]]
    for m in materials:
        if m["key"] in ("id_cards", "staff_qualifications"):
            m["replaceable_by"] = "population"
    return {**guide, "materials": materials}


def downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def test_stored_guides_name_their_subjects_after_the_upgrade(fresh: Engine) -> None:
    # Seeded through today's models (they know every later column), then taken back to 0008's schema and
    # given guides as 0008 stored them.
    upgrade(fresh, "head")
    factory = make_session_factory(fresh)
    with unit_of_work(factory) as session:
        seed_demo(session, now=START)
    downgrade(fresh, "0008")
    items = table("items", column("id"), column("key"), column("guide", JSON().with_variant(JSONB(), "postgresql")))
    with fresh.begin() as connection:
        for item_id, key, guide in connection.execute(select(items.c.id, items.c.key, items.c.guide)).all():
            # not in the seed: its subjects are unknown
            new_key = "food-business-licence-local-variant" if key == "food-business-licence" else key
            connection.execute(items.update().where(items.c.id == item_id)
                               .values(key=new_key, guide=old_guide(guide)))

    upgrade(fresh, "head")

    with factory() as session:
        guides = {item.key: item.guide for item in session.scalars(select(Item))}
    for guide in guides.values():
        Guide.model_validate(guide)  # what the catalogue API reads back: must not fail
    marriage = {m["key"]: m for m in guides["marriage-registration"]["materials"]}
    assert marriage["id_cards"]["subject"] == "both_parties" and marriage["id_cards"]["replaceable_by"] is None
    physician = {m["key"]: m for m in guides["physician-practice-registration"]["materials"]}
    assert (physician["id_card"]["subject"], physician["id_card"]["replaceable_by"]) == ("applicant", "population")
    variant = {m["key"]: m for m in guides["food-business-licence-local-variant"]["materials"]}
    assert "subject" not in variant["business_licence"] and variant["business_licence"]["replaceable_by"] is None
