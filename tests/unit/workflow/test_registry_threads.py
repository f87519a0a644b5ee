"""The registry under concurrent first use: a server's worker threads ask for a definition at the same moment
(the first submissions after start-up); each must get it, none may take another thread's load for a cycle."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from workflow import registry
from workflow.definition import WorkflowDefinition

THREADS = 8


@pytest.fixture
def cold_registry() -> Iterator[None]:
    registry._load.cache_clear()
    yield
    registry._load.cache_clear()


@pytest.mark.parametrize("round_", range(3))
def test_threads_loading_a_joint_definition_at_once_all_get_it(cold_registry: None, round_: int) -> None:
    start = threading.Barrier(THREADS)
    got: list[WorkflowDefinition] = []
    failed: list[BaseException] = []

    def load() -> None:
        start.wait()
        try:
            got.append(registry.get_definition("enterprise-establishment.v1"))
        except BaseException as exc:  # collected: an exception in a thread would not fail the test
            failed.append(exc)

    threads = [threading.Thread(target=load) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failed == []
    assert {definition.workflow_id for definition in got} == {"enterprise-establishment.v1"}
    assert len(got) == THREADS
