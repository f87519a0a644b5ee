"""Serve a benchmark's app factory as `hub api` serves the hub: uvicorn, and with several workers each worker on a
listening socket of its own (hub/serving.py) — for both sides of a comparison, so that it compares the apps and not
which worker process the client's connections happened to land in.

    python -m bench.serve MODULE:FACTORY --port PORT [--workers N]
"""

from __future__ import annotations

import argparse
import sys

from hub.serving import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("factory", help="MODULE:FACTORY, a function returning the ASGI app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    serve(args.factory, host=args.host, port=args.port, workers=args.workers, factory=True, log_level="warning",
          access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
