"""Every JSON Schema of the shared ``schemas/`` package, keyed by the path of its ``$id``.

A schema whose ``$id`` is ``https://hub.example.gov.cn/schemas/forms/x.v1.json`` is served at
``/schemas/forms/x.v1.json``. The table is built once per process from the package's files (never from the
request path), so a request can only ever name one of these documents: no path reaches the file system.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

ID_PREFIX = "https://hub.example.gov.cn/schemas/"
MEDIA_TYPE = "application/schema+json"


@dataclass(frozen=True)
class ServedSchema:
    path: str  # below /schemas/, e.g. "forms/food-business-licence.v1.json"
    schema_id: str
    title: str
    body: bytes  # the file's bytes exactly: what the repository holds is what partners get
    etag: str

    @property
    def document(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@lru_cache(maxsize=1)
def served_schemas() -> dict[str, ServedSchema]:
    """path → schema, for every ``*.json`` of ``schemas/`` (sub-folders included) that has an ``$id``."""
    table: dict[str, ServedSchema] = {}
    for resource in _json_files(files("schemas")):
        body = resource.read_bytes()
        document = json.loads(body)
        schema_id = document.get("$id") if isinstance(document, dict) else None
        if not isinstance(schema_id, str) or not schema_id.startswith(ID_PREFIX):
            raise ValueError(f"schemas/{resource.name}: $id must start with {ID_PREFIX}")
        path = schema_id.removeprefix(ID_PREFIX)
        if path in table:
            raise ValueError(f"two schemas share the $id {schema_id}")
        digest = hashlib.sha256(body).hexdigest()[:32]
        table[path] = ServedSchema(path=path, schema_id=schema_id, title=str(document.get("title", "")),
                                   body=body, etag=f'"{digest}"')
    return dict(sorted(table.items()))


def _json_files(folder: Traversable) -> list[Traversable]:
    found: list[Traversable] = []
    for entry in folder.iterdir():
        if entry.is_dir():
            found.extend(_json_files(entry))
        elif entry.name.endswith(".json"):
            found.append(entry)
    return found


def schema_url(base_url: str, schema_id: str) -> str:
    """Where this hub serves the schema with ``schema_id``: ``base_url`` (the hub's root, ending in "/")
    followed by the ``$id``'s path."""
    return base_url + "schemas/" + schema_id.removeprefix(ID_PREFIX)


def self_contained(path: str, *, replace: dict[str, Any] | None = None) -> dict[str, Any]:
    """The schema served at ``path`` with every reference replaced by its target, and without ``$schema`` and
    ``$id``: for embedding in another document (OpenAPI), where a ``$ref`` would resolve against that document.
    ``replace`` sets top-level properties first (e.g. the envelope's payload as the record schemas)."""
    from referencing import Registry, Resource

    documents = {s.schema_id: s.document for s in served_schemas().values()}
    registry: Registry = Registry().with_resources(
        (schema_id, Resource.from_contents(document)) for schema_id, document in documents.items())
    schema = served_schemas()[path].document
    if replace:
        schema["properties"] = {**schema["properties"], **replace}
    resolver = registry.resolver(base_uri=schema["$id"])
    inlined = _inline(schema, resolver)
    inlined.pop("$defs", None)
    return {key: value for key, value in inlined.items() if key not in ("$schema", "$id")}


def _inline(node: Any, resolver: Any) -> Any:
    if isinstance(node, list):
        return [_inline(value, resolver) for value in node]
    if not isinstance(node, dict):
        return node
    if isinstance(node.get("$ref"), str):
        resolved = resolver.lookup(node["$ref"])
        target = _inline(resolved.contents, resolved.resolver)
        siblings = {key: _inline(value, resolver) for key, value in node.items() if key != "$ref"}
        return {**target, **siblings} if isinstance(target, dict) else target
    return {key: _inline(value, resolver) for key, value in node.items()
            if key not in ("$schema", "$id") or not isinstance(value, str)}
