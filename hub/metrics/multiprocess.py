"""Prometheus multi-process mode for `hub api --workers N` (issue 13).

uvicorn starts each worker with ``spawn``: a fresh interpreter that inherits the environment. Every uvicorn
worker keeps its own counters, so a scrape (answered by whichever worker accepted the connection) saw one
worker's share. With ``PROMETHEUS_MULTIPROC_DIR`` set before the workers start, prometheus_client writes every
value to a memory-mapped file per process in that directory, and /metrics merges them all
(``hub.metrics.exposition.api_text``).

* The directory: ``PROMETHEUS_MULTIPROC_DIR`` when the operator set it (created if missing, left as it is —
  give each api process its own, emptied between starts), else a fresh
  ``$HUB_DATA_DIR/prometheus/api-<host>-<pid>`` made at start and removed at a clean exit. The host name is in
  it because compose replicas share the data volume and each may well run as pid 1.
* Dead workers: a uvicorn worker that dies is replaced; its counters stay in the sum (they were counted), its
  live gauges (``livesum``: requests in flight) must not. The worker removes its own on a clean exit
  (``atexit``); the `hub api` parent looks every few seconds for files of processes that are gone (SIGKILL,
  out of memory) and marks them dead (``prometheus_client.multiprocess.mark_process_dead``).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import shutil
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

from hub.metrics.exposition import MULTIPROC_ENV
from hub.processes import process_gone

log = logging.getLogger("hub.metrics")
_LIVE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")
REAP_INTERVAL_S = 5.0


@dataclass
class MultiprocessDir:
    """The directory `hub api` set up, the reaper marking dead workers in it, and whether to remove it."""

    path: Path
    owned: bool  # made fresh by this start (removed at exit), not the operator's
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start_reaper(self, interval_s: float = REAP_INTERVAL_S) -> None:
        self._thread = threading.Thread(target=self._reap_loop, args=(interval_s,), name="hub-metrics-reaper",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.owned:
            shutil.rmtree(self.path, ignore_errors=True)

    def reap(self) -> list[int]:
        """Mark every process with live-gauge files that is gone as dead; returns their pids."""
        from prometheus_client import multiprocess

        dead = sorted({pid for pid in _live_file_pids(self.path) if process_gone(pid)})
        for pid in dead:
            multiprocess.mark_process_dead(pid, str(self.path))
        return dead

    def _reap_loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                for pid in self.reap():
                    log.info("metrics: uvicorn worker %d is gone; its live gauges removed", pid)
            except OSError as exc:  # a full or vanished directory must not stop the api
                log.warning("metrics: could not look for dead workers in %s: %s", self.path, exc)


def prepare(data_dir: Path, workers: int) -> MultiprocessDir | None:
    """Before uvicorn starts ``workers`` processes: the directory they all write to, in the environment they
    inherit; None for a single process (its own registry is the whole truth)."""
    given = os.environ.get(MULTIPROC_ENV)
    if workers <= 1 and not given:
        return None
    if given:
        path, owned = Path(given), False
        path.mkdir(parents=True, exist_ok=True)
    else:
        parent = data_dir / "prometheus"
        _remove_stale_siblings(parent)
        path, owned = parent / f"api-{_host()}-{os.getpid()}", True
        shutil.rmtree(path, ignore_errors=True)  # fresh: a pid reused after a crash starts from nothing
        path.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(path.resolve())
    return MultiprocessDir(path.resolve(), owned)


def register_worker_exit() -> None:
    """In a uvicorn worker of a multi-process api: remove this process's live gauges when it exits."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return
    pid = os.getpid()

    def mark_dead() -> None:
        from prometheus_client import multiprocess

        with contextlib.suppress(OSError):  # the directory is gone with the api: nothing to mark
            multiprocess.mark_process_dead(pid, path)

    atexit.register(mark_dead)


def _live_file_pids(path: Path) -> set[int]:
    pids = set()
    for name in os.listdir(path):
        matched = _LIVE_FILE.match(name)
        if matched:
            pids.add(int(matched.group(1)))
    return pids


def _remove_stale_siblings(parent: Path) -> None:
    """Directories of earlier `hub api` runs on this host whose process is gone (a crash, SIGKILL)."""
    if not parent.is_dir():
        return
    prefix = f"api-{_host()}-"
    for entry in parent.iterdir():
        pid = entry.name.removeprefix(prefix)
        if entry.name.startswith(prefix) and pid.isdigit() and int(pid) != os.getpid() and process_gone(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "host"


