"""Every alert the real-time supervision hook raises on a fixed workload of partner records, dumped for a
side-by-side comparison of two versions of the code ("without changing a single finding").

    .venv/bin/python -m bench.realtime_findings --out new.json [--backend postgresql|sqlite] [--rounds 4]
                                                [--records 1500] [--database-url URL]
    cd OLD && PYTHONPATH=$PWD THIS/.venv/bin/python THIS/bench/realtime_findings.py --out old.json
        # the old code's hub/ and bench/ingest.py (worktree OLD) run by this file of this worktree (THIS)
    cmp old.json new.json

A fresh database (``bench.ingest``'s on PostgreSQL, a temporary file on SQLite); the city platform simulator's
plans at a fixed clock (seeds 1…rounds, fixed run ids, 21:50 China time so that night decisions fall in odd
hours), perturbed deterministically so that more rules fire than the simulator's clean flows make fire: one
case in five loses its acceptance step (its later steps renumbered, its acceptance event never sent), one in
three has its decisions and completion back-filled at 23:xx by one night officer. They go through
``InboundHandler.handle_batch`` in batches of 50, the clock moving 37 s a batch. Then every alert (case, rule,
kind, level, status, message, detail, times, region, history) and every ``alert.raised.v1`` message (its alert
named by case, rule and level rather than by id) is written sorted, so that two runs compare byte for byte.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import zlib
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

if __package__ in (None, ""):  # run as a file (the old code's tree on PYTHONPATH): not bench/ as the first path,
    del sys.path[0]              # where bench/workflow.py would hide the workflow package

from sqlalchemy import text

from bench.ingest import BENCH_AUDIT_KEY, DEFAULT_DATABASE_URL, PARTNER, bench_messages, fresh_database
from hub.clock import FixedClock
from hub.db import make_engine, make_session_factory, unit_of_work
from hub.exchange.consumer import InboundHandler
from hub.migrate import upgrade
from hub.seed.service import seed_demo
from mocks.city_platform import CityPlatform, Planned

START = datetime(2026, 11, 30, 13, 50, tzinfo=UTC)  # 21:50 in China
BATCH = 50


def _draw(external_id: str, salt: str) -> int:
    return zlib.crc32(f"{salt}:{external_id}".encode())


def _changed_step(external_id: str, step: dict[str, Any], accept_seq: int | None) -> dict[str, Any]:
    step = dict(step)
    if accept_seq is not None and step["seq"] > accept_seq:
        step["seq"] -= 1
    if _draw(external_id, "night") % 3 == 0 and step["action"] in ("grant", "deny", "complete"):
        step["at"] = f"{step['at'][:10]}T23:{_draw(external_id, 'min') % 50:02d}:00+08:00"
        step["officer"] = "夜班"
    return step


def perturbed(planned: list[Planned]) -> list[Planned]:
    """The plan with some acceptances dropped and some decisions back-filled at night (see the module's text)."""
    accepts: dict[str, int] = {}
    out = []
    for message in planned:
        document = json.loads(message.body)
        payload = document.get("payload", {})
        external_id = payload.get("external_id")
        skip = external_id is not None and _draw(external_id, "skip") % 5 == 0
        if message.type.startswith("case-record") and "steps" in payload:
            steps = payload["steps"]
            accept = next((s["seq"] for s in steps if s["action"] == "accept"), None)
            if skip and accept is not None:
                accepts[external_id] = accept
                steps = [s for s in steps if s["action"] != "accept"]
                payload.pop("accepted_at", None)
            payload["steps"] = [_changed_step(external_id, s, accepts.get(external_id) if skip else None)
                                for s in steps]
        elif "step" in payload and external_id is not None:
            if skip and payload["step"]["action"] == "accept":
                continue  # the platform never reports it
            payload["step"] = _changed_step(external_id, payload["step"], accepts.get(external_id) if skip else None)
        out.append(replace(message, body=json.dumps(document, ensure_ascii=False).encode()))
    return out


def run(url: str, rounds: int, records: int) -> dict[str, Any]:
    engine = make_engine(url)
    clock = FixedClock(START)
    handler = InboundHandler(make_session_factory(engine), clock, "hub", BENCH_AUDIT_KEY, batch_size=BATCH)
    outcomes: Counter[str] = Counter()
    for round_ in range(rounds):
        planned = CityPlatform("amqp://unused", PARTNER, seed=round_ + 1, run_id=f"diff{round_}",
                               now=clock.now()).plan(records)
        messages = bench_messages(perturbed(planned))
        for i in range(0, len(messages), BATCH):
            outcomes.update(str(o.kind) for o in handler.handle_batch(messages[i:i + BATCH]))
            clock.advance(seconds=37)
    with engine.connect() as connection:
        alerts = connection.execute(text(
            "SELECT a.id, c.external_id, c.tracking_no, a.rule, a.kind, a.level, a.status, a.message, a.detail, "
            "a.raised_at, a.raised_on, a.department_id, a.region_code, a.history "
            "FROM alerts a JOIN cases c ON c.id = a.case_id")).all()
        named = {a[0]: (a[1], a[3], a[5]) for a in alerts}
        messages_out = []
        for payload, at, region, correlation in connection.execute(text(
                "SELECT payload, occurred_at, region_code, correlation_id FROM outbox "
                "WHERE type = 'alert.raised.v1'")):
            payload = dict(payload if isinstance(payload, dict) else json.loads(payload))
            payload["alert_id"] = named[payload["alert_id"]]
            messages_out.append(json.dumps([payload, str(at), region, correlation], sort_keys=True,
                                           ensure_ascii=False))
        events = connection.execute(text("SELECT count(*) FROM case_events")).scalar()
    engine.dispose()
    return {"outcomes": dict(sorted(outcomes.items())), "events": events,
            "alerts": sorted([str(v) for v in a[1:]] for a in alerts), "messages": sorted(messages_out)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.realtime_findings", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--records", type=int, default=1500)
    parser.add_argument("--database-url", default=os.environ.get("HUB_TEST_POSTGRES_URL", DEFAULT_DATABASE_URL))
    args = parser.parse_args(argv)
    if args.backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            url = f"sqlite:///{folder}/findings.sqlite"
            engine = make_engine(url)
            upgrade(engine)
            with unit_of_work(make_session_factory(engine)) as session:
                seed_demo(session, now=START)
            engine.dispose()
            found = run(url, args.rounds, args.records)
    else:
        with fresh_database(args.database_url) as url:
            found = run(url, args.rounds, args.records)
    with open(args.out, "w", encoding="utf-8") as out:
        json.dump(found, out, ensure_ascii=False, indent=0, sort_keys=True)
    print(f"{args.out}: {found['outcomes']}, {found['events']} events, {len(found['alerts'])} alerts "
          f"{dict(Counter((a[2], a[4]) for a in found['alerts']))}, {len(found['messages'])} alert.raised.v1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
