"""docs/workflows.md is generated from the definitions (scripts/workflow_docs.py) and must not go stale.

When a test here fails after a definition changed: run `.venv/bin/python scripts/workflow_docs.py` and commit
the doc with the definition.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from workflow.registry import get_definition, workflow_ids

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "workflow_docs.py"
DOC = ROOT / "docs" / "workflows.md"


@pytest.fixture(scope="module")
def docs() -> ModuleType:
    spec = importlib.util.spec_from_file_location("workflow_docs", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def diagram_of(text: str, workflow_id: str) -> str:
    """The Mermaid block of ``workflow_id``'s section."""
    section = text.split(f"## `{workflow_id}`", 1)[1].split("\n## ", 1)[0]
    return section.split("```mermaid\n", 1)[1].split("```", 1)[0]


def test_the_committed_doc_is_what_the_definitions_give(docs: ModuleType) -> None:
    assert DOC.read_text(encoding="utf-8") == docs.render(), (
        "docs/workflows.md is stale: run .venv/bin/python scripts/workflow_docs.py"
    )


def test_check_exits_non_zero_and_names_the_file_when_the_doc_is_stale(tmp_path: Path) -> None:
    stale = tmp_path / "workflows.md"
    stale.write_text(DOC.read_text(encoding="utf-8").replace("受理", "收件", 1), encoding="utf-8")

    result = subprocess.run([sys.executable, str(SCRIPT), "--check", "--output", str(stale)],
                            capture_output=True, text=True, check=False)

    assert result.returncode == 1
    assert str(stale) in result.stderr


def test_check_passes_on_the_committed_doc() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stderr


def test_every_definition_has_a_section_with_its_diagram() -> None:
    text = DOC.read_text(encoding="utf-8")

    for workflow_id in workflow_ids():
        assert diagram_of(text, workflow_id).startswith("stateDiagram-v2\n")


@pytest.mark.parametrize("workflow_id", ["standard.v1", "joint-branch.v1"])
def test_each_state_is_drawn_with_its_chinese_label_and_each_transition_with_its_label_and_who(
    docs: ModuleType, workflow_id: str
) -> None:
    definition = get_definition(workflow_id)
    diagram = "\n".join(docs.mermaid(definition))

    for state, label in definition.states.items():
        assert f'state "{label}" as {state}\n' in diagram
    for t in definition.transitions:
        who = {"applicant": "申请人", "system": "系统"}.get(t.actor) or " / ".join(sorted(t.roles))
        assert f"{t.source} --> {t.target}: {t.label}（{who}）" in diagram
    for state in definition.terminal_states:
        assert f"{state} --> [*]" in diagram


def test_the_parallel_block_is_a_concurrent_state_with_one_region_per_branch(docs: ModuleType) -> None:
    definition = get_definition("enterprise-establishment.v1")
    assert definition.parallel is not None
    diagram = "\n".join(docs.mermaid(definition))

    block = diagram.split(f"as {definition.parallel.state} {{\n", 1)[1].split("\n    }\n", 1)[0]
    regions = block.split("\n        --\n")
    assert len(regions) == len(definition.parallel.branches) == 4
    for region, branch in zip(regions, definition.parallel.branches, strict=True):
        assert f"[*] --> {branch.name}__pre_review" in region
        assert f'state "{branch.label}：同步预审" as {branch.name}__pre_review' in region
        assert f"{branch.name}__pending_decision --> {branch.name}__granted: 批准（approver）" in region
    # The join leaves the block as a whole, taken by the engine.
    assert f"{definition.parallel.state} --> granted: " in diagram


def test_the_time_rules_name_their_articles() -> None:
    text = DOC.read_text(encoding="utf-8")

    for article in ("第二十六条", "第三十二条", "第四十二条", "第四十五条", "第八十二条"):
        assert article in text
    joint = text.split("## `enterprise-establishment.v1`", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"decision limit min\(item's statutory limit, 45\) working days, extendable\s+once by 15", joint)
    assert "[time-rules.md](time-rules.md)" in text
