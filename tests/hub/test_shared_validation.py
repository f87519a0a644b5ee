"""The compiled check of partner messages (jsonschema-rs) is only a fast pass: it never lets through what
jsonschema refuses, so the errors partners get — field and rule — are jsonschema's, as before."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest

from hub.validation import fast_check, shared_errors, shared_validator
from mocks.city_platform import CityPlatform

# Values that differ between validators at their edges: formats, anchors, Unicode digits, types.
TRICKY: tuple[Any, ...] = (
    None, True, 0, 1.0, -1, 2**70, "", " ", "x", "2026-06-10", "2026-06-10T09:00:00", "2026-06-10T09:00:00Z",
    "2026-06-10t09:00:00z", "2026-06-10T09:00:00+08:00\n", "2026-02-30T09:00:00Z", "2026-06-10T24:00:00Z",
    "2026-06-10 09:00:00+08:00", "2026-6-1", "210000\n", "２１００００", "٢١٠٠٠٠", "21000", "2100000",
    "11010519491231002X\n", "11010519491231002x", "１1010519491231002X", "not-a-uuid",
    "00000000-0000-0000-0000-00000000000g", "{00000000-0000-0000-0000-000000000000}", "A" * 65, "é" * 8, [], {},
    {"unexpected": 1}, "case-record", "case-record.v1", "Shenyang", "shenyang\n",
)


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*path, index))


def _mutate(document: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    mutated = copy.deepcopy(document)
    for _ in range(rng.choice((1, 1, 2))):
        path = rng.choice([p for p in _paths(mutated) if p])
        parent = mutated
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        if isinstance(parent, dict) and rng.random() < 0.2:
            del parent[last]
        elif isinstance(parent, dict) and rng.random() < 0.1:
            parent[f"extra_{rng.randint(0, 9)}"] = rng.choice(TRICKY)
        else:
            parent[last] = copy.deepcopy(rng.choice(TRICKY))
    return mutated


def _messages(count: int) -> list[dict[str, Any]]:
    return [json.loads(p.body) for p in CityPlatform("amqp://unused", "shenyang", seed=7).plan(count)]


@pytest.mark.skipif(fast_check("envelope.v1.json") is None, reason="jsonschema-rs is not installed")
def test_the_compiled_check_never_passes_a_message_jsonschema_refuses() -> None:
    rng = random.Random(20261130)
    refused = 0
    for envelope in _messages(60):
        payload_schema = f"{envelope['type']}.v1.json"
        assert fast_check("envelope.v1.json")(envelope)  # type: ignore[misc]
        assert fast_check(payload_schema)(envelope["payload"])  # type: ignore[misc]
        for _ in range(40):
            for name, document in (("envelope.v1.json", _mutate(envelope, rng)),
                                   (payload_schema, _mutate(envelope["payload"], rng))):
                slow = list(shared_validator(name).iter_errors(document))
                if fast_check(name)(document):  # type: ignore[misc]
                    assert not slow, (name, document, [e.message for e in slow])
                else:
                    refused += 1
    assert refused > 1000  # the mutations do reach the validators' edges


def test_a_refused_message_still_names_its_field_and_rule() -> None:
    envelope = _messages(1)[0]
    envelope["payload"]["external_id"] = "x"  # too short for ^[A-Za-z0-9-]{4,64}$
    envelope["occurred_at"] = "2026-06-10T09:00:00"  # no offset: not an RFC 3339 date-time
    assert [(e.field, e.rule) for e in shared_errors("envelope.v1.json", envelope, prefix="envelope")] == [
        ("envelope.occurred_at", "format")]
    assert [(e.field, e.rule) for e in shared_errors(f"{envelope['type']}.v1.json", envelope["payload"],
                                                     prefix="payload")] == [("payload.external_id", "pattern")]
    assert shared_errors("envelope.v1.json", _messages(1)[0], prefix="envelope") == []
