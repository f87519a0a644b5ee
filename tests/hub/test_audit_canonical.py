"""The seals' canonical JSON (hub/audit/service.py `_canonical`): orjson where it writes the same bytes, the
standard library's encoder (the canonical form every existing seal commits to) for everything else — so no
sealed byte changes and nothing is accepted or refused that was not before."""

from __future__ import annotations

import enum
import json
import math
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.audit.service import _canonical, _orjson_safe

STANDARD = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def standard(value: Any) -> bytes:
    return STANDARD.encode(value).encode()


def outcome(encode: Any, value: Any) -> tuple[str, Any]:
    try:
        return "bytes", encode(value)
    except Exception as exc:  # the kind of refusal is what is compared
        return "raises", type(exc)


SCALARS = (
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text() | st.characters().map(str)
)
KEYS = st.text() | st.integers(min_value=-5, max_value=5) | st.booleans() | st.none()
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(st.text(max_size=8), inner, max_size=5) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=30,
)


@settings(max_examples=600, deadline=None)
@given(DOCUMENTS)
def test_canonical_is_the_standard_encoders_bytes_or_its_refusal(document: Any) -> None:
    assert outcome(_canonical, document) == outcome(standard, document)


class Colour(enum.Enum):
    RED = "red"


class Level(enum.StrEnum):
    HIGH = "high"


class Tally(int):
    pass


@dataclass
class Point:
    x: int


@pytest.mark.parametrize("document", [
    {"b": 1, "a": [1, {"z": None, "y": True}], "é": "\u2028\u2029\ufeff😀\x00\x1f\x7f\"\\"},
    "".join(chr(code) for code in range(0x300)),
    [1e-05, 0.00001, 1e16, 1e22, 5e-324, -0.0, 0.1],  # orjson writes 1e-05 as 0.00001: the standard library's
    [math.nan, math.inf, -math.inf],                     # NaN/Infinity, which orjson writes as null
    {1: "a", "1": "b"}, {True: 1, None: 2, 2: 3},         # keys that are not strings (and their collisions)
    [2**63, 2**64, -(2**63) - 1],                         # integers past orjson's 64 bits
    {"level": Level.HIGH}, [Tally(3)], Colour.RED, uuid.UUID(int=7), Point(1),
    datetime(2026, 12, 1, tzinfo=UTC), date(2026, 12, 1), {"deep": [[[[[[[[[[1]]]]]]]]]]},
    [[]] * 3, "\ud800",                                   # a lone surrogate: refused by both
])
def test_documents_orjson_would_write_differently_or_refuse_go_the_standard_way(document: Any) -> None:
    assert outcome(_canonical, document) == outcome(standard, document)


def test_what_a_seal_holds_takes_the_fast_way() -> None:
    body = {"case": "HUB-1", "seq": 2, "actor": ["partner", "o-1", "张三"], "opinion": None, "data": {"v": 3},
            "row": {"state": "accepted", "step_deadlines": {"accept": "2026-12-03"}, "promised_limit_days": 10}}
    assert _orjson_safe(body)
    assert not _orjson_safe({"amount": 1.5}) and not _orjson_safe({1: "a"}) and not _orjson_safe([Level.HIGH])


def test_nesting_past_orjsons_depth_is_the_standard_encoders() -> None:
    document: Any = 1
    for _ in range(300):
        document = [document]
    assert _canonical(document) == standard(document)
