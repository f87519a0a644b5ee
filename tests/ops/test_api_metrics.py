"""`hub api --workers N` in Prometheus multi-process mode (issue 13): one scrape sees every worker's counters.

`hub api --workers 2` runs as an operator runs it (a new process; uvicorn spawns two workers sharing the
listening socket). Requests go over many connections until both workers have served some; then every scrape —
whichever worker answers it — must count all of them. A worker killed with SIGKILL is marked dead: its live
gauge files go, its counters stay in the sum.
"""

from __future__ import annotations

import http.client
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from hub.metrics import multiprocess
from tests.e2e.cli_support import answers, free_port, hub_executable, operator_env, started
from tests.support import PROCESS_KEYS, wait_until

HEALTH = "/health"


def health_requests(text: str) -> float:
    """hub_http_requests_total for GET /health in one scrape's text."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "hub_http_requests_total" and sample.labels.get("route") == HEALTH:
                total += sample.value
    return total


def in_flight(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "hub_http_requests_in_flight":
                return sample.value
    raise AssertionError("hub_http_requests_in_flight missing")


def served_health_by_pid(directory: Path) -> dict[int, float]:
    """Per uvicorn worker (its counter file), how many GET /health it served."""
    served = {}
    for path in directory.glob("counter_*.db"):
        pid = int(path.stem.split("_")[1])
        for metric in MultiProcessCollector.merge([str(path)], accumulate=False):
            for sample in metric.samples:
                if sample.name == "hub_http_requests_total" and sample.labels.get("route") == HEALTH:
                    served[pid] = served.get(pid, 0.0) + sample.value
    return served


def counted_health(directory: Path, total: float) -> dict[int, float]:
    """served_health_by_pid once the workers have counted ``total`` requests: a worker counts a request after
    its response has gone (hub/app.py's MetricsMiddleware), so the client can read the last answer first."""
    wait_until(lambda: sum(served_health_by_pid(directory).values()) >= total, timeout=60)
    return served_health_by_pid(directory)


def get(url: str) -> int:
    """One request on a connection of its own (the kernel hands each new connection to either worker)."""
    with httpx.Client(timeout=60, trust_env=False) as client:
        return client.get(url).status_code


def scrape(base: str) -> str:
    with httpx.Client(timeout=60, trust_env=False) as client:
        response = client.get(f"{base}/metrics")
    assert response.status_code == 200, response.text
    return response.text


def test_one_scrape_of_a_two_worker_api_counts_every_workers_requests_and_a_killed_worker_is_marked_dead(
        tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data_dir = tmp_path / "var"
    env = operator_env(data_dir, HUB_DATABASE_URL=f"sqlite:///{tmp_path / 'hub.db'}", **PROCESS_KEYS)
    with started([*hub_executable(), "api", "--workers", "2", "--port", str(port)], env, cwd=tmp_path,
                 log=tmp_path / "api.log") as api:
        api.wait_until(lambda: answers(f"{base}/metrics"), "the API answering", timeout_s=180)
        [directory] = (data_dir / "prometheus").iterdir()  # made fresh by this start
        assert directory.name.startswith("api-") and directory.name.endswith(f"-{api.process.pid}")

        sent = 0
        with ThreadPoolExecutor(max_workers=8) as pool:
            while len(served_health_by_pid(directory)) < 2:  # until both workers served some
                statuses = list(pool.map(get, [f"{base}{HEALTH}"] * 40))
                assert statuses == [200] * len(statuses)
                sent += len(statuses)
                assert sent <= 4000, f"one worker served all {sent} requests: {served_health_by_pid(directory)}"
        served = counted_health(directory, sent)
        assert sum(served.values()) == sent and len(served) == 2, served

        # Every scrape, each on a new connection (either worker answers), counts the requests of both.
        for _ in range(6):
            assert health_requests(scrape(base)) == sent

        # One worker killed: uvicorn replaces it; its counters stay in the sum, its live gauge is removed.
        victim = min(served)
        os.kill(victim, signal.SIGKILL)
        live_file = directory / f"gauge_livesum_{victim}.db"
        assert wait_until(lambda: not live_file.exists(), timeout=60), sorted(p.name for p in directory.iterdir())
        after = scrape(base)
        assert health_requests(after) == sent
        assert in_flight(after) == 1  # this scrape only: nothing of the dead worker is left in flight

        assert api.stop(signal.SIGTERM) == 0, api.output()[-3000:]
    assert not directory.exists()  # the fresh directory went with the api


# --- the directory `hub api` sets up ------------------------------------------------------------------


@pytest.fixture
def no_multiproc_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset now, and unset again after the test (``prepare`` sets it in this process)."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")


def test_a_single_process_api_keeps_its_own_registry(tmp_path: Path, no_multiproc_env: None) -> None:
    assert multiprocess.prepare(tmp_path, workers=1) is None
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ


def test_several_workers_get_a_fresh_directory_under_the_data_dir_removed_at_exit_and_stale_ones_cleared(
        tmp_path: Path, no_multiproc_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(multiprocess, "_host", lambda: "h1")
    stale = tmp_path / "prometheus" / "api-h1-999999999"  # a pid that cannot exist: an earlier run that crashed
    stale.mkdir(parents=True)
    other_host = tmp_path / "prometheus" / "api-h2-999999999"  # another replica's, on the shared volume
    other_host.mkdir()
    prepared = multiprocess.prepare(tmp_path, workers=2)
    assert prepared is not None and prepared.owned
    assert prepared.path == (tmp_path / "prometheus" / f"api-h1-{os.getpid()}").resolve()
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(prepared.path)
    assert not stale.exists() and other_host.exists()
    prepared.close()
    assert not prepared.path.exists()


def test_a_directory_the_operator_gave_is_used_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    given = tmp_path / "given"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(given))
    prepared = multiprocess.prepare(tmp_path / "data", workers=2)
    assert prepared is not None and not prepared.owned and given.is_dir()
    (given / "counter_1.db").write_bytes(b"")
    prepared.close()
    assert (given / "counter_1.db").exists()
    assert not (tmp_path / "data" / "prometheus").exists()


def test_the_reaper_marks_only_processes_that_are_gone(tmp_path: Path, no_multiproc_env: None) -> None:
    prepared = multiprocess.prepare(tmp_path, workers=2)
    assert prepared is not None
    try:
        for name in ("gauge_livesum_999999999.db", f"gauge_livesum_{os.getpid()}.db", "counter_999999999.db"):
            (prepared.path / name).write_bytes(b"")
        assert prepared.reap() == [999999999]
        assert sorted(p.name for p in prepared.path.iterdir()) == [
            "counter_999999999.db", f"gauge_livesum_{os.getpid()}.db"]
    finally:
        prepared.close()


def test_a_clients_keep_alive_connections_opened_together_are_served_by_both_workers(tmp_path: Path) -> None:
    # A partner's connection pool opens its connections together and keeps them: with one socket shared by the
    # workers, the first to wake accepted all of them and served them alone (hub/serving.py).
    port = free_port()
    data_dir = tmp_path / "var"
    env = operator_env(data_dir, HUB_DATABASE_URL=f"sqlite:///{tmp_path / 'hub.db'}", **PROCESS_KEYS)
    with started([*hub_executable(), "api", "--workers", "2", "--port", str(port)], env, cwd=tmp_path,
                 log=tmp_path / "api.log") as api:
        api.wait_until(lambda: answers(f"http://127.0.0.1:{port}/metrics"), "the API answering", timeout_s=180)
        [directory] = (data_dir / "prometheus").iterdir()
        before = served_health_by_pid(directory)
        connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=60) for _ in range(16)]
        try:
            for connection in connections:
                connection.connect()
            for _ in range(3):  # each connection kept alive, as a pool keeps it
                for connection in connections:
                    connection.request("GET", HEALTH)
                    response = connection.getresponse()
                    response.read()
                    assert response.status == 200
        finally:
            for connection in connections:
                connection.close()
        counted = counted_health(directory, sum(before.values()) + 48)
        served = {pid: count - before.get(pid, 0.0) for pid, count in counted.items()}
        assert sum(served.values()) == 48, served
        assert len([count for count in served.values() if count]) == 2, served  # all 16 in one: 1 in 30,000
        assert api.stop(signal.SIGTERM) == 0, api.output()[-3000:]
