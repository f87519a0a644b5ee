"""What the whole machine and its PostgreSQL server spend while a benchmark runs (Linux /proc), for bench.submit
and bench.ingest: a side's own process CPU says what the code costs, these say whether the machine had any
left — on two cores shared by client, servers, PostgreSQL and RabbitMQ, a ratio can be bounded by the machine."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, every thread (raises OSError once it is gone)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat's first line (idle and iowait are not
    busy; guest time is already inside user)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return sum(values) - values[3] - values[4], sum(values)


def cores_busy(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The machine's cores busy between two `machine_ticks` readings (every process on it, not only ours)."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total * CORES if total else 0.0


def database_cpu_seconds() -> float:
    """User + system CPU of every PostgreSQL process on this machine (the benchmarks' pooled backends live
    through a round; a backend that exits within it takes its CPU out of the sum, so this is a floor).

    With HUB_BENCH_POSTGRES_DATA set to a cluster's data directory, only that cluster's processes (its
    postmaster and the postmaster's children): a benchmark on a private cluster is then not charged with
    another cluster's work on a shared machine."""
    postmaster = _postmaster_pid(os.environ.get("HUB_BENCH_POSTGRES_DATA"))
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            if stat[stat.index("(") + 1:stat.rindex(")")] != "postgres":
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if postmaster is not None and postmaster not in (int(entry.name), int(fields[1])):
                continue
            total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def _postmaster_pid(data_directory: str | None) -> int | None:
    if not data_directory:
        return None
    return int((Path(data_directory) / "postmaster.pid").read_text().split("\n", 1)[0])
