"""Where a submission's time goes: cProfile of ``POST /api/v1/applications`` in one process.

    .venv/bin/python -m bench.profile_submit [--requests 300] [--database-url URL] [--top 40]
                                             [--sort cumulative|tottime] [--output PATH]

Builds a fresh PostgreSQL database as ``bench.submit`` does (migrated, demo province seeded), drives
the hub app with Starlette's TestClient (no network, no server: the application's own work plus the
database round trips), sends ``--warmup`` submissions unprofiled, then ``--requests`` under cProfile.
Prints the SQL statements issued per submission (by kind, counted at the driver as ``bench.submit``
counts them: the pool's pre-ping ``;`` and the outbox ``NOTIFY`` included) and the commits, the mean
wall time per submission, and the top functions; ``--output`` keeps the raw profile for
``snakeviz``/``pstats``.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/profile_submit.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.submit import (
    DEFAULT_DATABASE_URL,
    HUB_PATH,
    ITEM_KEY,
    application_bodies,
    fresh_database,
    prepare_database,
)


def statement_kind(statement: str) -> str:
    """The kind of a statement: "INSERT cases", "SELECT items", "NOTIFY hub_outbox", ";" (a pre-ping) …"""
    words = statement.split()
    verb = words[0].upper() if words else "?"
    table = ""
    if verb == "SELECT" and "FROM" in statement:
        table = statement.split("FROM", 1)[1].split()[0]
    elif verb in {"INSERT", "DELETE"} and len(words) > 2:
        table = words[2]
    elif verb in {"UPDATE", "NOTIFY"} and len(words) > 1:
        table = words[1]
    return f"{verb} {table}".strip()


def count_at_the_driver(statements: Counter[str]) -> None:
    """Count every statement psycopg sends, and every commit (``bench.counting`` does the same in the
    benchmark's servers), so pings and the commit hook's NOTIFY are in the figures too."""
    import psycopg

    execute, commit = psycopg.Cursor.execute, psycopg.Connection.commit

    def counted_execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        text = query.decode() if isinstance(query, bytes) else str(query)
        statements[statement_kind(text)] += 1
        return execute(self, query, *args, **kwargs)

    def counted_commit(self: Any) -> None:
        statements["(commit)"] += 1
        commit(self)

    psycopg.Cursor.execute = counted_execute  # type: ignore[method-assign]
    psycopg.Connection.commit = counted_commit  # type: ignore[method-assign]


def post_all(client: Any, bodies: list[bytes], headers: dict[str, str]) -> bool:
    for body in bodies:
        response = client.post(HUB_PATH, content=body, headers=headers)
        if response.status_code != 201:
            print(f"submission failed: {response.status_code} {response.text}", file=sys.stderr)
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_submit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--sort", choices=("cumulative", "tottime"), default="cumulative")
    parser.add_argument("--output", type=Path, help="write the raw cProfile data here")
    args = parser.parse_args(argv)

    from fastapi.testclient import TestClient

    from hub import logs
    from hub.app import create_app
    from hub.settings import Settings

    database = f"hub_profile_{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="hub-profile-") as tmp, \
            fresh_database(args.database_url, database, keep=False) as url:
        prepare_database(url)
        settings = Settings(_env_file=None, database_url=url, data_dir=Path(tmp), log_level="WARNING")  # type: ignore[call-arg]
        logs.configure(settings.log_level, settings.log_json)
        app = create_app(settings)
        statements: Counter[str] = Counter()
        count_at_the_driver(statements)

        headers = {"Content-Type": "application/json"}
        with TestClient(app) as client:
            found = client.get("/api/v1/items", params={"q": ITEM_KEY}).json()["items"]
            code = next(i["code"] for i in found if i["key"] == ITEM_KEY)
            bodies = application_bodies(code, args.warmup + args.requests)
            if not post_all(client, bodies[: args.warmup], headers):
                return 1
        statements.clear()
        # The app runs in TestClient's event-loop thread and the endpoint in anyio worker threads:
        # every thread started from here on gets its own profiler; the client thread gets none.
        profilers: list[cProfile.Profile] = []

        def start_profiler(*_: Any) -> None:
            profiler = cProfile.Profile()
            profilers.append(profiler)
            profiler.enable()

        threading.setprofile(start_profiler)
        try:
            with TestClient(app) as client:
                started = time.perf_counter()
                if not post_all(client, bodies[args.warmup :], headers):
                    return 1
                elapsed = time.perf_counter() - started
                measured = Counter(statements)  # the profiled submissions' statements, nothing after
        finally:
            threading.setprofile(None)  # type: ignore[arg-type]
        app.state.engine.dispose()

    per_request = {k: round(v / args.requests, 2) for k, v in measured.most_common()}
    commits = measured.pop("(commit)", 0)
    print(f"{args.requests} submissions, {1000 * elapsed / args.requests:.2f} ms each under cProfile "
          f"(sequential, TestClient; cProfile roughly doubles the time)")
    print(f"SQL statements per submission: {sum(measured.values()) / args.requests:.1f}, "
          f"commits {commits / args.requests:.1f} (at the driver: pre-pings and NOTIFY included)")
    print(json.dumps(per_request, indent=2))
    stats = pstats.Stats(*profilers)
    if args.output:
        stats.dump_stats(args.output)
    stats.sort_stats(args.sort).print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
