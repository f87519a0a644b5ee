"""Application submissions per second through the real stack, beside a minimal baseline.

    .venv/bin/python -m bench.submit [--requests 2000] [--concurrency 16] [--database-url URL]
                                     [--warmup [N]] [--rounds 3] [--workers 1,2] [--client raw|httpx]
                                     [--json PATH]

What it does, in one run:

1. creates a fresh PostgreSQL database (``hub_bench_<pid>``, owned by the role of ``--database-url``,
   which needs CREATEDB), migrates it with ``hub.migrate.upgrade`` and seeds the demo province;
2. for each count N of ``--workers`` (default 1 then 2), starts two servers, each uvicorn with N
   workers on 127.0.0.1 as ``hub api --workers N`` runs it (``bench.serve``: with N > 1 each worker
   accepts on a socket of its own, hub/serving.py): the hub (``bench.hub_app``:
   ``hub.app.create_app``, log level WARNING) and the baseline (``bench.baseline_app``: one endpoint
   inserting the JSON body into one table, same pool settings);
3. sends the same kind of body — a valid application for the item "physician-practice-registration"
   with a different, valid citizen ID number each time — ``--requests`` times at ``--concurrency``
   to each server, alternating baseline, hub, hub, baseline, … (``--rounds``); every answer must be
   201, otherwise it lists the failures and exits 1;
4. prints, per worker count and side, the **median over the rounds** of each figure: rate, p50/p95/p99
   latency, server CPU per request (every process of the server), SQL statements and commits per
   request (counted inside the servers at the driver, ``bench.counting``), the ratio hub/baseline, and
   the 1-minute load average before and after each round; then all figures as one JSON line (also to
   ``--json PATH``); drops the database.

The target is a ratio of at least 0.5; the benchmark says whether it is met and exits 0 either way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from importlib.resources import files
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python bench/submit.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from bench import counting
from bench.database import drop_database
from bench.machine import CORES, cores_busy, cores_stolen, database_cpu_seconds, machine_ticks
from bench.machine import process_cpu_seconds as own_cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgresql+psycopg://hub_test:hub_test@127.0.0.1:5432/hub_test"
ITEM_KEY = "physician-practice-registration"
FORM_FILE = f"{ITEM_KEY}.v1.json"
HUB_PATH = "/api/v1/applications"
BASELINE_PATH = "/submit"
TARGET_RATIO = 0.5
REQUEST_TIMEOUT_S = 60.0


# --- request bodies ---------------------------------------------------------------------------


def citizen_ids(count: int, *, region: str = "210102") -> list[str]:
    """``count`` distinct valid GB 11643 numbers (birth dates from 1970 on, sequence 001-999)."""
    from workflow.identifiers import citizen_id_check_char

    numbers = []
    for i in range(count):
        born = date(1970, 1, 1) + timedelta(days=i // 999)
        first17 = f"{region}{born:%Y%m%d}{i % 999 + 1:03d}"
        numbers.append(first17 + citizen_id_check_char(first17))
    return numbers


def example_form() -> dict[str, Any]:
    schema = json.loads((files("schemas") / "forms" / FORM_FILE).read_text(encoding="utf-8"))
    return schema["examples"][0]


def application_bodies(item_code: str, count: int) -> list[bytes]:
    form = example_form()
    bodies = []
    for number in citizen_ids(count):
        application = {
            "item_code": item_code,
            "applicant": {
                "type": "1", "name": "张三", "id_type": "citizen_id", "id_number": number,
                "phone": "13812345678",
            },
            "form": form,
        }
        bodies.append(json.dumps(application, ensure_ascii=False).encode())
    return bodies


# --- the database -----------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(admin_url: str, name: str, *, keep: bool) -> Iterator[str]:
    """Create database ``name`` on the server of ``admin_url``; yield its URL; drop it afterwards."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    url: URL = make_url(admin_url).set(database=name)
    owner = make_url(admin_url).username
    try:
        drop_database(admin, name)
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}" OWNER "{owner}" ENCODING \'UTF8\''))
        yield url.render_as_string(hide_password=False)
    finally:
        if not keep:
            with contextlib.suppress(Exception):
                drop_database(admin, name)
        admin.dispose()


# As in production, where `hub worker` keeps the metrics' daily roll-up caught up to yesterday: each case write
# then runs the whole dirty-day trigger of migration 0015, not its early exit for "nothing rolled up yet".
ROLLED_UP_TO_YESTERDAY = "UPDATE metrics_rollup SET rolled_until = CURRENT_DATE - 1 WHERE id = 1"


def prepare_database(url: str) -> None:
    """Migrate with Alembic (the only way the hub's schema is made) and seed the demo province."""
    from bench.baseline_app import TABLE_DDL
    from hub.db import make_engine, make_session_factory, unit_of_work
    from hub.migrate import upgrade
    from hub.seed.service import seed_demo

    engine = make_engine(url)
    try:
        upgrade(engine)
        with unit_of_work(make_session_factory(engine)) as session:
            seed_demo(session, now=datetime.now(UTC))
        with engine.begin() as connection:
            connection.execute(text(ROLLED_UP_TO_YESTERDAY))
        # The baseline's table, made once here: two baseline workers would race on CREATE TABLE.
        with engine.begin() as connection:
            connection.execute(text(TABLE_DDL))
    finally:
        engine.dispose()


# --- the servers ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    name: str
    factory: str
    env: dict[str, str]
    health_path: str
    workers: int = 1
    stats_dir: Path | None = None
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    log: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_dir: Path) -> None:
        self.port = free_port()
        self.stats_dir = log_dir / f"stats-{self.name}-{self.workers}"
        self.stats_dir.mkdir()
        self.log = (log_dir / f"{self.name}-{self.workers}.log").open("w+b")
        # Served as `hub api` serves the hub (bench/serve.py): several workers each accept on a socket of their own.
        command = [sys.executable, "-m", "bench.serve", self.factory, "--port", str(self.port),
                   "--workers", str(self.workers)]
        # The servers see only the settings the benchmark gives them: no HUB_* from the caller's
        # shell (a configured registry would put its network calls into the measurement).
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "BENCH_"))}
        self.process = subprocess.Popen(
            command, cwd=ROOT, env={**env, **self.env, "BENCH_STATS_DIR": str(self.stats_dir)},
            stdout=self.log, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Until /health answers and every worker process has built its app (its counter file exists)."""
        assert self.stats_dir is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} server exited ({self.process.returncode}):\n{self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if (len(list(self.stats_dir.iterdir())) >= self.workers
                        and httpx.get(self.base_url + self.health_path, timeout=2).status_code == 200):
                    return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} server not ready after {timeout:.0f}s:\n{self.tail()}")

    def cpu_seconds(self) -> float:
        """User + system CPU time so far of the server's processes: uvicorn and its workers (Linux /proc)."""
        assert self.process is not None
        return sum(process_cpu_seconds(pid) for pid in process_tree(self.process.pid))

    def statements(self) -> tuple[int, int, int]:
        """SQL statements, commits and rollbacks the server's processes have sent so far."""
        assert self.stats_dir is not None
        return counting.read_totals(self.stats_dir, self.name)

    def tail(self, lines: int = 40) -> str:
        if self.log is None:
            return ""
        self.log.flush()
        self.log.seek(0)
        return "\n".join(self.log.read().decode(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log is not None:
            self.log.close()


def process_cpu_seconds(pid: int) -> float:
    try:
        return own_cpu_seconds(pid)
    except OSError:
        return 0.0  # exited since it was listed


def process_tree(root: int) -> list[int]:
    """``root`` and every process descending from it (uvicorn's workers are its children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


# --- the load generator -----------------------------------------------------------------------

# A poster sends one body to one path and returns (status, response body).
Poster = Callable[[bytes], Awaitable[tuple[int, bytes]]]


class RawHttpConnection:
    """A keep-alive HTTP/1.1 connection that does just what the benchmark needs, cheaply.

    The load generator shares two cores with the servers and PostgreSQL; the fewer cycles it uses
    per request, the less it steals from the side being measured (``--client httpx`` compares).
    """

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port = host, port
        self.head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            "Accept: application/json\r\nContent-Length: "
        ).encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> tuple[int, bytes]:
        try:
            return await self._post(body)
        except BaseException:
            await self.close()  # the next request opens a fresh connection
            raise

    async def _post(self, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(self.head + str(len(body)).encode() + b"\r\n\r\n" + body)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                key, _, value = line.partition(b":")
                headers[key.strip().lower()] = value.strip()
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            content = await self._read_chunked()
        else:
            content = await self.reader.readexactly(int(headers.get(b"content-length", b"0")))
        if headers.get(b"connection", b"").lower() == b"close":
            await self.close()
        return status, content

    async def _read_chunked(self) -> bytes:
        assert self.reader is not None
        parts = []
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await self.reader.readexactly(size + 2)
            if size == 0:
                return b"".join(parts)
            parts.append(chunk[:-2])

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None


@dataclass
class Failure:
    index: int
    status: int | None
    detail: str


@dataclass
class Round:
    server: str
    requests: int
    concurrency: int
    seconds: float
    latencies_ms: list[float] = field(repr=False)
    failures: list[Failure]
    server_cpu_s: float
    client_cpu_s: float
    statements: int = 0
    commits: int = 0
    rollbacks: int = 0
    load_before: float = 0.0
    load_after: float = 0.0
    database_cpu_s: float = 0.0  # every PostgreSQL process's CPU over the round (bench.machine)
    machine_cores_busy: float = 0.0  # the whole machine's, client and everything else included
    machine_cores_stolen: float = 0.0  # of which the hypervisor's other guests (steal; bench.machine.cores_stolen)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    def figures(self) -> dict[str, Any]:
        return {
            "rate_per_s": round(self.rate, 1),
            "seconds": round(self.seconds, 3),
            "p50_ms": round(self.percentile(50), 2),
            "p95_ms": round(self.percentile(95), 2),
            "p99_ms": round(self.percentile(99), 2),
            "max_ms": round(max(self.latencies_ms, default=float("nan")), 2),
            "server_cpu_ms_per_request": round(1000 * self.server_cpu_s / self.requests, 3),
            "client_cpu_ms_per_request": round(1000 * self.client_cpu_s / self.requests, 3),
            "sql_statements_per_request": round(self.statements / self.requests, 2),
            "commits_per_request": round(self.commits / self.requests, 2),
            "rollbacks_per_request": round(self.rollbacks / self.requests, 3),
            "load_average_1m_before": round(self.load_before, 2),
            "load_average_1m_after": round(self.load_after, 2),
            "database_cpu_ms_per_request": round(1000 * self.database_cpu_s / self.requests, 3),
            "machine_cores_busy": round(self.machine_cores_busy, 2),
            "machine_cores_stolen": round(self.machine_cores_stolen, 2),
        }


def median_figures(rounds: list[Round]) -> dict[str, Any]:
    """Each figure's median over the rounds (figure by figure: the medians may come from different rounds)."""
    each = [r.figures() for r in rounds]
    return {key: round(statistics.median(f[key] for f in each), 3) for key in each[0]}


async def send_all(
    make_poster: Callable[[], Awaitable[tuple[Poster, Callable[[], Awaitable[None]]]]],
    bodies: list[bytes], concurrency: int, expect: int = 201,
) -> tuple[float, list[float], list[Failure]]:
    """Send every body once with ``concurrency`` workers, each on its own keep-alive connection."""
    latencies: list[float] = [0.0] * len(bodies)
    failures: list[Failure] = []
    next_index = iter(range(len(bodies)))
    posters = [await make_poster() for _ in range(concurrency)]

    async def worker(post: Poster) -> None:
        for index in next_index:
            started = time.perf_counter()
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    status, content = await post(bodies[index])
            except Exception as exc:
                failures.append(Failure(index, None, f"{type(exc).__name__}: {exc}"))
                continue
            latencies[index] = (time.perf_counter() - started) * 1000
            if status != expect:
                failures.append(Failure(index, status, content[:500].decode(errors="replace")))

    started = time.perf_counter()
    await asyncio.gather(*(worker(post) for post, _ in posters))
    elapsed = time.perf_counter() - started
    for _, close in posters:
        await close()
    return elapsed, latencies, failures


def poster_factory(
    kind: str, base_url: str, path: str, concurrency: int
) -> tuple[Callable[[], Awaitable[tuple[Poster, Callable[[], Awaitable[None]]]]], httpx.AsyncClient | None]:
    url = httpx.URL(base_url)
    if kind == "raw":
        async def make_raw() -> tuple[Poster, Callable[[], Awaitable[None]]]:
            connection = RawHttpConnection(url.host, url.port or 80, path)
            return connection.post, connection.close
        return make_raw, None

    client = httpx.AsyncClient(
        base_url=base_url, timeout=60,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        headers={"Content-Type": "application/json"},
    )

    async def post(body: bytes) -> tuple[int, bytes]:
        response = await client.post(path, content=body)
        return response.status_code, response.content

    async def no_close() -> None:
        return None

    async def make_httpx() -> tuple[Poster, Callable[[], Awaitable[None]]]:
        return post, no_close

    return make_httpx, client


async def run_round(server: Server, path: str, bodies: list[bytes], concurrency: int, client: str) -> Round:
    make_poster, shared = poster_factory(client, server.base_url, path, concurrency)
    try:
        load_before = os.getloadavg()[0]
        sql_before = server.statements()
        cpu_before, database_before, machine_before = server.cpu_seconds(), database_cpu_seconds(), machine_ticks()
        client_before = resource.getrusage(resource.RUSAGE_SELF)
        seconds, latencies, failures = await send_all(make_poster, bodies, concurrency)
        client_after = resource.getrusage(resource.RUSAGE_SELF)
        server_cpu = server.cpu_seconds() - cpu_before
        machine_after = machine_ticks()
        database_cpu, machine = database_cpu_seconds() - database_before, cores_busy(machine_before, machine_after)
        stolen = cores_stolen(machine_before, machine_after)
        sql = [after - before for after, before in zip(server.statements(), sql_before, strict=True)]
        load_after = os.getloadavg()[0]
    finally:
        if shared is not None:
            await shared.aclose()
    client_cpu = (client_after.ru_utime - client_before.ru_utime) + (client_after.ru_stime - client_before.ru_stime)
    return Round(server.name, len(bodies), concurrency, seconds, latencies, failures, server_cpu, client_cpu,
                 statements=sql[0], commits=sql[1], rollbacks=sql[2], load_before=load_before,
                 load_after=load_after, database_cpu_s=database_cpu, machine_cores_busy=machine,
                 machine_cores_stolen=stolen)


# --- the run ----------------------------------------------------------------------------------


def find_item_code(base_url: str) -> str:
    response = httpx.get(f"{base_url}/api/v1/items", params={"q": ITEM_KEY, "limit": 100}, timeout=30)
    response.raise_for_status()
    for item in response.json()["items"]:
        if item["key"] == ITEM_KEY:
            return str(item["code"])
    raise RuntimeError(f"the seeded catalogue has no item with key {ITEM_KEY!r}")


def report_failures(round_: Round, server: Server) -> None:
    print(f"\n{round_.server}: {len(round_.failures)} of {round_.requests} requests did not answer 201",
          file=sys.stderr)
    by_status: dict[str, int] = {}
    for failure in round_.failures:
        by_status[str(failure.status)] = by_status.get(str(failure.status), 0) + 1
    print(f"  by status: {by_status}", file=sys.stderr)
    for failure in round_.failures[:5]:
        print(f"  #{failure.index}: {failure.status} {failure.detail}", file=sys.stderr)
    print(f"last lines of the {round_.server} server's log:\n{server.tail(60)}", file=sys.stderr)


def worker_counts(value: str) -> list[int]:
    try:
        counts = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("a comma-separated list of worker counts, e.g. 1,2") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("worker counts must be positive, e.g. 1,2")
    return counts


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.submit", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--requests", type=int, default=2000, help="submissions per round (default 2000)")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL,
                        help="a PostgreSQL role with CREATEDB; the benchmark makes its own database "
                             "on that server (default: the hub_test URL)")
    parser.add_argument("--warmup", type=int, nargs="?", const=200, default=200, metavar="N",
                        help="requests sent to each server before measuring (default 200; 0 = none)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating measurements per server; each figure is the median (default 3)")
    parser.add_argument("--workers", type=worker_counts, default=[1, 2], metavar="N[,N…]",
                        help="uvicorn worker processes per server, one measurement each (default 1,2)")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw",
                        help="load generator: a minimal keep-alive HTTP/1.1 client (default) or httpx")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures to this file")
    parser.add_argument("--keep-database", action="store_true", help="do not drop the benchmark database")
    args = parser.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--requests, --concurrency and --rounds must be positive, --warmup not negative")
    if not make_url(args.database_url).get_backend_name().startswith("postgresql"):
        parser.error("--database-url must be a PostgreSQL URL")
    return args


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform(), "load_average_1m": round(os.getloadavg()[0], 2)}


def warn_if_busy() -> None:
    """Other processes on the machine skew both rates; the ratio suffers less (rounds alternate)."""
    load = os.getloadavg()[0]
    if load > (os.cpu_count() or 1):
        print(f"warning: load average {load:.1f} on {os.cpu_count()} CPUs before the run — "
              "other work competes with the benchmark; compare the ratio, not the absolute rates",
              file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run: Callable[[Any], Any] = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop  # the client's event loop costs less CPU per request on uvloop

        run = uvloop.run
    database = f"hub_bench_{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="hub-bench-") as tmp, \
            fresh_database(args.database_url, database, keep=args.keep_database) as url:
        print(f"database {database}: migrating and seeding …", flush=True)
        prepare_database(url)
        load_before = round(os.getloadavg()[0], 2)
        warn_if_busy()
        runs = []
        for offset, workers in enumerate(args.workers):
            hub = Server("hub", "bench.hub_app:app_from_env",
                         {"BENCH_DATABASE_URL": url, "BENCH_DATA_DIR": tmp, "HUB_LOG_LEVEL": "WARNING"},
                         "/health", workers=workers)
            baseline = Server("baseline", "bench.baseline_app:app_from_env", {"BENCH_DATABASE_URL": url},
                              "/health", workers=workers)
            try:
                for server in (hub, baseline):
                    server.start(Path(tmp))
                for server in (hub, baseline):
                    server.wait_ready()
                # Each worker count gets its own citizen ID numbers: no submission repeats an earlier one.
                first_id = offset * (args.warmup + args.rounds * args.requests)
                result = run(measure(args, hub, baseline, workers, first_id))
            except (RuntimeError, httpx.HTTPError) as exc:
                print(f"benchmark setup failed: {exc}", file=sys.stderr)
                return 2
            finally:
                for server in (hub, baseline):
                    server.stop()
            if result is None:
                return 1
            runs.append(result)
    figures = {
        "benchmark": "submit",
        "date": datetime.now(UTC).date().isoformat(),
        "requests": args.requests,
        "concurrency": args.concurrency,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "client": args.client,
        "statistic": "median over the rounds, figure by figure",
        "machine": {**machine(), "load_average_1m_before": load_before},
        "target_ratio": TARGET_RATIO,
        "runs": runs,
    }
    print_summary(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(figures, ensure_ascii=False))
    return 0


async def measure(
    args: argparse.Namespace, hub: Server, baseline: Server, workers: int, first_id: int
) -> dict[str, Any] | None:
    """Warm-up, then ``--rounds`` alternating rounds; the run's figures, or None after a non-201 answer."""
    item_code = find_item_code(hub.base_url)
    total = args.warmup + args.rounds * args.requests
    bodies = application_bodies(item_code, first_id + total)[first_id:]
    print(f"\n{workers} uvicorn worker(s) per server — item {ITEM_KEY} = {item_code}; {args.requests} "
          f"requests × {args.rounds} rounds per server at concurrency {args.concurrency} "
          f"({args.client} client, {os.cpu_count()} CPUs)", flush=True)

    sides = {"baseline": (baseline, BASELINE_PATH), "hub": (hub, HUB_PATH)}
    if args.warmup:
        for name, (server, path) in sides.items():
            warm = await run_round(server, path, bodies[: args.warmup], args.concurrency, args.client)
            if warm.failures:
                report_failures(warm, server)
                return None
            print(f"  warm-up {name:8} {warm.rate:8.1f} req/s", flush=True)

    rounds: dict[str, list[Round]] = {"baseline": [], "hub": []}
    offset = args.warmup
    for number in range(args.rounds):
        # Each round has its own ID numbers; the order alternates so neither side always goes first.
        order = ("baseline", "hub") if number % 2 == 0 else ("hub", "baseline")
        for name in order:
            server, path = sides[name]
            chunk = bodies[offset : offset + args.requests]
            result = await run_round(server, path, chunk, args.concurrency, args.client)
            if result.failures:
                report_failures(result, server)
                return None
            rounds[name].append(result)
            print(f"  round {number + 1} {name:8} {result.rate:8.1f} req/s  p50 {result.percentile(50):6.1f} ms"
                  f"  p95 {result.percentile(95):6.1f} ms  CPU {1000 * result.server_cpu_s / result.requests:5.2f}"
                  f" ms/req  PostgreSQL {1000 * result.database_cpu_s / result.requests:5.2f} ms/req"
                  f"  machine {result.machine_cores_busy:4.2f} of {CORES} cores"
                  f" (stolen {result.machine_cores_stolen:4.2f})"
                  f"  SQL {result.statements / result.requests:4.1f}/req"
                  f"  load {result.load_before:4.1f} → {result.load_after:4.1f}", flush=True)
        offset += args.requests

    medians = {name: median_figures(results) for name, results in rounds.items()}
    ratio = medians["hub"]["rate_per_s"] / medians["baseline"]["rate_per_s"]
    pairs = [h.rate / b.rate for h, b in zip(rounds["hub"], rounds["baseline"], strict=True)]
    return {
        "workers": workers,
        "hub": medians["hub"],
        "baseline": medians["baseline"],
        "ratio": round(ratio, 3),
        "ratio_per_round": [round(r, 3) for r in pairs],
        "target_met": ratio >= TARGET_RATIO,
        "all_rounds": {name: [r.figures() for r in results] for name, results in rounds.items()},
    }


def print_summary(figures: dict[str, Any]) -> None:
    print()
    print(f"requests      {figures['requests']} per round, {figures['rounds']} rounds per side; "
          f"each figure is the median over the rounds")
    print(f"concurrency   {figures['concurrency']}")
    print(f"{'workers':9}{'side':10}{'rate req/s':>11}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
          f"{'CPU ms/req':>12}{'PG ms/req':>11}{'cores busy':>12}{'SQL/req':>9}{'commits/req':>13}")
    for run in figures["runs"]:
        for name in ("hub", "baseline"):
            side = run[name]
            print(f"{run['workers']:<9}{name:10}{side['rate_per_s']:>11.1f}{side['p50_ms']:>9.1f}"
                  f"{side['p95_ms']:>9.1f}{side['p99_ms']:>9.1f}{side['server_cpu_ms_per_request']:>12.2f}"
                  f"{side['database_cpu_ms_per_request']:>11.2f}{side['machine_cores_busy']:>12.2f}"
                  f"{side['sql_statements_per_request']:>9.2f}{side['commits_per_request']:>13.2f}")
    for run in figures["runs"]:
        verdict = "met" if run["target_met"] else "NOT met"
        loads = [r[key] for name in ("baseline", "hub") for r in run["all_rounds"][name]
                 for key in ("load_average_1m_before", "load_average_1m_after")]
        print(f"ratio {run['workers']} worker(s)  hub/baseline = {run['ratio']:.3f}  "
              f"(per round {', '.join(f'{r:.3f}' for r in run['ratio_per_round'])}; "
              f"target ≥ {figures['target_ratio']}: {verdict})  1-min load average {min(loads):.1f}–{max(loads):.1f}")
    print()


if __name__ == "__main__":
    sys.exit(main())
