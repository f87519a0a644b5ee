"""The contracts over HTTP, without authentication: a partner's tooling reads them before it has credentials.

* ``GET /schemas`` — the index: every served schema's ``$id``, URL and title;
* ``GET /schemas/<path>`` — one JSON Schema at the path of its ``$id`` (``application/schema+json``), with an
  ETag (``If-None-Match`` answers 304) and ``Cache-Control``; an unknown path is a 404 problem;
* ``GET /asyncapi.json`` — the AsyncAPI 3.0 document of the AMQP side (hub/contracts/asyncapi.py).

None of these passes through a throttle: they read no database and cost a dictionary look-up.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from hub.contracts import asyncapi
from hub.contracts.catalogue import MEDIA_TYPE, schema_url, served_schemas
from hub.errors import NotFound
from hub.problems import problem_responses

router = APIRouter(tags=["contracts"])
CACHE_CONTROL = "public, max-age=300"


class SchemaEntry(BaseModel):
    id: str = Field(description="the schema's $id")
    url: str = Field(description="where this hub serves it")
    title: str


class SchemaIndex(BaseModel):
    schemas: list[SchemaEntry]


def _base_url(request: Request) -> str:
    return str(request.base_url)


@router.get("/schemas", response_model=SchemaIndex)
def schema_index(request: Request) -> SchemaIndex:
    """Every JSON Schema the hub serves (message envelope, records, events, item forms, workflow definitions)."""
    base = _base_url(request)
    return SchemaIndex(schemas=[SchemaEntry(id=s.schema_id, url=schema_url(base, s.schema_id), title=s.title)
                                for s in served_schemas().values()])


@router.get(
    "/schemas/{path:path}", response_class=Response, responses={
        200: {"content": {MEDIA_TYPE: {}}, "description": "the JSON Schema whose $id ends in this path"},
        304: {"description": "unchanged since the ETag sent in If-None-Match"},
        **problem_responses(404),
    },
)
def schema_document(path: str, request: Request) -> Response:
    """One JSON Schema, served at the path of its `$id` (`https://hub.example.gov.cn/schemas/<path>`)."""
    schema = served_schemas().get(path)
    if schema is None:
        raise NotFound(f"没有这个数据规范 (no schema is served at /schemas/{path[:200]}; see /schemas)")
    headers = {"ETag": schema.etag, "Cache-Control": CACHE_CONTROL}
    if schema.etag in _etags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    return Response(schema.body, media_type=MEDIA_TYPE, headers=headers)


@router.get("/asyncapi.json", response_class=Response,
            responses={200: {"content": {"application/json": {}}, "description": "AsyncAPI 3.0.0 document"}})
def asyncapi_document(request: Request) -> Response:
    """The AMQP side of the hub as an AsyncAPI 3.0.0 document, generated from the topology and the schemas."""
    body, etag = asyncapi.rendered(base_url=_base_url(request), settings=request.app.state.settings)
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL}
    if etag in _etags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}
