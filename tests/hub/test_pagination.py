"""One pagination helper behind every paged list: the catalogue, the public disclosure list, an officer's work
queue and the supervisors' access log count the whole list and return one page of it, the same way."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.catalog.models import Item
from hub.pagination import Page, paginate
from tests.support import officer_of, submit

KEY = "physician-practice-registration"


def test_paginate_counts_the_whole_list_and_returns_the_page_asked_for(session: Session) -> None:
    everything = list(session.scalars(select(Item).order_by(Item.code)))
    assert len(everything) >= 3
    first = paginate(session, select(Item), order_by=[Item.code], offset=0, limit=2)
    rest = paginate(session, select(Item), order_by=[Item.code], offset=2, limit=len(everything))
    assert (first.total, first.offset, first.limit) == (len(everything), 0, 2)
    assert [i.code for i in first.rows + rest.rows] == [i.code for i in everything]
    beyond = paginate(session, select(Item), order_by=[Item.code], offset=len(everything), limit=5)
    assert beyond == Page(len(everything), len(everything), 5, [])


def walk(client: TestClient, url: str, rows: str, *, headers: dict[str, str] | None = None,
         **params: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The head of the list (20 rows: the shared test database holds other tests' rows too) read two at a
    time, and read at once."""
    whole = client.get(url, params={**params, "offset": 0, "limit": 20}, headers=headers).json()
    pages, offset = [], 0
    while offset < len(whole[rows]):
        page = client.get(url, params={**params, "offset": offset, "limit": 2}, headers=headers).json()
        assert page["total"] == whole["total"]
        assert len(page[rows]) == min(2, whole["total"] - offset)
        pages += page[rows]
        offset += 2
    return pages, whole[rows]


@pytest.mark.parametrize(("url", "rows", "params"), [
    ("/api/v1/items", "items", {"region": "210100"}),
    ("/api/v1/transparency/cases", "cases", {"region": "210100"}),
])
def test_public_lists_page_without_overlap_or_gap(client: TestClient, url: str, rows: str,
                                                   params: dict[str, str]) -> None:
    for _ in range(3):
        submit(client, KEY)
    pages, whole = walk(client, url, rows, **params)
    assert pages == whole and len(whole) >= 3
    head = client.get(url, params={**params, "offset": 1, "limit": 2}).json()
    assert list(head) == ["total", "offset", "limit", rows] and (head["offset"], head["limit"]) == (1, 2)


def test_the_work_queue_pages_like_the_other_lists_and_keeps_its_shape(client: TestClient, officers) -> None:
    for _ in range(3):
        submit(client, KEY)
    headers = officers.headers(officer_of(KEY, "intake"))
    pages, whole = walk(client, "/api/v1/cases/queue", "entries", headers=headers)
    assert [e["tracking_no"] for e in pages] == [e["tracking_no"] for e in whole] and len(whole) >= 3
    head = client.get("/api/v1/cases/queue", params={"offset": 1, "limit": 2}, headers=headers).json()
    assert list(head) == ["officer", "total", "entries"]


def test_the_access_log_page_keeps_its_shape(client: TestClient, officers) -> None:
    headers = officers.headers("ln_yshj_supervisor")
    page = client.get("/api/v1/supervision/access-log", params={"offset": 3, "limit": 7}, headers=headers).json()
    assert list(page) == ["total", "offset", "limit", "entries"] and (page["offset"], page["limit"]) == (3, 7)
