"""What an idle hub costs: CPU of `hub up` and of `hub worker` while nothing happens, as % of one core.

    .venv/bin/python -m bench.idle [--window 30] [--rounds 3] [--amqp-url URL] [--only up|worker]

What one run does:

1. `hub up` (SQLite in a temporary data folder, the in-process bus, the mocks it starts on a free block of
   ports): waits until /health answers and a few seconds more (start-up work settles), then reads the
   process's user + system CPU time (Linux /proc, all threads) at the start and end of ``--window`` seconds
   in which no request is made;
2. `hub worker` against RabbitMQ (``--amqp-url``, else HUB_AMQP_URL, else HUB_TEST_AMQP_URL; skipped when
   none), on a SQLite file (or ``--database-url``) migrated by `hub db upgrade`, with random 40-character
   keys and ``--shards`` (HUB_INGEST_SHARDS; default the hub's, 4: its shard leases' turn every 5 s): waits until
   its consumers are up, then measures the same way;
3. prints each figure's median over ``--rounds`` windows, the per-thread busiest consumers, and the load
   average. The target is under 2 % of a core; it never fails on the number (exit 0).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

if __package__ in (None, ""):  # run as `python bench/idle.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx

from bench.machine import CLOCK_TICKS
from bench.machine import process_cpu_seconds as cpu_seconds
from hub.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
HUB = [sys.executable, "-m", "hub.cli"]
TARGET_PERCENT = 2.0
SETTLE_S = 5.0  # after ready: imports, migrations and first job ticks are start-up, not idle


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_block(size: int = 8) -> int:
    """A base port with ``size`` free ports after it (the mocks `hub up` starts)."""
    for _ in range(50):
        base = free_port()
        if base + size >= 65535:
            continue
        try:
            with contextlib.ExitStack() as stack:
                for port in range(base, base + size):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free block of ports")


def random_key() -> str:
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40))


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds per thread id."""
    result: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            result[int(task.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return result


@dataclass
class Process:
    name: str
    command: list[str]
    env: dict[str, str]
    cwd: Path
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    percents: list[float] = field(default_factory=list)
    busiest: list[tuple[int, float]] = field(default_factory=list)

    def start(self, log_path: Path) -> None:
        self.log = log_path.open("w+b")
        self.process = subprocess.Popen(self.command, cwd=self.cwd, env=self.env, stdout=self.log,
                                        stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail(self, lines: int = 30) -> str:
        if self.log is None:
            return ""
        self.log.flush()
        self.log.seek(0)
        return "\n".join(self.log.read().decode(errors="replace").splitlines()[-lines:])

    def measure(self, window_s: float) -> float:
        before, threads_before, started = cpu_seconds(self.pid), thread_cpu(self.pid), time.monotonic()
        time.sleep(window_s)
        after, threads_after, elapsed = cpu_seconds(self.pid), thread_cpu(self.pid), time.monotonic() - started
        percent = 100.0 * (after - before) / elapsed
        self.percents.append(percent)
        deltas = {tid: cpu - threads_before.get(tid, 0.0) for tid, cpu in threads_after.items()}
        self.busiest = sorted(((tid, 100.0 * d / elapsed) for tid, d in deltas.items() if d > 0),
                              key=lambda pair: -pair[1])[:3]
        return percent

    def stop(self) -> None:
        if self.alive():
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log is not None:
            self.log.close()


def wait_for(condition: object, what: Process, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not what.alive():
            raise RuntimeError(f"{what.name} exited:\n{what.tail()}")
        with contextlib.suppress(Exception):
            if condition():  # type: ignore[operator]
                return
        time.sleep(0.3)
    raise RuntimeError(f"{what.name} not ready after {timeout_s:.0f}s:\n{what.tail()}")


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    # Only the settings given here: a registry or broker from the caller's shell would change what idles.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "BENCH_"))}
    return {**env, "HUB_LOG_LEVEL": "INFO", **extra}


def hub_up(data_dir: Path) -> tuple[Process, str]:
    port = free_port()
    env = clean_env({"HUB_DATA_DIR": str(data_dir), "HUB_MOCK_REGISTRIES_BASE_PORT": str(free_block())})
    process = Process("hub up", [*HUB, "up", "--port", str(port)], env, ROOT)
    return process, f"http://127.0.0.1:{port}/health"


def hub_worker(data_dir: Path, amqp_url: str, database_url: str | None, shards: int) -> Process:
    env = clean_env({
        "HUB_DATA_DIR": str(data_dir),
        "HUB_DATABASE_URL": database_url or f"sqlite:///{(data_dir / 'worker.db').as_posix()}",
        "HUB_AMQP_URL": amqp_url, "HUB_SECRET_KEY": random_key(), "HUB_AUDIT_KEY": random_key(),
        "HUB_INGEST_SHARDS": str(shards),  # issue 8, part shards: its leases' turn every 5 s (default) when > 0
    })
    subprocess.run([*HUB, "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    return Process("hub worker", [*HUB, "worker"], env, ROOT)


def worker_ready(process: Process) -> bool:
    # Consumers and job threads started: the worker logs it once (JSON or text, whatever the level).
    return len(thread_cpu(process.pid)) >= 5 and "worker started" in process.tail(200)


def measure(process: Process, ready: object, window_s: float, rounds: int, log_dir: Path) -> None:
    process.start(log_dir / f"{process.name.replace(' ', '-')}.log")
    try:
        wait_for(ready, process)
        time.sleep(SETTLE_S)
        for index in range(rounds):
            percent = process.measure(window_s)
            print(f"  {process.name:<10} round {index + 1}: {percent:6.2f} % of a core over {window_s:.0f} s",
                  flush=True)
    finally:
        process.stop()


def report(process: Process) -> None:
    if not process.percents:
        print(f"{process.name:<10}  not measured")
        return
    median = statistics.median(process.percents)
    verdict = "meets" if median < TARGET_PERCENT else "MISSES"
    threads = ", ".join(f"tid {tid} {p:.2f} %" for tid, p in process.busiest) or "none"
    print(f"{process.name:<10}  median {median:6.2f} % of a core ({verdict} the {TARGET_PERCENT:.0f} % target); "
          f"busiest threads in the last window: {threads}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--window", type=float, default=30.0, help="seconds per measurement window")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--amqp-url", default=os.environ.get("HUB_AMQP_URL") or os.environ.get("HUB_TEST_AMQP_URL"))
    parser.add_argument("--only", choices=("up", "worker"))
    parser.add_argument("--database-url", help="the worker's database (default: a fresh SQLite file); on "
                        "PostgreSQL the relay also LISTENs for NOTIFY")
    default_shards = Settings.model_fields["ingest_shards"].default
    parser.add_argument("--shards", type=int, default=default_shards, help="the worker's HUB_INGEST_SHARDS (default "
                        f"{default_shards}, the hub's: routing by case; 0: the one queue; the vhost's topology is "
                        "switched to it)")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    processes: list[Process] = []
    with tempfile.TemporaryDirectory(prefix="hub-idle-") as tmp:
        base = Path(tmp)
        if args.only in (None, "up"):
            (base / "up").mkdir()
            up, health = hub_up(base / "up")
            processes.append(up)
            measure(up, lambda: httpx.get(health, timeout=2).status_code == 200, args.window, args.rounds, base)
        if args.only in (None, "worker"):
            if not args.amqp_url:
                print("hub worker: skipped (no --amqp-url, HUB_AMQP_URL or HUB_TEST_AMQP_URL)")
            else:
                (base / "worker").mkdir()
                worker = hub_worker(base / "worker", args.amqp_url, args.database_url, args.shards)
                processes.append(worker)
                measure(worker, lambda: worker_ready(worker), args.window, args.rounds, base)
    load_after = os.getloadavg()
    print()
    for process in processes:
        report(process)
    print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f}, "
          f"after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f} ({os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
