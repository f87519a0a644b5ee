"""Alembic is the only way a schema is made: the migrated schema is exactly what the models say."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import TextClause, func, or_, select, text
from sqlalchemy.engine import Connection, Engine

from hub.models import Base


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []


# --- PostgreSQL: every look-up the write path and the jobs run has an index (migration 0020) ----------------

def _plan(connection: Connection, statement: Any, parameters: dict[str, Any] | None = None) -> str:
    """The plan PostgreSQL chooses when it avoids a sequential scan wherever an index can serve (a test database
    is too small for the planner to prefer an index by itself)."""
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
    if isinstance(statement, TextClause):
        return "\n".join(row[0] for row in connection.execute(text(f"EXPLAIN {statement.text}"), parameters or {}))
    compiled = statement.compile(dialect=connection.dialect)
    rows = connection.exec_driver_sql(f"EXPLAIN {compiled}", {**compiled.params, **(parameters or {})})
    return "\n".join(row[0] for row in rows)


def _look_ups() -> dict[str, tuple[Any, dict[str, Any] | None]]:
    from hub.cases.models import Case, CaseEvent
    from hub.outbox.relay import _UNSENT
    from hub.supervision.realtime import _DECISIONS
    from hub.verification.models import CaseVerification

    at = datetime(2030, 6, 3, 4, tzinfo=UTC)
    day, later = date(2030, 6, 3), date(2030, 6, 7)
    return {
        "ix_case_events_actor_id_occurred_at": (_DECISIONS, {
            "actor": ["officer-1", "officer-2"], "dept": [1, 2], "t0": [at, at], "t1": [at, at],
            "since": [at, at], "actions": ["grant", "deny", "complete"]}),
        "ix_outbox_unsent": (_UNSENT, {"batch": 500}),
        "ix_cases_parent_id": (select(Case.id).where(Case.parent_id == 1), None),
        "ix_cases_accepted_on": (select(func.count()).where(or_(
            Case.accepted_on.between(day, day), Case.accepted_on.between(later, later))), None),
        "ix_cases_completed_at": (select(func.count()).where(
            Case.completed_at >= at, Case.completed_at < at + timedelta(days=1)), None),
        "uq_case_events_case_id_seq": (select(CaseEvent.id).where(CaseEvent.case_id == 1).order_by(CaseEvent.seq),
                                       None),
        "uq_case_verifications_case_id_check_key": (
            select(CaseVerification.id).where(CaseVerification.case_id == 1), None),
    }


LOOK_UPS = ["ix_case_events_actor_id_occurred_at", "ix_outbox_unsent", "ix_cases_parent_id", "ix_cases_accepted_on",
            "ix_cases_completed_at", "uq_case_events_case_id_seq", "uq_case_verifications_case_id_check_key"]


@pytest.mark.parametrize("index", LOOK_UPS)
def test_on_postgresql_each_look_up_of_the_write_path_is_served_by_its_index(engine: Engine, index: str) -> None:
    """A person's decisions in a window (the backfilled-batch rule), the relay's unsent rows, a joint case's
    branches, the metrics' accepted and completed days, a case's events and checks: each reaches its rows through
    the index migration 0020 made, kept or narrowed (docs/performance-postgresql.md lists them all)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's plans")
    statement, parameters = _look_ups()[index]
    with engine.begin() as connection:
        plan = _plan(connection, statement, parameters)
    assert index in plan, plan
