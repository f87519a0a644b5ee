"""hub/heap.py: a serving process's collector — start-up frozen, the young generation collected at a server's pace.

In a child process: the test process's own collector stays as it is (tests build many apps that must be
collectable)."""

from __future__ import annotations

import json
import subprocess
import sys

from hub.heap import YOUNG_GENERATION_THRESHOLD

_PROBE = """
import gc, json
default = gc.get_threshold()
from hub.heap import prepare_heap_for_serving
prepare_heap_for_serving()
print(json.dumps({"default": default, "serving": gc.get_threshold(), "frozen": gc.get_freeze_count()}))
"""


def _probe() -> dict[str, list[int] | int]:
    out = subprocess.run([sys.executable, "-c", _PROBE], check=True, capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout)


def test_preparing_a_serving_heap_freezes_startup_and_collects_the_young_generation_less_often() -> None:
    seen = _probe()
    default, serving = seen["default"], seen["serving"]
    assert isinstance(default, list) and isinstance(serving, list)
    assert serving[0] == YOUNG_GENERATION_THRESHOLD > default[0]
    assert serving[1:] == default[1:]  # the older generations keep their thresholds
    assert isinstance(seen["frozen"], int) and seen["frozen"] > 0
