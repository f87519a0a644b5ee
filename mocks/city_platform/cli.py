"""``python -m mocks.city_platform``: the simulator from the command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from mocks.city_data import (
    CITIES,
)
from mocks.city_platform.simulator import run
from mocks.city_platform.spec import DEFAULT_SECRET, FAULT_KINDS, SimulatorError

DESCRIPTION = "City platform simulator: a municipal approval platform that reports its cases to the province over AMQP."


def parse_faults(values: Sequence[str]) -> dict[str, int]:
    faults: dict[str, int] = {}
    for value in values:
        for part in value.split(","):
            kind, sep, number = part.partition("=")
            if not sep or kind.strip() not in FAULT_KINDS or not number.strip().isdigit():
                raise argparse.ArgumentTypeError(f"--fault takes KIND=N with KIND one of {', '.join(FAULT_KINDS)}")
            faults[kind.strip()] = faults.get(kind.strip(), 0) + int(number)
    return faults


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="city-platform", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partner", default=os.environ.get("CITY_PLATFORM_PARTNER", "shenyang"),
                        help=f"city code ({', '.join(CITIES)})")
    parser.add_argument("--amqp-url", default=os.environ.get("CITY_PLATFORM_AMQP_URL", "amqp://127.0.0.1:5672/%2F"),
                        help="broker and vhost; without a user the partner's code and --secret are used")
    parser.add_argument("--secret", default=os.environ.get("CITY_PLATFORM_SECRET", DEFAULT_SECRET))
    parser.add_argument("--region", help="the partner's region (default: the city's)")
    parser.add_argument("--count", type=int, default=100, help="messages to publish, faulty ones included")
    parser.add_argument("--fault", action="append", default=[], metavar="KIND=N",
                        help="faulty messages to mix in (repeatable, or comma-separated); "
                             f"KIND: {', '.join(FAULT_KINDS)}")
    parser.add_argument("--seed", type=int, help="makes the run reproducible")
    parser.add_argument("--item", action="append", default=[], metavar="CODE", help="item code to report cases of")
    parser.add_argument("--catalogue-url", help="the hub's base URL, to read item codes from /api/v1/items")
    parser.add_argument("--no-events", action="store_true", help="do not consume the hub's events")
    parser.add_argument("--events-idle", type=float, default=2.0,
                        help="stop listening once no event came for this many seconds")
    parser.add_argument("--json", dest="json_path", help="also write the report (and expectations) to this file")
    parser.add_argument("--list-expected", action="store_true",
                        help="with --json: include every message id to be applied / dead-lettered")
    parser.add_argument("-v", "--verbose", action="store_true", help="log reconnects and pika's own messages")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("pika").setLevel(logging.CRITICAL)  # its connection errors are reported below
    try:
        faults = parse_faults(args.fault)
        report = run(args.amqp_url, args.partner, args.count, faults, args.seed, region=args.region,
                     items=args.item or None, catalogue_url=args.catalogue_url, secret=args.secret,
                     consume_events=not args.no_events, events_idle_s=args.events_idle)
    except (SimulatorError, ValueError, argparse.ArgumentTypeError, OSError) as exc:
        print(f"city-platform: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    if args.json_path:
        document = report.to_dict()
        if args.list_expected:
            document["expected_apply"] = sorted(report.expected_apply)
            document["expected_dead"] = report.expected_dead
            document["cases"] = {k: vars(v) for k, v in report.cases.items()}
        with open(args.json_path, "w", encoding="utf-8") as handle:
            json.dump(document, handle, ensure_ascii=False, indent=2)
    return 0
