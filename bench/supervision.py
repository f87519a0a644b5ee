"""Electronic supervision at scale: the time-limit scanner, the performance metrics and the rules per event.

    .venv/bin/python -m bench.supervision [--database-url URL] [--rounds 3] [--small 100000]
                                          [--large 1000000] [--completed 1000000] [--rule-cases 2000]
                                          [--large-one-percent] [--json PATH] [--keep-database]

What it does, in one run (issue 10, deliverable 7):

1. creates a fresh PostgreSQL database (``hub_bench_sup_<pid>``, owned by the role of ``--database-url``,
   which needs CREATEDB), migrates it with ``hub.migrate.upgrade`` and seeds the demo province;
2. bulk-loads ``--small`` open cases in one ``INSERT … SELECT … generate_series`` (items, departments and
   regions from the seed; acceptance days, deadlines and per-step deadlines computed with the hub's own
   calendar and clock), 1 % of them due to change colour today (``colour_due_on = today`` and far enough
   into their limit to turn yellow or red), the others due on a later day, then ``ANALYZE``;
3. runs the time-limit scanner as ``hub worker`` does — ``hub.supervision.scanner.scan_once``, one batch in
   its own transaction, until a batch comes back short — ``--rounds`` times, resetting the due cases
   (colour, due day, their alerts and outbox rows) before each round; each figure is the **median over the rounds**;
4. adds open cases up to ``--large`` and measures again with the same cases changing colour as in the small
   set (``scan_ratio`` = large cost / small cost: the scanner's cost must follow the cases that change
   colour, not the open cases — target ≤ 3; with 1 % of each set changing the large one has ten times the
   changes and any scanner costs ten times as much, so that ratio could not tell an index-driven scanner
   from a full scan); with ``--large-one-percent`` also with 1 % of the large set changing
   (``scan_ratio_one_percent``, and ``per_changed_case_ratio``: the cost per changed case, large over small);
5. bulk-loads ``--completed`` cases completed over one year (with ratings and alerts beside them), times the
   performance metrics (``hub.supervision.metrics``) for the whole year, province-wide, grouped by department
   once with every day read from the cases (``seconds_without_rollup``, for comparison), catches the daily
   roll-up up as ``hub worker`` keeps it (``hub.supervision.rollup``: every day before TODAY; its time under
   ``rollup``), then times the metrics again (target < 1 s);
6. times the procedure and anomaly rules (``hub.supervision.rules``) over complete case histories: the cost
   per event;
7. prints the figures, the 1-minute load average before and after each part, writes them as JSON (also to
   ``--json PATH``), drops the database; exits 0 whether or not the targets are met (it says which).

A part whose code is not in this checkout (the scanner, the metrics or the rules) is reported as missing and
skipped, so the harness runs on its own.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/supervision.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

from bench.submit import DEFAULT_DATABASE_URL, fresh_database, machine

# A Wednesday in an ordinary working week of 2026 (no holiday within the limits counted below).
TODAY = date(2026, 6, 10)
CHANGING_SHARE = 0.01  # the share of open cases whose colour changes today
TARGET_SCAN_RATIO = 3.0
TARGET_METRICS_S = 1.0
# The standard flow's steps as they are recorded, for the rule cost per event.
STANDARD_FLOW = (("submit", None, "submitted"), ("accept", "intake", "under_review"),
                 ("review", "review", "pending_decision"), ("grant", "decision", "granted"),
                 ("complete", "delivery", "completed"))
CHINA = timedelta(hours=8)


def now_on(day: date, hour: int = 10) -> datetime:
    """``hour`` o'clock China time on ``day``, as the hub's clock gives it (UTC)."""
    return datetime.combine(day, day_time(hour)).replace(tzinfo=UTC) - CHINA


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


# --- the database ---------------------------------------------------------------------------------


def prepare_database(url: str) -> None:
    """Migrate with Alembic (the only way the hub's schema is made) and seed the demo province."""
    from hub.db import make_engine, make_session_factory, unit_of_work
    from hub.migrate import upgrade
    from hub.seed.service import seed_demo

    engine = make_engine(url)
    try:
        upgrade(engine)
        with unit_of_work(make_session_factory(engine)) as session:
            seed_demo(session, now=now_on(TODAY) - timedelta(days=400))
    finally:
        engine.dispose()


@dataclass(frozen=True)
class SeedItem:
    id: int
    department_id: int
    region_code: str
    statutory: int
    promised: int


def seeded_items(engine: Engine) -> list[SeedItem]:
    """The seed's items handled by one department on the standard flow (joint items open branch cases)."""
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT id, department_id, region_code, statutory_limit_days, promised_limit_days FROM items "
            "WHERE workflow_id = 'standard.v1' AND active ORDER BY id")).all()
    if not rows:
        raise RuntimeError("the seeded catalogue has no item on the standard flow")
    return [SeedItem(*row) for row in rows]


@dataclass(frozen=True)
class Group:
    """Open cases accepted on one day: their deadlines as the hub's clock stores them."""

    number: int
    accepted_on: date
    due_on: date  # the day the scanner is to look at them again
    deadline: date
    statutory_deadline: date
    step_deadlines: dict[str, str]


def open_groups(calendar: Any, definition: Any, promised: int, statutory: int) -> tuple[Group, list[Group]]:
    """The changing group (accepted ``promised`` − 1 working days ago: today it has used ≥ 80 % and has one
    working day left — yellow) and the quiet groups (accepted 0 … ``promised`` − 2 working days ago, their colour
    due later)."""
    from workflow.timelimits import allocate_step_deadlines

    def group(number: int, accepted_on: date, due_on: date) -> Group:
        steps = allocate_step_deadlines(definition, calendar, accepted_on, promised)
        return Group(number, accepted_on, due_on, calendar.add_working_days(accepted_on, promised),
                     calendar.add_working_days(accepted_on, statutory),
                     {name: day.isoformat() for name, day in steps.items()})

    def working_days_before(day: date, days: int) -> date:
        while days > 0:
            day -= timedelta(days=1)
            days -= int(calendar.is_working_day(day))
        return day

    changing = group(0, working_days_before(TODAY, promised - 1), TODAY)
    quiet = []
    for number in range(1, promised):  # accepted 0 … promised − 2 working days ago: none on the changing day
        accepted = working_days_before(TODAY, number - 1)
        yellow_on = working_days_before(calendar.add_working_days(accepted, promised), 1)
        quiet.append(group(number, accepted, max(yellow_on, TODAY + timedelta(days=1))))
    return changing, quiet


def _items_values(items: list[SeedItem]) -> str:
    return ", ".join(f"({n}, {i.id}, {i.department_id}, '{i.region_code}')" for n, i in enumerate(items))


def _groups_values(groups: list[Group]) -> str:
    return ", ".join(
        f"({g.number}, DATE '{g.accepted_on}', DATE '{g.due_on}', DATE '{g.deadline}', "
        f"DATE '{g.statutory_deadline}', CAST('{json.dumps(g.step_deadlines)}' AS json))" for g in groups)


# The columns every bulk-loaded case fills (the model's Python-side defaults included: SQL does not see them).
_CASE_COLUMNS = """
    tracking_no, query_code_hash, item_id, region_code, department_id, state, workflow_id, channel, origin,
    partner_event_seq, applicant_type, applicant_name, applicant_id_type, applicant_id_number, form_data,
    submitted_at, received_on, accepted_on, promised_limit_days, statutory_limit_days, deadline,
    statutory_deadline, step_deadlines, suspended_working_days, suspensions, extension_days, colour,
    colour_due_on, event_count, updated_at, lock_version, decided_at, completed_at, result, working_days_used,
    on_time"""


def tracking_no(number: int) -> str:
    """The bulk-loaded case ``number``'s tracking number: ordered as the numbers are."""
    return "B" + str(number).rjust(20, "0")


def insert_open_cases(engine: Engine, *, first: int, count: int, items: list[SeedItem], groups: list[Group],
                      select_group: str, limits: tuple[int, int]) -> None:
    """``count`` open cases numbered from ``first`` (under review, accepted on their group's day) in one
    INSERT … SELECT over generate_series; ``select_group`` is the SQL expression of ``g`` (the case's
    number) choosing its group."""
    promised, statutory = limits
    sql = f"""
        WITH items(n, id, department_id, region_code) AS (VALUES {_items_values(items)}),
             groups(number, accepted_on, due_on, deadline, statutory_deadline, step_deadlines)
                 AS (VALUES {_groups_values(groups)})
        INSERT INTO cases ({_CASE_COLUMNS})
        SELECT
            'B' || lpad(g::text, 20, '0'), repeat('0', 64), i.id, i.region_code, i.department_id,
            'under_review', 'standard.v1', CASE WHEN g % 4 = 0 THEN 'window' ELSE 'online' END, 'hub', 0,
            '1', '张三', 'citizen_id', lpad(g::text, 18, '0'), CAST('{{}}' AS json),
            CAST(gr.accepted_on AS timestamp) + interval '1 hour', gr.accepted_on, gr.accepted_on,
            {promised}, {statutory}, gr.deadline, gr.statutory_deadline, gr.step_deadlines, 0,
            CAST('[]' AS json), 0, NULL, gr.due_on, 2, CAST(gr.accepted_on AS timestamp) + interval '2 hours',
            1, NULL, NULL, NULL, NULL, NULL
        FROM generate_series({first}, {first + count - 1}) AS g
        JOIN items i ON i.n = g % {len(items)}
        JOIN groups gr ON gr.number = {select_group}
    """
    with engine.begin() as connection:
        connection.execute(text(sql))


def insert_completed_cases(engine: Engine, *, first: int, count: int, items: list[SeedItem],
                           limits: tuple[int, int]) -> None:
    """``count`` cases completed over the year before TODAY, submitted evenly over it: a quarter at the
    window, one in twelve over its promised limit (working days used = promised + 2), the others within it;
    beside them a rating for one in three (one in ten of those 不满意) and alerts for one in twenty (one in
    a hundred red)."""
    promised, statutory = limits
    start = now_on(TODAY - timedelta(days=365)).replace(tzinfo=None)
    sql = f"""
        WITH items(n, id, department_id, region_code) AS (VALUES {_items_values(items)})
        INSERT INTO cases ({_CASE_COLUMNS})
        SELECT
            'B' || lpad(g::text, 20, '0'), repeat('0', 64), i.id, i.region_code, i.department_id,
            'completed', 'standard.v1', CASE WHEN g % 4 = 0 THEN 'window' ELSE 'online' END, 'hub', 0,
            '1', '张三', 'citizen_id', lpad(g::text, 18, '0'), CAST('{{}}' AS json),
            s.at, CAST(s.at AS date), CAST(s.at AS date), {promised}, {statutory},
            CAST(s.at AS date) + {promised + promised // 2}, CAST(s.at AS date) + {statutory + statutory // 2},
            CAST('{{}}' AS json), 0, CAST('[]' AS json), 0, NULL, NULL, 5, s.at + interval '8 days', 1,
            s.at + interval '7 days', s.at + interval '8 days', 'granted',
            CASE WHEN g % 12 = 0 THEN {promised + 2} ELSE 1 + g % {promised} END, g % 12 <> 0
        FROM generate_series({first}, {first + count - 1}) AS g
        JOIN items i ON i.n = g % {len(items)}
        CROSS JOIN LATERAL (SELECT TIMESTAMP '{start:%Y-%m-%d %H:%M:%S}'
                                   + interval '1 second' * ((g::bigint - {first}) * (365 * 86400 - 9 * 86400)
                                                            / {count}) AS at) s
    """
    window = f"tracking_no BETWEEN '{tracking_no(first)}' AND '{tracking_no(first + count - 1)}'"
    ratings = f"""
        INSERT INTO ratings (case_id, service_event, level, comment, source, rated_at, department_id,
                             region_code, follow_up_status, follow_up_due_on)
        SELECT id, 'completion', CASE WHEN id % 30 = 0 THEN 2 ELSE 4 + id % 2 END, NULL, 'applicant',
               completed_at + interval '1 day', department_id, region_code,
               CASE WHEN id % 30 = 0 THEN 'open' END,
               CASE WHEN id % 30 = 0 THEN CAST(completed_at AS date) + 21 END
        FROM cases WHERE {window} AND id % 3 = 0
    """
    alerts = f"""
        INSERT INTO alerts (case_id, rule, kind, level, status, department_id, region_code,
                            supervisor_region_code, escalations, message, detail, raised_at, raised_on,
                            closed_at, history)
        SELECT id, 'time.case_overdue', 'time', CASE WHEN id % 100 = 0 THEN 'red' ELSE 'yellow' END, 'closed',
               department_id, region_code, region_code, 0, '办件即将超期', CAST('{{}}' AS json),
               submitted_at + interval '6 days', CAST(submitted_at AS date) + 6, completed_at,
               CAST('[]' AS json)
        FROM cases WHERE {window} AND id % 20 = 0
    """
    with engine.begin() as connection:
        connection.execute(text(sql))
        connection.execute(text(ratings))
        connection.execute(text(alerts))


def analyze(engine: Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE cases"))
        connection.execute(text("ANALYZE alerts"))
        connection.execute(text("ANALYZE ratings"))


# --- the parts measured -----------------------------------------------------------------------------


def median(values: list[float]) -> float:
    return round(statistics.median(values), 4)


def timed(run: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall and CPU seconds of ``run()`` in this process, and its result."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def missing(part: str, error: Exception) -> dict[str, Any]:
    print(f"  {part}: not in this checkout ({type(error).__name__}: {error}) — skipped", flush=True)
    return {"available": False, "reason": f"{type(error).__name__}: {error}"}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    database = f"hub_bench_sup_{os.getpid()}"
    figures: dict[str, Any] = {
        "benchmark": "supervision", "date": datetime.now(UTC).date().isoformat(), "today": TODAY.isoformat(),
        "rounds": args.rounds, "statistic": "median over the rounds",
        "machine": machine(), "targets": {"scan_ratio": TARGET_SCAN_RATIO, "metrics_s": TARGET_METRICS_S},
    }
    with fresh_database(args.database_url, database, keep=args.keep_database) as url:
        print(f"database {database}: migrating and seeding …", flush=True)
        prepare_database(url)
        from hub.db import make_engine

        engine = make_engine(url)
        try:
            figures.update(run_all(engine, args))
        finally:
            engine.dispose()
    print_summary(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(figures, ensure_ascii=False))
    return 0


def run_all(engine: Engine, args: argparse.Namespace) -> dict[str, Any]:
    from hub.db import make_session_factory

    factory = make_session_factory(engine)
    items = seeded_items(engine)
    out: dict[str, Any] = {"items": len(items)}
    out["scan"] = measure_scans(engine, factory, items, args)
    out["scan_ratio"] = out["scan"].get("scan_ratio")
    out["metrics"] = measure_metrics(engine, factory, items, args)
    out["rules"] = measure_rules(factory, args)
    return out


# --- the scanner --------------------------------------------------------------------------------------

LIMITS = (10, 20)  # promised and statutory working days of every bulk-loaded case


def scanner_pass(factory: Any) -> Callable[[], int]:
    """The scan as ``hub worker`` runs it: ``scanner.scan_once`` (one bounded batch in its own transaction)
    until a batch comes back short; returns the cases it looked at. Raises ImportError while the alerts part
    is not in this checkout."""
    from hub.settings import Settings
    from hub.supervision import scanner

    now = now_on(TODAY)
    batch = Settings().supervision_scan_batch

    def run() -> int:
        seen = 0
        while True:
            done = scanner.scan_once(factory, now=now, batch=batch)
            seen += done
            if done < batch:
                return seen

    return run


def reset_changing(engine: Engine, *, accepted_on: date, upto: int, later: date) -> int:
    """Put the changing group back as it was before a scan: no colour, due today — those numbered up to
    ``upto`` — or due ``later`` (the others); no alerts, no outbox rows. Returns the cases due today."""
    with engine.begin() as connection:
        due = connection.execute(text(
            "UPDATE cases SET colour = NULL, colour_due_on = :today "
            "WHERE accepted_on = :accepted AND tracking_no <= :upto"),
            {"today": TODAY, "accepted": accepted_on, "upto": tracking_no(upto)}).rowcount
        connection.execute(text(
            "UPDATE cases SET colour = NULL, colour_due_on = :later "
            "WHERE accepted_on = :accepted AND tracking_no > :upto AND colour_due_on IS DISTINCT FROM :later"),
            {"later": later, "accepted": accepted_on, "upto": tracking_no(upto)})
        connection.execute(text("DELETE FROM alerts"))
        connection.execute(text("DELETE FROM outbox"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE cases"))
    return int(due)


def scan_rounds(engine: Engine, run: Callable[[], int], args: argparse.Namespace, *, open_cases: int,
                accepted_on: date, upto: int, label: str) -> dict[str, Any]:
    walls, cpus, loads = [], [], []
    due = seen = 0
    for number in range(args.rounds):
        due = reset_changing(engine, accepted_on=accepted_on, upto=upto, later=TODAY + timedelta(days=1))
        before = load_average()
        wall, cpu, seen = timed(run)
        loads.append((before, load_average()))
        walls.append(wall)
        cpus.append(cpu)
        print(f"  scan {label:20} round {number + 1}: {open_cases} open, {due} due, {seen} scanned: "
              f"{wall:.3f} s (CPU here {cpu:.3f} s)  load {loads[-1][0]} → {loads[-1][1]}", flush=True)
    with engine.connect() as connection:
        colours = dict(connection.execute(text(
            "SELECT colour, count(*) FROM cases WHERE colour IS NOT NULL GROUP BY colour")).all())
        alerts = connection.execute(text("SELECT count(*) FROM alerts")).scalar_one()
    seconds = median(walls)
    return {
        "open_cases": open_cases, "changing": due, "scanned": seen, "seconds": seconds,
        "seconds_per_round": [round(w, 4) for w in walls], "client_cpu_s": median(cpus),
        "ms_per_changed_case": round(1000 * seconds / max(due, 1), 4),
        "cpu_ms_per_changed_case": round(1000 * median(cpus) / max(due, 1), 4),
        "colours_after": colours, "alerts_after": alerts,
        "load_before": min(b for b, _ in loads), "load_after": max(a for _, a in loads),
    }


def measure_scans(engine: Engine, factory: Any, items: list[SeedItem], args: argparse.Namespace) -> dict[str, Any]:
    """The scan over ``--small`` open cases, 1 % changing; over ``--large`` with the same cases changing;
    over ``--large`` with 1 % changing."""
    from hub.calendar.service import load_calendar
    from workflow.registry import get_definition

    with factory() as session:
        calendar = load_calendar(session)
    changing, quiet = open_groups(calendar, get_definition("standard.v1"), *LIMITS)
    groups = [changing, *quiet]
    every = round(1 / CHANGING_SHARE)
    print(f"loading {args.small} open cases ({CHANGING_SHARE:.0%} changing colour on {TODAY}) …", flush=True)
    started = time.perf_counter()
    insert_open_cases(engine, first=1, count=args.small, items=items, groups=groups, limits=LIMITS,
                      select_group=f"CASE WHEN g % {every} = 0 THEN 0 ELSE 1 + g % {len(quiet)} END")
    analyze(engine)
    out: dict[str, Any] = {"load_small_s": round(time.perf_counter() - started, 1)}
    try:
        run = scanner_pass(factory)
    except ImportError as error:
        out.update(missing("scanner", error))
        run = None
    if run is not None:
        out["small"] = scan_rounds(engine, run, args, open_cases=args.small, accepted_on=changing.accepted_on,
                                   upto=args.small, label="small")
    print(f"loading {args.large - args.small} more open cases …", flush=True)
    started = time.perf_counter()
    insert_open_cases(engine, first=args.small + 1, count=args.large - args.small, items=items, groups=groups,
                      limits=LIMITS,
                      select_group=f"CASE WHEN g % {every} = 0 THEN 0 ELSE 1 + g % {len(quiet)} END")
    analyze(engine)
    out["load_large_s"] = round(time.perf_counter() - started, 1)
    if run is None:
        return out
    out["large_same_changes"] = scan_rounds(
        engine, run, args, open_cases=args.large, accepted_on=changing.accepted_on, upto=args.small,
        label="large, same changes")
    small, large = out["small"]["seconds"], out["large_same_changes"]["seconds"]
    out["scan_ratio"] = round(large / small, 3) if small else None
    out["target_met"] = out["scan_ratio"] is not None and out["scan_ratio"] <= TARGET_SCAN_RATIO
    # The scanner's own CPU (this process): steadier than wall time on a shared, loaded machine.
    cpu_small = out["small"]["client_cpu_s"]
    out["scan_ratio_cpu"] = round(out["large_same_changes"]["client_cpu_s"] / cpu_small, 3) if cpu_small else None
    if args.large_one_percent:
        out["large_one_percent"] = scan_rounds(
            engine, run, args, open_cases=args.large, accepted_on=changing.accepted_on, upto=args.large,
            label="large, 1 % changing")
        out["scan_ratio_one_percent"] = round(out["large_one_percent"]["seconds"] / small, 3) if small else None
        # Per changed case: what "cost follows the cases that change colour" predicts to stay flat.
        out["per_changed_case_ratio"] = round(out["large_one_percent"]["ms_per_changed_case"]
                                              / out["small"]["ms_per_changed_case"], 3)
    return out


# --- the metrics --------------------------------------------------------------------------------------


def metrics_query(factory: Any) -> Callable[[], Any]:
    """The performance metrics for the year before TODAY, province-wide (every region), grouped by department,
    as ``GET /api/v1/supervision/metrics?group_by=department`` computes them for the province's supervisor.
    Raises ImportError without the metrics part."""
    from hub.org import service as org_service
    from hub.supervision import metrics

    period = metrics.checked_period(TODAY - timedelta(days=364), TODAY)

    def run() -> Any:
        with factory() as session:
            scope = metrics.Scope("210000", frozenset(org_service.region_and_descendants(session, "210000")))
            report = metrics.report(session, scope=scope, period=period, group_by="department")
            session.rollback()
            return report

    return run


def measure_metrics(engine: Engine, factory: Any, items: list[SeedItem], args: argparse.Namespace) -> dict[str, Any]:
    print(f"loading {args.completed} cases completed over one year …", flush=True)
    started = time.perf_counter()
    insert_completed_cases(engine, first=args.large + 1, count=args.completed, items=items, limits=LIMITS)
    analyze(engine)
    out: dict[str, Any] = {"completed_cases": args.completed, "load_s": round(time.perf_counter() - started, 1)}
    try:
        run = metrics_query(factory)
    except ImportError as error:
        return {**out, **missing("metrics", error)}
    for number in range(2):  # the report with every day read from the cases: for comparison (warm-up, one round)
        wall, _, _ = timed(run)
        print(f"  metrics without the roll-up{' (warm-up)' if number == 0 else ''}: {wall:.3f} s", flush=True)
    out["seconds_without_rollup"] = round(wall, 4)
    out.update(roll_up(engine, factory))
    walls, loads = [], []
    result: Any = None
    for number in range(args.rounds + 1):  # the first warms the caches and is not counted
        before = load_average()
        wall, _, result = timed(run)
        loads.append((before, load_average()))
        print(f"  metrics round {number}{' (warm-up)' if number == 0 else ''}: {wall:.3f} s", flush=True)
        if number:
            walls.append(wall)
    seconds = median(walls)
    return {**out, "seconds": seconds, "seconds_per_round": [round(w, 4) for w in walls],
            "groups": len(result.rows), "completed_counted": result.total.sums.completed,
            "target_met": seconds < TARGET_METRICS_S,
            "load_before": min(b for b, _ in loads), "load_after": max(a for _, a in loads)}


def roll_up(engine: Engine, factory: Any) -> dict[str, Any]:
    """The metrics' daily roll-up as ``hub worker`` keeps it (job ``metrics-rollup``), caught up at once over the
    loaded year: every day up to the day before TODAY; TODAY stays live."""
    try:
        from hub.supervision import rollup
    except ImportError as error:
        return {"rollup": missing("roll-up", error)}
    before = load_average()
    started, cpu = time.perf_counter(), time.process_time()
    days = 0
    while done := rollup.roll_up(factory, now=now_on(TODAY), days=31):
        days += done
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE metrics_daily"))
        rows = connection.execute(text("SELECT count(*) FROM metrics_daily")).scalar_one()
    print(f"  roll-up caught up: {days} day steps, {rows} rows, {wall:.1f} s (CPU here {cpu:.1f} s)  "
          f"load {before} → {load_average()}", flush=True)
    return {"rollup": {"day_steps": days, "rows": rows, "seconds": round(wall, 2), "client_cpu_s": round(cpu, 2),
                       "load_before": before, "load_after": load_average()}}


# --- the rules ----------------------------------------------------------------------------------------


def measure_rules(factory: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Every procedure and anomaly rule over ``--rule-cases`` complete case histories (five events each, the
    standard flow), in memory: the cost per event of evaluating them."""
    try:
        from hub.supervision import rules
    except ImportError as error:
        return missing("rules", error)
    histories = rule_histories(factory, args.rule_cases)
    events = sum(len(h.steps) for h in histories)
    walls, loads = [], []
    for _ in range(args.rounds):
        before = load_average()
        wall, _, found = timed(lambda: [f for facts in histories for f in rules.evaluate(facts)])
        loads.append((before, load_average()))
        walls.append(wall)
    seconds = median(walls)
    return {"rules": len(rules.RULES), "cases": len(histories), "events": events // len(histories),
            "findings": len(found), "seconds": seconds, "us_per_event": round(1e6 * seconds / events, 2),
            "us_per_case": round(1e6 * seconds / len(histories), 2),
            "load_before": min(b for b, _ in loads), "load_after": max(a for _, a in loads)}


def rule_histories(factory: Any, count: int) -> list[Any]:
    """``count`` bulk-loaded completed cases (their rows as the ORM loads them) each with the standard flow's
    five events as the write path records them — the intake officer accepts, a reviewer reviews, an approver
    grants, the intake officer completes — wrapped as the rules see a case (``CaseFacts``, no lookups: the
    cost measured is the rules' own, not the few reads a rule asks for on a new decision)."""
    from sqlalchemy import select

    from hub.calendar.service import load_calendar
    from hub.cases.models import Case
    from hub.supervision.rules import CaseFacts, Step
    from workflow.registry import get_definition

    definition = get_definition("standard.v1")
    now = now_on(TODAY)
    with factory() as session:
        calendar = load_calendar(session)
        cases = list(session.scalars(select(Case).where(Case.state == "completed").order_by(Case.id)
                                     .limit(count)).unique())
        session.expunge_all()
    actors = {"submit": ("applicant", "applicant"), "accept": ("officer", "intake"),
              "review": ("officer", "reviewer"), "grant": ("officer", "approver"),
              "complete": ("officer", "intake")}
    histories = []
    for case in cases:
        state: str | None = None
        steps = []
        for seq, (action, step, to_state) in enumerate(STANDARD_FLOW, start=1):
            actor_type, actor = actors[action]
            steps.append(Step(
                seq=seq, action=action, to_state=to_state, actor_type=actor_type,
                actor_id=f"{actor}-{case.department_id}", from_state=state, step=step,
                occurred_at=case.submitted_at + timedelta(days=2 * (seq - 1)),
                department_id=case.department_id if actor_type == "officer" else None, opinion="符合条件"))
            state = to_state
        histories.append(CaseFacts(case=case, steps=tuple(steps), definition=definition, calendar=calendar,
                                   today=TODAY, now=now, new_from=len(steps)))
    return histories


def print_summary(figures: dict[str, Any]) -> None:
    print()
    scan = figures.get("scan", {})
    if scan.get("available", True) and "small" in scan:
        for name in ("small", "large_same_changes", "large_one_percent"):
            part = scan.get(name)
            if part:
                print(f"scan {name:20} {part['open_cases']:>9} open, {part['changing']:>6} changing: "
                      f"{part['seconds']:.3f} s  ({part['ms_per_changed_case']:.3f} ms per changed case; "
                      f"load {part['load_before']} → {part['load_after']})")
        print(f"scan_ratio {figures.get('scan_ratio')} (by the scanner's CPU {scan.get('scan_ratio_cpu')}; "
              f"target ≤ {TARGET_SCAN_RATIO}: {'met' if scan.get('target_met') else 'NOT met'})")
    metrics = figures.get("metrics", {})
    if metrics.get("available", True) and "seconds" in metrics:
        print(f"metrics over {metrics['completed_cases']} completed cases: {metrics['seconds']:.3f} s "
              f"(target < {TARGET_METRICS_S} s: {'met' if metrics['target_met'] else 'NOT met'})")
    rules = figures.get("rules", {})
    if rules.get("available", True) and "us_per_event" in rules:
        print(f"rules: {rules['us_per_event']:.1f} µs per event ({rules['rules']} rules, "
              f"{rules['events']} events per case)")
    print()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.supervision", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL,
                        help="a PostgreSQL role with CREATEDB; the benchmark makes its own database on that "
                             "server (default: the hub_test URL)")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per figure; the median (default 3)")
    parser.add_argument("--small", type=int, default=100_000, help="open cases of the small scan (default 100000)")
    parser.add_argument("--large", type=int, default=1_000_000,
                        help="open cases of the large scan (default 1000000)")
    parser.add_argument("--completed", type=int, default=1_000_000,
                        help="completed cases over one year for the metrics (default 1000000)")
    parser.add_argument("--rule-cases", type=int, default=2000,
                        help="case histories the rules are evaluated over (default 2000)")
    parser.add_argument("--large-one-percent", action="store_true",
                        help="also scan the large set with 1 %% of it changing (ten times the small set's changes; "
                             "long: the cost per changed case is the figure to compare)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures to this file")
    parser.add_argument("--keep-database", action="store_true", help="do not drop the benchmark database")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.small < 100 or args.large < args.small or args.completed < 1 or args.rule_cases < 1:
        parser.error("--rounds ≥ 1, --small ≥ 100, --large ≥ --small, --completed and --rule-cases ≥ 1")
    if not make_url(args.database_url).get_backend_name().startswith("postgresql"):
        parser.error("--database-url must be a PostgreSQL URL")
    return args


if __name__ == "__main__":
    sys.exit(main())
