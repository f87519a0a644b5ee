from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import HTMLResponse

from hub.auth.service import require_role
from hub.catalog import service
from hub.catalog.schemas import ItemOut, ItemPage, ItemTypeOut, ItemWrite, Level
from hub.deps import NowDep, OfficerDep, SessionDep
from hub.problems import problem_responses

router = APIRouter(prefix="/api/v1", tags=["catalogue"])
CODE = r"^[0-9A-Za-z]{1,32}$"


@router.get("/item-types", response_model=list[ItemTypeOut])
def item_types(session: SessionDep) -> list[ItemTypeOut]:
    """事项类型表 (the national exchange tables' numbering)."""
    return service.list_item_types(session)


@router.get("/items", response_model=ItemPage, responses=problem_responses(422))
def search_items(
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=100, description="keyword")] = None,
    department: Annotated[str | None, Query(max_length=64)] = None,
    region: Annotated[str | None, Query(pattern=r"^\d{6}$")] = None,
    level: Level | None = None,
    item_type: Annotated[str | None, Query(pattern=r"^\d{2}$")] = None,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> ItemPage:
    """Search the catalogue by keyword, department, region, level and item type."""
    page = service.search_items(
        session, q=q, department=department, region=region, level=level,
        item_type=item_type, offset=offset, limit=limit,
    )
    return ItemPage(
        total=page.total, offset=page.offset, limit=page.limit,
        items=[service.item_summary(session, i) for i in page.rows],
    )


@router.get("/items/{code}", response_model=ItemOut, responses=problem_responses(404, 422))
def get_item(code: Annotated[str, Path(pattern=CODE)], session: SessionDep) -> ItemOut:
    """An item with its full guide (办事指南)."""
    return service.item_out(session, service.get_item(session, code))


@router.get(
    "/items/{code}/form-schema",
    response_model=dict[str, Any],
    responses={**problem_responses(404, 422), 200: {"content": {"application/schema+json": {}}}},
)
def form_schema(code: Annotated[str, Path(pattern=CODE)], session: SessionDep) -> dict[str, Any]:
    """The item's application form as JSON Schema (draft 2020-12); submissions are validated by it."""
    return service.get_item(session, code).form_schema


@router.get(
    "/items/{code}/blank-form",
    response_class=HTMLResponse,
    responses=problem_responses(404, 422),
)
def blank_form(code: Annotated[str, Path(pattern=CODE)], session: SessionDep) -> HTMLResponse:
    """A printable blank application form (申请表), downloaded as an HTML file."""
    item = service.get_item(session, code)
    return HTMLResponse(
        service.render_blank_form(session, item),
        headers={"Content-Disposition": f'attachment; filename="{item.code}-form.html"'},
    )


@router.post(
    "/items", response_model=ItemOut, status_code=201,
    responses=problem_responses(401, 403, 422),
)
def write_item(data: ItemWrite, session: SessionDep, officer: OfficerDep, now: NowDep) -> ItemOut:
    """Create or update an item (by key); administrators only. Codes are checked on every write."""
    require_role(officer, ["admin"])
    item = service.write_item(session, data=data, now=now)
    return service.item_out(session, item)
