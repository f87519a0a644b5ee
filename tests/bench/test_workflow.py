"""bench/workflow.py runs the flow it measures: a joint approval to its end on both sides, and its figures.

Not a benchmark: rates are never asserted, only that each side completes the approval (else the bench would
time something else) and that ``--json`` writes the ratio.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from bench import workflow as bench


def test_the_engine_side_runs_a_joint_approval_through_four_branches_to_completion() -> None:
    steps = bench.joint_steps()
    stored = json.loads(bench.EngineFlow(steps).check())

    assert stored["state"] == "completed"
    assert sorted(stored["branches"]) == ["registration", "seal_engraving", "social_insurance", "tax_invoice"]
    assert len(steps) == 14


def test_each_engine_step_is_taken_by_the_roles_its_definition_names() -> None:
    roles = {(step.branch is None, step.action): step.roles for step in bench.joint_steps()}

    assert roles[(True, "accept")] == ("intake",)
    assert roles[(False, "grant")] == ("approver",)


def test_the_spiff_side_runs_the_same_user_tasks_from_bpmn_to_completion() -> None:
    pytest.importorskip("SpiffWorkflow")
    steps = bench.joint_steps()

    flow = bench.SpiffFlow(steps)  # refuses a BPMN whose user tasks are not the engine's steps

    assert '"joint_approval"' in flow.check()


def test_the_json_figures_carry_the_engine_rate_over_spiffs_as_ratio(tmp_path: Path) -> None:
    pytest.importorskip("SpiffWorkflow")
    out = tmp_path / "figures.json"

    code = bench.main(["--seconds", "0.01", "--rounds", "3", "--no-http", "--json", str(out)])

    figures = json.loads(out.read_text(encoding="utf-8"))
    assert code == 0
    assert figures["ratio"] == pytest.approx(statistics.median(figures["ratio_per_round"]), abs=0.01)
    assert figures["ratio"] > 0
    assert len(figures["ratio_per_round"]) == 3
    assert {"load_average_1m_start", "load_average_1m_end"} <= figures.keys()


def test_fewer_than_three_rounds_is_refused() -> None:
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--rounds", "2", "--no-http"])

    assert exit_.value.code == 2


def test_in_memory_compares_the_engines_without_storing_between_steps(tmp_path: Path) -> None:
    pytest.importorskip("SpiffWorkflow")
    out = tmp_path / "figures.json"

    code = bench.main(["--seconds", "0.01", "--no-http", "--in-memory", "--json", str(out)])

    figures = json.loads(out.read_text(encoding="utf-8"))
    assert code == 0
    assert figures["flow"]["stored_after_every_step"] is False
    assert figures["ratio"] > 0
