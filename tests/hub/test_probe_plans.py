"""The write path's look-ups by a batch's keys reach their rows by index probes whatever the tables' statistics.

A partner batch looks up its inbox pairs, its cases by (partner, external id), their pending events, their steps,
the applicants' withdrawals and (for each event found of a person's decisions) the event's case. Written as
``IN (SELECT … FROM unnest(…))`` or as joins, their plans followed the tables' statistics: on tables growing faster
than autovacuum analyses them (a fresh system, a bulk load, every benchmark round) the planner hashed the batch's
keys against a scan of the whole table, a cost growing with the table (docs/performance-postgres-side.md). Each is
now a probe per key (a LATERAL or scalar subquery). The tests make a hash join look cheaper to the planner
(``enable_nestloop = off``, as stale statistics do) and check each look-up still probes
its index with the batch's key (an ``Index Cond`` on the key, not a scan of the whole index)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.engine import Connection, Engine


def _explained(connection: Connection, statement: Any, parameters: dict[str, Any]) -> str:
    connection.exec_driver_sql("SET LOCAL enable_nestloop = off")
    connection.exec_driver_sql("SET LOCAL enable_seqscan = off")  # a test database is too small to prefer an index
    if isinstance(statement, str):  # the driver's own text (``%(name)s`` parameters)
        rows = connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
    else:
        compiled = statement.compile(dialect=connection.dialect)
        rows = connection.exec_driver_sql(f"EXPLAIN {compiled}", {**compiled.params, **parameters})
    return "\n".join(row[0] for row in rows)


def _look_ups() -> dict[str, tuple[Any, dict[str, Any], str, str]]:
    """Per look-up: the statement, its parameters, the index it must probe and the key its probe is given."""
    from hub.exchange.service import _cached_pairs_statement
    from hub.supervision.realtime import _DECISIONS_SQL, _STEPS_SQL, _WITHDRAWALS_SQL

    at = datetime(2030, 6, 3, 4, tzinfo=UTC).isoformat()
    partners = {"first": ["shenyang", "dalian"], "second": ["X-1", "X-2"]}
    return {
        "inbox": (_cached_pairs_statement("inbox"),
                  {"first": ["shenyang", "dalian"], "second": [uuid.uuid4(), uuid.uuid4()]}, "pk_inbox", "pairs.a"),
        "cases": (_cached_pairs_statement("cases"), partners, "uq_cases_origin_partner_external_id", "pairs.a"),
        "held": (_cached_pairs_statement("held"), partners, "uq_pending_events_partner_code_external_id_seq",
                 "pairs.a"),
        "steps": (_STEPS_SQL, {"ids": [1, 2, 3]}, "uq_case_events_case_id_seq", "ids.id"),
        "withdrawals": (_WITHDRAWALS_SQL, {"applicant": ["110101199001011234"], "item": [1], "since": [at],
                                           "until": [at], "action": "withdraw"},
                        "ix_cases_applicant_id_number", "q.applicant"),
        "decisions": (_DECISIONS_SQL, {"actor": ["officer-1"], "dept": [1], "t0": [at], "t1": [at], "since": [at],
                                       "actions": ["grant", "deny", "complete"]}, "pk_cases", "e.case_id"),
    }


@pytest.mark.parametrize("look_up", ["inbox", "cases", "held", "steps", "withdrawals", "decisions"])
def test_on_postgresql_a_batch_look_up_probes_its_index_per_key_even_when_a_hash_join_looks_cheaper(
        engine: Engine, look_up: str) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's plans (SQLite runs its own statements)")
    statement, parameters, index, key = _look_ups()[look_up]
    with engine.begin() as connection:
        plan = _explained(connection, statement, parameters)
    probe = [line for line in plan.splitlines() if index in line]
    assert probe, plan
    conditions = plan.split(probe[0], 1)[1].splitlines()[1:3]  # the probe's own lines under it
    assert any("Index Cond" in line and key in line for line in conditions), plan
    assert "Semi Join" not in plan, plan
