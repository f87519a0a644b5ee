"""The packaged workflow definitions, looked up by the id cases store.

Each definition is a versioned file ``workflow/definitions/<id>.v<N>.json``. A case records the
``workflow_id`` it started with (``items.workflow_id`` → ``cases.workflow_id``) and keeps running that
version: a new version is a new file beside the old one, never an edit of it.
"""

from __future__ import annotations

import json
import re
import threading
from functools import cache
from importlib import resources

from workflow.definition import DefinitionError, WorkflowDefinition, load_definition

PACKAGE = "workflow.definitions"
_FILE_NAME = re.compile(r"^(?P<id>[a-z][a-z0-9_-]{0,63})\.v(?P<version>[1-9][0-9]{0,5})\.json$")

# Ids being loaded right now: a parallel block whose branches lead back to it would recurse forever.
_loading: set[str] = set()
# One load at a time (re-entrant: a parent loads its branches' definitions inside its own load). Without it,
# a server's threads asking for a definition at once saw each other's load in ``_loading`` and failed it as
# a cycle.
_load_lock = threading.RLock()


class UnknownDefinition(KeyError):
    """No packaged definition has this id."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(workflow_id)

    def __str__(self) -> str:
        return f"没有流程定义「{self.workflow_id}」 (unknown workflow definition {self.workflow_id!r})"


def workflow_ids() -> list[str]:
    """Every packaged definition's id (``<id>.v<N>``), sorted."""
    return sorted(_files())


def get_definition(workflow_id: str) -> WorkflowDefinition:
    """The definition stored as ``<workflow_id>.json``; raises ``UnknownDefinition``."""
    if workflow_id not in _files():
        raise UnknownDefinition(workflow_id)
    return _load(workflow_id)


@cache
def _files() -> frozenset[str]:
    names = (entry.name for entry in resources.files(PACKAGE).iterdir())
    return frozenset(name.removesuffix(".json") for name in names if _FILE_NAME.match(name))


@cache
def _load(workflow_id: str) -> WorkflowDefinition:
    with _load_lock:
        if workflow_id in _loading:
            raise DefinitionError("/parallel", f"workflow {workflow_id!r} is a branch of itself")
        _loading.add(workflow_id)
        try:
            text = resources.files(PACKAGE).joinpath(f"{workflow_id}.json").read_text("utf-8")
            definition = load_definition(json.loads(text), resolve=get_definition)
        finally:
            _loading.discard(workflow_id)
    if definition.workflow_id != workflow_id:
        raise DefinitionError(
            "/id", f"file {workflow_id}.json declares {definition.workflow_id!r}; id and version must match"
        )
    return definition
