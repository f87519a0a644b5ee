"""Instructions per request of the hub and of the baseline, each one uvicorn process under callgrind.

    .venv/bin/python -m bench.callgrind_submit [--requests 300] [--warmup 200] [--concurrency 16]
                                               [--database-url URL] [--sides hub,baseline] [--out DIR]
                                               [--profile]

Server CPU time per request moves ±0.15 ms between runs on a busy machine; instruction counts do not.
For each side it starts the server as ``bench.submit`` does (``uvicorn --factory``, one worker, the same
environment) under ``valgrind --tool=callgrind --instr-atstart=no`` (the imports are not counted), sends
``--warmup`` submissions, switches instrumentation on (``callgrind_control -i on``), sends ``--requests``
more at ``--concurrency``, dumps and stops the server. Prints the instructions per request of the whole
process (every thread: event loop, thread pool, libpq) and per shared object (the interpreter, libpq,
psycopg's C part, pydantic-core, uvloop, httptools …), then the ratio hub/baseline.

``--profile`` runs the sides again without valgrind, under cProfile (one profiler per thread, started after
the warm-up) and prints the Python time per request by package, and by the stages of a request (the
endpoint's own work, dependency solving, body validation, response serialisation …). Keep ``--out`` to
read the raw files with ``callgrind_annotate`` or ``pstats``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench.submit import (
    BASELINE_PATH,
    DEFAULT_DATABASE_URL,
    HUB_PATH,
    ROOT,
    RawHttpConnection,
    application_bodies,
    find_item_code,
    free_port,
    fresh_database,
    prepare_database,
    send_all,
)

FACTORIES = {"hub": "bench.hub_app:app_from_env", "baseline": "bench.baseline_app:app_from_env"}
PATHS = {"hub": HUB_PATH, "baseline": BASELINE_PATH}


def server_command(side: str, port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", FACTORIES[side], "--factory", "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1", "--app-dir", str(ROOT), "--log-level", "warning",
            "--no-access-log"]


def server_env(side: str, url: str, data_dir: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "BENCH_"))}
    env["BENCH_DATABASE_URL"] = url
    if side == "hub":
        env.update({"BENCH_DATA_DIR": data_dir, "HUB_LOG_LEVEL": "WARNING"})
    return {**env, **(extra or {})}


def wait_ready(process: subprocess.Popen[bytes], port: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited ({process.returncode}):\n{log.read_text(errors='replace')[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"server not ready after {timeout:.0f}s")


def post(port: int, path: str, bodies: list[bytes], concurrency: int) -> None:
    async def make() -> Any:
        connection = RawHttpConnection("127.0.0.1", port, path)
        return connection.post, connection.close

    _, _, failures = asyncio.run(send_all(make, bodies, concurrency))
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. {failures[0]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- callgrind ---------------------------------------------------------------------------------


def callgrind_side(side: str, url: str, bodies: list[bytes], args: argparse.Namespace, out: Path) -> Path:
    port = free_port()
    log = out / f"{side}.valgrind.log"
    output = out / f"callgrind.{side}.out"
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={output}",
               *server_command(side, port)]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=ROOT, env=server_env(side, url, str(out)), stdout=sink,
                                   stderr=subprocess.STDOUT)
    try:
        wait_ready(process, port, log, timeout=600)
        post(port, PATHS[side], bodies[: args.warmup], args.concurrency)
        subprocess.run(["callgrind_control", "-i", "on", str(process.pid)], check=True, capture_output=True)
        post(port, PATHS[side], bodies[args.warmup: args.warmup + args.requests], args.concurrency)
        subprocess.run(["callgrind_control", "-i", "off", str(process.pid)], check=True, capture_output=True)
    finally:
        stop(process)
    return output


def self_by_object(output: Path) -> dict[str, int]:
    """Self cost (Ir) per shared object from ``callgrind_annotate``'s per-function self costs."""
    result = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", "--auto=no", str(output)],
                            check=True, capture_output=True, text=True)
    totals: dict[str, int] = defaultdict(int)
    where = "?"
    for line in result.stdout.splitlines():
        parts = line.strip().split(None, 2)
        if len(parts) < 2 or not parts[0].replace(",", "").isdigit() or "PROGRAM TOTALS" in line:
            continue
        cost = int(parts[0].replace(",", ""))
        if " [" in line:  # a line without its object is the previous line's object's
            where = line.rsplit(" [", 1)[1].rstrip("]")
        totals[Path(where).name] += cost
    return dict(totals)


def total_instructions(output: Path) -> int:
    for line in output.read_text(errors="replace").splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    return 0


def object_group(name: str) -> str:
    if name.startswith("python3") or name.startswith("libpython"):
        return "interpreter (all Python code)"
    for key, group in (("libcrypto", "openssl (libpq's TLS)"), ("libssl", "openssl (libpq's TLS)"),
                       ("libpq", "libpq"), ("_psycopg", "psycopg C"), ("pydantic_core", "pydantic-core"),
                       ("uvloop", "uvloop"), ("loop.cpython", "uvloop"), ("httptools", "httptools"),
                       ("parser.cpython", "httptools"), ("jsonschema_rs", "jsonschema-rs"),
                       ("libc", "libc"), ("ld-linux", "ld.so"), ("libssl", "openssl"), ("libcrypto", "openssl"),
                       ("_json", "json C"), ("_sqlalchemy", "sqlalchemy C"), ("sqlalchemy", "sqlalchemy C"),
                       ("cresultproxy", "sqlalchemy C")):
        if key in name:
            return group
    return "other C: " + name


# --- cProfile ----------------------------------------------------------------------------------

PROFILE_SHIM = """
import cProfile, os, signal, sys, threading, time
from uvicorn.main import main
profilers = []
def start(*_):
    # Each thread's own CPU time: with the wall clock, a thread waiting for the GIL is charged the other's work.
    p = cProfile.Profile(time.thread_time); profilers.append(p); p.enable()
# Every thread is profiled from its start (the thread pool's workers are started during the warm-up, and a
# profiler can only be enabled from its own thread); SIGUSR1 forgets what was counted so far.
threading.setprofile(start)
start()
def on(*_):
    for p in list(profilers):
        p.clear()
def off(*_):
    threading.setprofile(None)
    for p in list(profilers):
        p.disable()
    import pstats
    stats = pstats.Stats(*[p for p in profilers if p.getstats()])
    stats.dump_stats(os.environ["BENCH_PROFILE_OUT"])
    open(os.environ["BENCH_PROFILE_OUT"] + ".done", "w").close()
signal.signal(signal.SIGUSR1, on)
signal.signal(signal.SIGUSR2, off)
sys.argv = ["uvicorn", *sys.argv[1:]]
main()
"""


def profile_side(side: str, url: str, bodies: list[bytes], args: argparse.Namespace, out: Path) -> Path:
    import signal

    port = free_port()
    shim = out / "profile_shim.py"
    shim.write_text(PROFILE_SHIM)
    output = out / f"profile.{side}.pstats"
    command = [sys.executable, str(shim), *server_command(side, port)[3:]]
    log = out / f"{side}.profile.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=ROOT, env=server_env(side, url, str(out),
                                                                     {"BENCH_PROFILE_OUT": str(output)}),
                                   stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_ready(process, port, log, timeout=120)
        post(port, PATHS[side], bodies[: args.warmup], args.concurrency)
        process.send_signal(signal.SIGUSR1)
        time.sleep(0.5)  # the handler runs on the next bytecode of the main thread (the idle event loop)
        post(port, PATHS[side], bodies[args.warmup: args.warmup + args.requests], args.concurrency)
        process.send_signal(signal.SIGUSR2)
        done = Path(str(output) + ".done")
        deadline = time.monotonic() + 60
        while not done.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop(process)
    return output


# The profile's per-thread CPU clock mis-charges these (the waits of idle threads, counted from before the
# profile was cleared): left out of the totals.
BLOCKING = ("<method 'acquire' of '_thread.lock' objects>", "<method 'poll' of 'select.epoll' objects>")
PACKAGES = ("uvicorn", "httptools", "h11", "uvloop", "starlette", "fastapi", "pydantic_core", "pydantic",
            "anyio", "sqlalchemy", "psycopg", "psycopg_pool", "prometheus_client", "jsonschema_rs", "jsonschema",
            "asyncio", "concurrent", "threading", "json", "hub", "workflow", "adapters", "bench", "logging")


def package_of(filename: str) -> str:
    if filename.startswith("~") or filename == "":
        return "builtins (C calls)"
    parts = Path(filename).parts
    for marker in ("site-packages", "python3.11"):
        if marker in parts:
            rest = parts[parts.index(marker) + 1:]
            if rest and rest[0] == "site-packages":
                rest = rest[1:]
            return rest[0].removesuffix(".py") if rest else filename
    for name in ("hub", "workflow", "adapters", "bench"):
        if name in parts:
            return name
    return filename


def print_profile(output: Path, requests: int) -> None:
    stats = pstats.Stats(str(output))
    by_package: dict[str, float] = defaultdict(float)
    total = 0.0
    for (filename, _, function), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        if function in BLOCKING:
            continue  # threads waiting for work or the event loop for I/O: not the request's CPU
        by_package[package_of(filename)] += tottime
        total += tottime
    print(f"  Python-visible time {1e3 * total / requests:.3f} ms/request (under cProfile), by package:")
    for name, seconds in sorted(by_package.items(), key=lambda kv: -kv[1])[:20]:
        print(f"    {name:32} {1e6 * seconds / requests:8.1f} µs  {100 * seconds / total:5.1f} %")
    print("  stages (cumulative, µs per request; nested stages overlap):")
    for label, suffix, function in STAGES:
        seconds = sum(ct for (filename, _, name), (_, _, _, ct, _) in stats.stats.items()  # type: ignore[attr-defined]
                      if name == function and filename.endswith(suffix))
        if seconds:
            print(f"    {label:58} {1e6 * seconds / requests:8.1f}")
    stats.sort_stats("cumulative").print_stats(60)


STAGES = (
    ("uvicorn: whole request from the protocol (run_asgi)", "httptools_impl.py", "run_asgi"),
    ("uvicorn: parsing (data_received)", "httptools_impl.py", "data_received"),
    ("uvicorn: sending the answer (send)", "httptools_impl.py", "send"),
    ("hub MetricsMiddleware", "hub/app.py", "__call__"),
    ("hub RequestGuardMiddleware", "hub/request_guard.py", "__call__"),
    ("starlette ServerErrorMiddleware", "starlette/middleware/errors.py", "__call__"),
    ("fastapi route handler (routing.app)", "fastapi/routing.py", "app"),
    ("fastapi dependency solving incl. body validation", "fastapi/dependencies/utils.py", "solve_dependencies"),
    ("  body validation (request_body_to_args)", "fastapi/dependencies/utils.py", "request_body_to_args"),
    ("  reading the body (Request.body)", "starlette/requests.py", "body"),
    ("  get_session (enter+exit)", "hub/deps.py", "get_session"),
    ("  submission_context", "hub/cases/router.py", "submission_context"),
    ("thread hand-off, event-loop side (run_sync_in_worker_thread)", "anyio/_backends/_asyncio.py",
     "run_sync_in_worker_thread"),
    ("worker thread: WorkerThread.run loop", "anyio/_backends/_asyncio.py", "run"),
    ("endpoint: hub submit", "hub/cases/router.py", "submit"),
    ("  service.submit_application", "hub/cases/service.py", "submit_application"),
    ("    catalog.validate_form", "hub/catalog/service.py", "validate_form"),
    ("    writes.new_case (tracking no., first event, chain)", "hub/cases/writes.py", "new_case"),
    ("    tracking_number", "hub/cases/tracking.py", "tracking_number"),
    ("    writes.insert_case (the one statement)", "hub/cases/writes.py", "insert_case"),
    ("    verification.plan_checks", "hub/verification/checks.py", "plan_checks"),
    ("    fees.assess", "hub/payments/fees.py", "assess"),
    ("    deliveries.on_case_change", "hub/deliveries/service.py", "on_case_change"),
    ("  flows.submitted (commit, receipt)", "hub/cases/flows.py", "submitted"),
    ("    Session.commit", "sqlalchemy/orm/session.py", "commit"),
    ("    presenters.receipt", "hub/cases/presenters.py", "receipt"),
    ("  receipt.model_dump_json", "pydantic/main.py", "model_dump_json"),
    ("fastapi serialize_response", "fastapi/routing.py", "serialize_response"),
    ("starlette Response.__call__", "starlette/responses.py", "__call__"),
    ("psycopg Cursor.execute", "psycopg/cursor.py", "execute"),
    ("sqlalchemy Connection.execute", "sqlalchemy/engine/base.py", "execute"),
    ("pool checkout (_ConnectionFairy._checkout)", "sqlalchemy/pool/base.py", "_checkout"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.callgrind_submit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--sides", default="hub,baseline")
    parser.add_argument("--out", type=Path, help="keep the callgrind and profile files here")
    parser.add_argument("--profile", action="store_true", help="also cProfile each side (no valgrind)")
    parser.add_argument("--no-callgrind", action="store_true")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None and not args.no_callgrind:
        parser.error("valgrind is not installed (apt-get install valgrind)")
    sides = [s for s in args.sides.split(",") if s]
    out = args.out or Path(tempfile.mkdtemp(prefix="hub-callgrind-"))
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    with fresh_database(args.database_url, f"hub_callgrind_{os.getpid()}", keep=False) as url:
        prepare_database(url)
        # Any server can name the item: start one plain hub briefly to read its code.
        port = free_port()
        probe = subprocess.Popen(server_command("hub", port), cwd=ROOT, env=server_env("hub", url, str(out)),
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(probe, port, out / "none", timeout=120)
            code = find_item_code(f"http://127.0.0.1:{port}")
        finally:
            stop(probe)
        total = args.warmup + args.requests
        for offset, side in enumerate(sides):
            bodies = application_bodies(code, (2 * offset + 2) * total)[2 * offset * total:]
            entry: dict[str, Any] = {}
            if not args.no_callgrind:
                output = callgrind_side(side, url, bodies[:total], args, out)
                instructions = total_instructions(output)
                groups: dict[str, int] = defaultdict(int)
                for name, cost in self_by_object(output).items():
                    groups[object_group(name)] += cost
                entry = {"instructions_per_request": instructions // args.requests,
                         "by_object": {k: v // args.requests for k, v in sorted(groups.items(), key=lambda kv: -kv[1])}}
                print(f"{side}: {entry['instructions_per_request'] / 1e6:.3f} M instructions per request")
                for name, cost in entry["by_object"].items():
                    print(f"    {name:40} {cost / 1e6:8.3f} M")
            if args.profile:
                output = profile_side(side, url, bodies[total:], args, out)
                print(f"{side}: cProfile")
                print_profile(output, args.requests)
            results[side] = entry
    if "hub" in results and "baseline" in results and results["hub"] and results["baseline"]:
        ratio = results["baseline"]["instructions_per_request"] / results["hub"]["instructions_per_request"]
        print(f"instructions baseline/hub = {ratio:.3f}")
    print(json.dumps(results))
    print(f"files in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
