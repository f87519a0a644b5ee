"""Instructions per partner record of the inbound handler, under callgrind: a figure that does not move with the
machine's load (docs/performance-record-path.md).

    .venv/bin/python -m bench.callgrind_ingest [--records 500] [--seed 4242] [--database-url URL] [--out FILE]
                                               [--freeze] [--batch N]

Runs itself under ``valgrind --tool=callgrind --instr-atstart=no``: a fresh database (as ``bench.ingest``), the
real-time hook on, 300 records of warm-up, then ``--records`` planned by the city platform simulator handed to
``InboundHandler.handle_batch`` in batches of ``--batch`` (default the hub's ``HUB_INGEST_BATCH_SIZE``, 200; the
counts written down before 2026-12-02 used 50) — callgrind counts only those calls (switched on and off around
them with ``callgrind_control``), not start-up, imports, warm-up or the simulator's planning. Prints the total and
the instructions per record. Needs valgrind (``apt-get install -y valgrind``).

``--freeze``: after the warm-up, start-up's heap is frozen out of the garbage collector's walks, as ``hub worker``
freezes it at start (hub/heap.py). Without it a full collection walks the whole heap now and then (≈5-6 % of the
count here, in lumps: the count of a run then depends on where those collections fall, docs/performance-plain.md).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

from bench.ingest import DEFAULT_DATABASE_URL
from hub.settings import Settings

WARM_UP = 300


def counted_run(records: int, seed: int, database_url: str, *, batch: int, freeze: bool = False) -> None:
    """The measured process (under valgrind): warm up, then the counted records."""
    from bench import ingest_handler
    from bench.ingest import BENCH_AUDIT_KEY, PARTNER, bench_messages, fresh_database
    from hub.clock import SystemClock
    from hub.db import make_engine, make_session_factory
    from hub.exchange.consumer import InboundHandler
    from mocks.city_platform import CityPlatform

    with fresh_database(database_url) as url:
        engine = make_engine(url)
        handler = InboundHandler(make_session_factory(engine), SystemClock(), "hub", BENCH_AUDIT_KEY,
                                 batch_size=batch)
        ingest_handler.set_realtime(True)
        ingest_handler.one_round(handler, engine, WARM_UP, seed=1)
        if freeze:
            from hub.heap import prepare_heap_for_serving

            prepare_heap_for_serving()
        messages = bench_messages(CityPlatform("amqp://unused", PARTNER, seed=seed).plan(records))
        _instrument("on")
        outcomes: dict[str, int] = {}
        for i in range(0, len(messages), batch):
            for outcome in handler.handle_batch(messages[i:i + batch]):
                outcomes[outcome.kind] = outcomes.get(outcome.kind, 0) + 1
        _instrument("off")
        print(f"outcomes {outcomes}", file=sys.stderr)
        engine.dispose()


def _instrument(switch: str) -> None:
    subprocess.run(["callgrind_control", "-i", switch, str(os.getpid())], check=True, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.callgrind_ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=500)
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--database-url", default=os.environ.get("HUB_TEST_POSTGRES_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--out", default="callgrind.ingest.out", help="callgrind's output file")
    parser.add_argument("--freeze", action="store_true", help="freeze the heap after the warm-up, as hub worker does")
    parser.add_argument("--batch", type=int, default=Settings.model_fields["ingest_batch_size"].default,
                        help="records per handle_batch call (default: the hub's)")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)  # the process under valgrind
    args = parser.parse_args(argv)
    if args.inner:
        counted_run(args.records, args.seed, args.database_url, batch=args.batch, freeze=args.freeze)
        return 0
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={args.out}",
               sys.executable, "-m", "bench.callgrind_ingest", "--inner", "--records", str(args.records),
               "--seed", str(args.seed), "--database-url", args.database_url, "--batch", str(args.batch),
               *(["--freeze"] if args.freeze else [])]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    total = _total(Path(args.out))
    print(f"{args.records} records in batches of {args.batch}: {total / 1e6:,.1f} M instructions, "
          f"{total / args.records / 1e6:.3f} M per record "
          f"(load {os.getloadavg()[0]:.2f})")
    return 0


def _total(out: Path) -> int:
    found = re.search(r"^totals:\s+(\d+)", out.read_text(), re.MULTILINE)
    if found is None:
        raise SystemExit(f"no totals in {out}")
    return int(found.group(1))


if __name__ == "__main__":
    sys.exit(main())
