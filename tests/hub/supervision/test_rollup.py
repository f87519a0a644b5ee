"""The performance metrics' daily roll-up (hub/supervision/rollup.py, migration 0015), checked from the outside:
the worker's job rolls the closed days up, and the metrics over HTTP stay exactly the hand-computed figures of
tests/hub/supervision/test_metrics.py — on the rolled-up days, across the watermark, and after writes that change
a rolled-up day by any path (plain SQL here: the trigger on cases marks the day, not the service code).

Every test starts and ends with no roll-up (``rollup.reset``), so the other modules read the cases as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from adapters.amqp import InProcessBus
from hub.cases.models import Case
from hub.db import unit_of_work
from hub.settings import Settings
from hub.supervision import rollup
from hub.supervision.models import MetricsDaily, MetricsDirtyDay, MetricsRollup
from hub.worker import Worker
from tests.conftest import Officers
from tests.hub.supervision.test_metrics import (  # noqa: F401  (dataset: the hand-computed June 2030 cases)
    BY_DEPARTMENT,
    CITY_SUPERVISOR,
    CITY_TOTAL,
    JUNE,
    PROVINCE_SUPERVISOR,
    TRACKING_PREFIX,
    dataset,
    figures,
)

GROUPS = ("none", "department", "region", "item", "channel")


def china_noon(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=4)  # 12:00 China time


@pytest.fixture
def june(request: pytest.FixtureRequest) -> dict[str, int]:
    """test_metrics' hand-computed cases of June 2030 (their ids by name)."""
    found: dict[str, int] = request.getfixturevalue("dataset")
    return found


@pytest.fixture
def no_rollup(session_factory: sessionmaker[Session]) -> Iterator[sessionmaker[Session]]:
    with unit_of_work(session_factory) as session:
        rollup.reset(session)
    yield session_factory
    with unit_of_work(session_factory) as session:
        rollup.reset(session)


def roll_up_on(settings: Settings, factory: sessionmaker[Session], day: date) -> int:
    """The worker's metrics job on ``day`` (its clock at noon China time), run as its loop runs a busy job:
    again at once until it comes back idle. Returns the calls that found work."""
    from hub.clock import FixedClock

    worker = Worker(settings=settings.model_copy(update={"supervision_metrics_rollup_days": 366}),
                    factory=factory, clock=FixedClock(china_noon(day)), bus=InProcessBus(user="hub"),
                    consume_inbound=False)
    try:
        calls = 0
        while worker.roll_up_metrics():
            calls += 1
        return calls
    finally:
        worker.stop(timeout=5)


def metrics(client: TestClient, officers: Officers, who: str = CITY_SUPERVISOR, **params: Any) -> Any:
    response = client.get("/api/v1/supervision/metrics", params={**JUNE, **params}, headers=officers.headers(who))
    assert response.status_code == 200, response.text
    return response.json()


def state(factory: sessionmaker[Session]) -> tuple[date | None, list[date]]:
    with factory() as session:
        watermark = session.scalar(select(MetricsRollup.rolled_until))
        dirty = list(session.scalars(select(MetricsDirtyDay.day).distinct().order_by(MetricsDirtyDay.day)))
    return watermark, dirty


def reports(client: TestClient, officers: Officers, periods: list[dict[str, str]]) -> list[Any]:
    """The province's reports of every grouping over each period: what must not change with the roll-up."""
    return [metrics(client, officers, PROVINCE_SUPERVISOR, group_by=group, **period)
            for period in periods for group in GROUPS]


def test_the_rolled_up_days_give_the_hand_computed_figures(client: TestClient, officers: Officers,
                                                           settings: Settings, no_rollup: Any, june: Any) -> None:
    assert roll_up_on(settings, no_rollup, date(2030, 7, 15)) > 0
    watermark, dirty = state(no_rollup)
    assert watermark == date(2030, 7, 14)  # the day before the worker's today: today is never rolled up
    assert dirty == []
    with no_rollup() as session:
        june_rows = session.scalars(select(MetricsDaily).where(
            MetricsDaily.day.between(date(2030, 6, 1), date(2030, 6, 30)))).all()
        assert sum(row.received for row in june_rows) >= CITY_TOTAL["received"]
    total = metrics(client, officers)
    assert figures(total["total"], *CITY_TOTAL) == CITY_TOTAL
    by_department = {row["key"]: figures(row, *CITY_TOTAL)
                     for row in metrics(client, officers, group_by="department")["rows"]}
    assert by_department == BY_DEPARTMENT


def test_a_period_across_the_watermark_reads_the_rest_from_the_cases(client: TestClient, officers: Officers,
                                                                    settings: Settings, no_rollup: Any,
                                                                    june: Any) -> None:
    periods = [JUNE, {"from": "2030-05-20", "to": "2030-07-10"}, {"from": "2030-06-04", "to": "2030-06-20"}]
    before = reports(client, officers, periods)
    roll_up_on(settings, no_rollup, date(2030, 6, 13))  # rolled up to 06-12: A1 B1 B2 C1 J D1 … in the roll-up
    assert state(no_rollup) == (date(2030, 6, 12), [])
    assert reports(client, officers, periods) == before


def test_a_write_to_a_rolled_up_day_marks_it_and_the_figures_stay_exact(
        client: TestClient, officers: Officers, engine: Engine, settings: Settings, no_rollup: Any,
        june: dict[str, int]) -> None:
    roll_up_on(settings, no_rollup, date(2030, 7, 15))
    # A partner platform's record of a case handled in the past, written as plain SQL: received 06-11, accepted
    # 06-12, completed 06-17 on time in 2 working days — by the physician department (A's item) in Shenyang.
    with engine.begin() as connection:
        a1 = connection.execute(select(Case.__table__).where(Case.id == june["A1"])).one()._asdict()
        late = {**a1, "id": None, "tracking_no": f"{TRACKING_PREFIX}{99:011d}", "channel": "partner",
                "origin": "partner", "origin_partner": "metrics-test", "external_id": "metrics-late",
                "submitted_at": china_noon(date(2030, 6, 11)), "received_on": date(2030, 6, 11),
                "accepted_on": date(2030, 6, 12), "completed_at": china_noon(date(2030, 6, 17)),
                "decided_at": china_noon(date(2030, 6, 17)), "working_days_used": 2, "on_time": True}
        del late["id"]
        late_id = connection.execute(Case.__table__.insert().values(late).returning(Case.id)).scalar_one()
    try:
        watermark, dirty = state(no_rollup)
        assert watermark == date(2030, 7, 14)
        assert dirty == [date(2030, 6, 11), date(2030, 6, 12), date(2030, 6, 17)]
        expected = {**CITY_TOTAL, "received": 10, "accepted": 9, "completed": 8, "completion_rate": round(8 / 9, 4),
                    "on_time": 6, "on_time_rate": 0.75, "promised_speed_up": round((107 - 32) / 107, 4),
                    "actual_speed_up": round((107 - 25) / 107, 4), "average_working_days": round(25 / 8, 2),
                    "rating_rate": 0.5}
        assert figures(metrics(client, officers)["total"], *CITY_TOTAL) == expected  # dirty days read live
        roll_up_on(settings, no_rollup, date(2030, 7, 15))
        assert state(no_rollup) == (date(2030, 7, 14), [])  # recomputed
        assert figures(metrics(client, officers)["total"], *CITY_TOTAL) == expected

        # A correction to a rolled-up case (A2 counted on time after all) marks the days its figures fall on.
        with engine.begin() as connection:
            connection.execute(update(Case.__table__).where(Case.id == june["A2"]).values(on_time=True))
        assert state(no_rollup)[1] == [date(2030, 6, 4), date(2030, 6, 5), date(2030, 6, 20)]
        corrected = metrics(client, officers)["total"]
        assert (corrected["on_time"], corrected["overtime"]) == (7, 1)
        with engine.begin() as connection:
            connection.execute(update(Case.__table__).where(Case.id == june["A2"]).values(on_time=False))
    finally:
        with engine.begin() as connection:  # a deletion marks its days too
            connection.execute(delete(Case.__table__).where(Case.id == late_id))
    assert state(no_rollup)[1] == [date(2030, 6, day) for day in (4, 5, 11, 12, 17, 20)]
    assert figures(metrics(client, officers)["total"], *CITY_TOTAL) == CITY_TOTAL
    roll_up_on(settings, no_rollup, date(2030, 7, 15))
    assert figures(metrics(client, officers)["total"], *CITY_TOTAL) == CITY_TOTAL


def test_writes_after_the_watermark_mark_nothing(engine: Engine, settings: Settings, no_rollup: Any,
                                                 june: dict[str, int]) -> None:
    """Today's writes — every submission, acceptance and decision of the write path — touch no roll-up row."""
    roll_up_on(settings, no_rollup, date(2030, 6, 20))
    with engine.begin() as connection:
        connection.execute(update(Case.__table__).where(Case.id == june["E1"]).values(
            working_days_used=2, on_time=True, completed_at=china_noon(date(2030, 7, 3))))
        connection.execute(update(Case.__table__).where(Case.id == june["E1"]).values(
            working_days_used=1, completed_at=china_noon(date(2030, 7, 2))))
    assert state(no_rollup) == (date(2030, 6, 19), [])


def test_the_worker_runs_the_roll_up_unless_turned_off(settings: Settings, session_factory: Any) -> None:
    from hub.clock import FixedClock

    def jobs(interval: float) -> list[str]:
        worker = Worker(settings=settings.model_copy(update={"supervision_metrics_rollup_interval_s": interval}),
                        factory=session_factory, clock=FixedClock(china_noon(date(2030, 7, 15))),
                        bus=InProcessBus(user="hub"), consume_inbound=False)
        try:
            return [job.name for job in worker.jobs]
        finally:
            worker.stop(timeout=5)

    assert "metrics-rollup" in jobs(300)
    assert "metrics-rollup" not in jobs(0)


def test_the_day_marked_is_the_china_business_day_of_the_instant(engine: Engine, settings: Settings,
                                                                 no_rollup: Any, june: dict[str, int]) -> None:
    """07:00 China time on 12 June is 23:00 UTC on 11 June: the roll-up counts it on the 12th, so the trigger
    marks the 12th."""
    roll_up_on(settings, no_rollup, date(2030, 7, 15))
    early = datetime(2030, 6, 11, 23, 0, tzinfo=UTC)
    with engine.begin() as connection:
        a5 = connection.execute(select(Case.__table__).where(Case.id == june["A5"])).one()._asdict()
        row = {**a5, "tracking_no": f"{TRACKING_PREFIX}{98:011d}", "submitted_at": early, "updated_at": early}
        del row["id"]
        early_id = connection.execute(Case.__table__.insert().values(row).returning(Case.id)).scalar_one()
    try:
        assert state(no_rollup)[1] == [date(2030, 6, 12)]
    finally:
        with engine.begin() as connection:
            connection.execute(delete(Case.__table__).where(Case.id == early_id))


def test_two_writers_back_dating_one_day_neither_wait_nor_lose_their_mark(
        engine: Engine, settings: Settings, no_rollup: Any, june: dict[str, int]) -> None:
    """Two workers applying a city platform's backlog both write cases of the same past day: the second does
    not queue behind the first's mark, and a recompute while the first is uncommitted keeps its mark."""
    if engine.dialect.name != "postgresql":
        pytest.skip("one writer at a time on SQLite")
    roll_up_on(settings, no_rollup, date(2030, 7, 15))
    with engine.connect() as reader:
        a1 = reader.execute(select(Case.__table__).where(Case.id == june["A1"])).one()._asdict()
    del a1["id"]

    def backlog_case(number: int) -> dict[str, Any]:
        return {**a1, "tracking_no": f"{TRACKING_PREFIX}{number:011d}", "channel": "partner", "origin": "partner",
                "origin_partner": "metrics-test", "external_id": f"metrics-backlog-{number}",
                "submitted_at": china_noon(date(2030, 6, 11)), "received_on": date(2030, 6, 11),
                "accepted_on": date(2030, 6, 12), "completed_at": china_noon(date(2030, 6, 17)),
                "decided_at": china_noon(date(2030, 6, 17)), "working_days_used": 2, "on_time": True}

    first = engine.connect()
    first_tx = first.begin()
    ids: list[int] = []
    try:
        ids.append(first.execute(Case.__table__.insert().values(backlog_case(97)).returning(Case.id)).scalar_one())
        with engine.begin() as second:
            second.exec_driver_sql("SET LOCAL lock_timeout = '5s'")  # the old upsert of one row per day waited here
            ids.append(second.execute(Case.__table__.insert().values(backlog_case(98))
                                      .returning(Case.id)).scalar_one())
        roll_up_on(settings, no_rollup, date(2030, 7, 15))  # recomputes with the second, not the first
        assert state(no_rollup)[1] == []
        first_tx.commit()
        assert state(no_rollup)[1] == [date(2030, 6, 11), date(2030, 6, 12), date(2030, 6, 17)]
    finally:
        if first_tx.is_active:
            first_tx.rollback()
        first.close()
        with engine.begin() as connection:
            connection.execute(delete(Case.__table__).where(Case.id.in_(ids)))
        roll_up_on(settings, no_rollup, date(2030, 7, 15))


def test_on_postgresql_a_batch_of_back_dated_cases_marks_each_of_its_days_once(
        engine: Engine, settings: Settings, no_rollup: Any, june: dict[str, int]) -> None:
    """A batch of a city platform's backlog inserts its cases in one statement: the trigger marks each day those
    cases fall on once for the statement — not once per case — and no day for a joint case's branch; deleting
    them in one statement marks the days once again (migration 0020)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has row triggers only: a mark per case and day")
    roll_up_on(settings, no_rollup, date(2030, 7, 15))
    with engine.connect() as reader:
        a1 = reader.execute(select(Case.__table__).where(Case.id == june["A1"])).one()._asdict()
    del a1["id"]

    def backlog_case(number: int, *, branch_of: int | None = None) -> dict[str, Any]:
        day = date(2030, 6, 24) if branch_of else date(2030, 6, 11)
        return {**a1, "tracking_no": f"{TRACKING_PREFIX}{number:011d}", "channel": "partner", "origin": "partner",
                "origin_partner": "metrics-test", "external_id": f"metrics-batch-{number}", "parent_id": branch_of,
                "submitted_at": china_noon(day), "received_on": day, "accepted_on": day + timedelta(days=1),
                "completed_at": china_noon(date(2030, 6, 17)), "decided_at": china_noon(date(2030, 6, 17)),
                "working_days_used": 2, "on_time": True}

    batch = [backlog_case(90 + n) for n in range(4)] + [backlog_case(95, branch_of=june["A1"])]
    with engine.begin() as connection:
        ids = list(connection.execute(Case.__table__.insert().returning(Case.id), batch).scalars())
        # (one multi-row statement: psycopg's executemany with RETURNING is sent as a single INSERT … VALUES)
    try:
        with engine.connect() as reader:
            marks = sorted(reader.execute(select(MetricsDirtyDay.day)).scalars())
        assert marks == [date(2030, 6, 11), date(2030, 6, 12), date(2030, 6, 17)]
    finally:
        with engine.begin() as connection:
            connection.execute(delete(Case.__table__).where(Case.id.in_(ids)))
    with engine.connect() as reader:
        marks = sorted(reader.execute(select(MetricsDirtyDay.day)).scalars())
    assert marks == [date(2030, 6, 11), date(2030, 6, 11), date(2030, 6, 12), date(2030, 6, 12),
                     date(2030, 6, 17), date(2030, 6, 17)]
    roll_up_on(settings, no_rollup, date(2030, 7, 15))
    assert state(no_rollup) == (date(2030, 7, 14), [])
