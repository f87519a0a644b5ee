"""bench/supervision.py measures what it says, on a small PostgreSQL run: the changing cases (1 %) and only they
are scanned and coloured, the metrics count every completed case, the rules find nothing on clean histories,
``--json`` writes ``scan_ratio``, and the benchmark's database is dropped afterwards.

Not a benchmark: no figure is asserted, only that each part measured the work it claims.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench import supervision as bench


def benchmark_databases(url: str) -> set[str]:
    engine = create_engine(make_url(url))
    try:
        with engine.connect() as connection:
            return set(connection.scalars(text(
                "SELECT datname FROM pg_database WHERE datname = :name"), {"name": f"hub_bench_sup_{os.getpid()}"}))
    finally:
        engine.dispose()


def test_a_small_run_scans_only_the_changing_cases_and_writes_its_figures(postgres_url: str, tmp_path: Path) -> None:
    out = tmp_path / "figures.json"

    code = bench.main(["--database-url", postgres_url, "--small", "1000", "--large", "3000", "--completed", "400",
                       "--rule-cases", "20", "--rounds", "1", "--json", str(out)])

    assert code == 0
    figures = json.loads(out.read_text(encoding="utf-8"))
    scan = figures["scan"]
    for part, open_cases in (("small", 1000), ("large_same_changes", 3000)):
        assert scan[part]["open_cases"] == open_cases
        assert scan[part]["changing"] == 10  # 1 % of the small set, in both
        assert scan[part]["scanned"] == 10  # the index range only: no other open case is read
        assert scan[part]["colours_after"] == {"red": 10}  # case 90 % used (yellow), review step overdue (red)
        assert scan[part]["alerts_after"] == 20
    assert figures["scan_ratio"] == scan["scan_ratio"] > 0
    assert figures["metrics"]["completed_counted"] == 400
    assert figures["rules"]["findings"] == 0 and figures["rules"]["events"] == 5
    assert benchmark_databases(postgres_url) == set()
