"""bench/realtime_findings.py dumps what the real-time hook raised on its workload: on a small SQLite run the
perturbed records make rules fire, every new alert has its one alert.raised.v1 message, and two runs of the same
code write the same file (the comparison of two versions of the code rests on that).

Not a benchmark: no figure is asserted."""

from __future__ import annotations

import json
from pathlib import Path

from bench import realtime_findings


def test_two_runs_of_the_same_code_dump_the_same_alerts(tmp_path: Path) -> None:
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    for out in (first, second):
        assert realtime_findings.main(["--backend", "sqlite", "--rounds", "1", "--records", "300",
                                       "--out", str(out)]) == 0
    assert first.read_bytes() == second.read_bytes()
    found = json.loads(first.read_text(encoding="utf-8"))
    rules = {alert[2] for alert in found["alerts"]}
    assert "procedure.skipped_step" in rules, rules  # the dropped acceptances
    assert len(found["messages"]) == len(found["alerts"])
