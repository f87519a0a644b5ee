"""The registry of packaged, versioned workflow definitions (workflow/definitions/<id>.v<N>.json)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workflow import registry
from workflow.definition import DefinitionError, WorkflowDefinition, standard_definition
from workflow.registry import UnknownDefinition, get_definition, workflow_ids


def test_every_definition_file_is_listed_sorted() -> None:
    assert workflow_ids() == ["enterprise-establishment.v1", "joint-branch.v1", "standard.v1"]


@pytest.mark.parametrize("workflow_id", ["enterprise-establishment.v1", "joint-branch.v1", "standard.v1"])
def test_each_listed_definition_loads_under_its_own_id(workflow_id: str) -> None:
    definition = get_definition(workflow_id)
    assert isinstance(definition, WorkflowDefinition)
    assert definition.workflow_id == workflow_id


def test_standard_is_the_same_definition_as_before() -> None:
    assert get_definition("standard.v1") == standard_definition()
    assert (standard_definition().id, standard_definition().version) == ("standard", 1)


def test_definitions_are_loaded_once() -> None:
    assert get_definition("joint-branch.v1") is get_definition("joint-branch.v1")


@pytest.mark.parametrize("workflow_id", ["standard", "standard.v2", "nope.v1", "", "standard.v1.json", "__init__"])
def test_unknown_id_names_the_id(workflow_id: str) -> None:
    with pytest.raises(UnknownDefinition) as raised:
        get_definition(workflow_id)
    assert raised.value.workflow_id == workflow_id
    assert str(raised.value) == (
        f"没有流程定义「{workflow_id}」 (unknown workflow definition {workflow_id!r})"
    )
    assert isinstance(raised.value, KeyError)


# --- a registry over other files: id checks and cycles ----------------------------------------


def _branch_document(definition_id: str, **extra: Any) -> dict[str, Any]:
    text = (Path(registry.__file__).parent / "definitions" / "joint-branch.v1.json").read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    document.update(id=definition_id, **extra)
    return document


@pytest.fixture
def other_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # A fresh package name per test: imported packages stay in sys.modules.
    name = f"other_definitions_{uuid.uuid4().hex}"
    package = tmp_path / name
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "notes.txt").write_text("not a definition")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "PACKAGE", name)
    registry._files.cache_clear()
    registry._load.cache_clear()
    yield package
    registry._files.cache_clear()
    registry._load.cache_clear()


def _write(package: Path, name: str, document: dict[str, Any]) -> None:
    (package / name).write_text(json.dumps(document, ensure_ascii=False), "utf-8")


def test_only_versioned_json_files_are_definitions(other_package: Path) -> None:
    _write(other_package, "alpha.v2.json", _branch_document("alpha", version=2))
    _write(other_package, "beta.json", _branch_document("beta"))
    _write(other_package, "Gamma.v1.json", _branch_document("gamma"))
    _write(other_package, "delta.v0.json", _branch_document("delta"))
    assert workflow_ids() == ["alpha.v2"]
    assert get_definition("alpha.v2").workflow_id == "alpha.v2"


def test_file_name_and_declared_id_must_agree(other_package: Path) -> None:
    _write(other_package, "alpha.v1.json", _branch_document("beta"))
    with pytest.raises(DefinitionError) as raised:
        get_definition("alpha.v1")
    assert raised.value.path == "/id"
    assert raised.value.message == "file alpha.v1.json declares 'beta.v1'; id and version must match"


def test_file_name_and_declared_version_must_agree(other_package: Path) -> None:
    _write(other_package, "alpha.v1.json", _branch_document("alpha", version=3))
    with pytest.raises(DefinitionError) as raised:
        get_definition("alpha.v1")
    assert raised.value.message == "file alpha.v1.json declares 'alpha.v3'; id and version must match"


def _parallel_document(definition_id: str, branch_workflow: str) -> dict[str, Any]:
    text = (Path(registry.__file__).parent / "definitions" / "enterprise-establishment.v1.json").read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    document["id"] = definition_id
    for branch in document["parallel"]["branches"]:
        branch["workflow_id"] = branch_workflow
    return document


def test_a_parallel_definition_cannot_reach_itself_through_its_branches(other_package: Path) -> None:
    _write(other_package, "alpha.v1.json", _parallel_document("alpha", "beta.v1"))
    _write(other_package, "beta.v1.json", _parallel_document("beta", "alpha.v1"))
    with pytest.raises(DefinitionError) as raised:
        get_definition("alpha.v1")
    assert raised.value.path == "/parallel"
    assert raised.value.message == "workflow 'alpha.v1' is a branch of itself"
    # The failed load leaves nothing half-loaded: the next attempt fails the same way.
    with pytest.raises(DefinitionError, match="is a branch of itself"):
        get_definition("alpha.v1")


def test_branches_resolve_within_the_same_registry(other_package: Path) -> None:
    _write(other_package, "alpha.v1.json", _parallel_document("alpha", "beta.v1"))
    _write(other_package, "beta.v1.json", _branch_document("beta"))
    definition = get_definition("alpha.v1")
    assert definition.parallel is not None
    assert {b.workflow_id for b in definition.parallel.branches} == {"beta.v1"}


def test_a_branch_missing_from_the_registry_is_a_definition_error(other_package: Path) -> None:
    _write(other_package, "alpha.v1.json", _parallel_document("alpha", "joint-branch.v1"))
    with pytest.raises(DefinitionError) as raised:
        get_definition("alpha.v1")
    assert raised.value.path == "/parallel/branches/0/workflow_id"
    assert raised.value.message == "unknown workflow 'joint-branch.v1'"
