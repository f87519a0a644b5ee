"""What the whole machine and its PostgreSQL server spend while a benchmark runs (Linux /proc), for bench.submit
and bench.ingest: a side's own process CPU says what the code costs, these say whether the machine had any
left — on two cores shared by client, servers, PostgreSQL and RabbitMQ, a ratio can be bounded by the machine."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, every thread (raises OSError once it is gone)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_ticks() -> tuple[int, int, int]:
    """(busy, total, stolen) clock ticks of all CPUs since boot, from /proc/stat's first line (idle and iowait are
    not busy; guest time is already inside user; steal — the hypervisor running another guest on our cores — is
    busy, and counted apart as well)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(values) - values[3] - values[4], sum(values), values[7]


def cores_busy(before: tuple[int, int, int], after: tuple[int, int, int]) -> float:
    """The machine's cores busy between two `machine_ticks` readings (every process on it, not only ours)."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total * CORES if total else 0.0


def cores_stolen(before: tuple[int, int, int], after: tuple[int, int, int]) -> float:
    """The cores the hypervisor gave to other guests between two `machine_ticks` readings (inside `cores_busy`):
    on a shared virtual machine the same work then takes longer, whichever side of a benchmark runs."""
    total = after[1] - before[1]
    return (after[2] - before[2]) / total * CORES if total else 0.0


def database_cpu_seconds() -> float:
    """User + system CPU of every PostgreSQL process on this machine (the benchmarks' pooled backends live
    through a round; a backend that exits within it takes its CPU out of the sum, so this is a floor).

    With HUB_BENCH_POSTGRES_DATA set to a cluster's data directory, only that cluster's processes (its
    postmaster and the postmaster's children): a benchmark on a private cluster is then not charged with
    another cluster's work on a shared machine."""
    postmaster = _postmaster_pid(os.environ.get("HUB_BENCH_POSTGRES_DATA"))
    return _named_processes_cpu_seconds(
        "postgres", lambda pid, parent: postmaster is None or postmaster in (pid, parent))


def broker_cpu_seconds() -> float:
    """User + system CPU of every RabbitMQ node process on this machine (``beam.smp``): what the broker spends
    routing, storing (quorum queues write a log), delivering and confirming — part of a side's cost the worker's
    and PostgreSQL's CPU do not show."""
    return _named_processes_cpu_seconds("beam.smp", lambda _pid, _parent: True)


def _named_processes_cpu_seconds(name: str, keep: Callable[[int, int], bool]) -> float:
    """User + system CPU of the processes called ``name`` that ``keep(pid, parent pid)`` admits (/proc)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            if stat[stat.index("(") + 1:stat.rindex(")")] != name:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if keep(int(entry.name), int(fields[1])):
                total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def _postmaster_pid(data_directory: str | None) -> int | None:
    if not data_directory:
        return None
    return int((Path(data_directory) / "postmaster.pid").read_text().split("\n", 1)[0])


# --- two CPU-bound processes at once ------------------------------------------------------------------

INTERFERENCE_LOOPS = 1_500_000  # ≈0.2 s of one core: long enough to time, short enough to repeat


def cpu_bound_work(loops: int = INTERFERENCE_LOOPS) -> float:
    """A fixed pure-Python workload (integer arithmetic, a dict, a list: the interpreter's usual mix); returns the
    CPU seconds this process spent on it."""
    started = time.process_time()
    table: dict[int, int] = {}
    total = 0
    for i in range(loops):
        total += (i * 7) ^ (i >> 3)
        table[i & 1023] = total & 0xFFFF
    if not table:  # never: keeps the loop's results alive
        raise AssertionError(total)
    return time.process_time() - started


def _timed_copies(copies: int, loops: int) -> list[float]:
    """``copies`` forked processes run ``cpu_bound_work`` at the same moment; each one's CPU seconds."""
    context = multiprocessing.get_context("fork")
    with context.Pool(copies) as pool:
        return pool.map(cpu_bound_work, [loops] * copies)


def interference(repeats: int = 3, loops: int = INTERFERENCE_LOOPS) -> float:
    """How much more CPU a CPU-bound process needs while a second one runs beside it than alone: the median CPU
    of each of two copies at once over the median CPU of one copy alone (1.0: the cores do not interfere).

    On a VM two vCPUs may share a physical core (hyper-threads) or caches and memory bandwidth, so two workers
    each pay more per record than one alone — a part of ×2 / ×1's shortfall that no hub code causes. Alone and
    together alternate, so a neighbour's load falls on both."""
    alone: list[float] = []
    together: list[float] = []
    for _ in range(repeats):
        alone.extend(_timed_copies(1, loops))
        together.extend(_timed_copies(2, loops))
    return statistics.median(together) / statistics.median(alone)


if __name__ == "__main__":
    print(f"two CPU-bound processes at once: each needs {interference(5):.3f} x the CPU of one alone "
          f"(load {os.getloadavg()[0]:.2f}, {CORES} cores)")
