"""docker-compose.yml is valid against the Compose specification (no Docker engine runs here)."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

ROOT = Path(__file__).resolve().parents[2]


def compose_schema() -> dict:
    vendor = files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(vendor.read_text(encoding="utf-8"))


def test_compose_file_matches_the_compose_spec() -> None:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    errors = sorted(Draft202012Validator(compose_schema()).iter_errors(document), key=lambda e: e.path)
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_compose_runs_the_production_shape_with_health_checks() -> None:
    document = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    services = document["services"]
    assert {"postgres", "rabbitmq", "api", "worker", "mocks"} <= set(services)
    assert "management" in services["rabbitmq"]["image"]
    assert all("healthcheck" in s for s in services.values())
    assert services["worker"]["command"] == ["hub", "worker"]


def test_a_broken_compose_file_is_caught() -> None:
    broken = {"services": {"api": {"image": "x", "ports": "not-a-list", "restart": 3}}}
    assert list(Draft202012Validator(compose_schema()).iter_errors(broken))
