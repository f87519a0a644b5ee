"""One way to page a list: how many there are in all, and the rows of one page (``offset``, ``limit``).

Services return a ``Page``; paged responses start with ``PageOut``'s fields (``total``, ``offset``,
``limit``) and add their rows under their own name (``items``, ``cases``, ``entries``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list and the size of the whole list."""

    total: int
    offset: int
    limit: int
    rows: list[T] = field(default_factory=list)


def paginate(session: Session, query: Select[tuple[T]], *, order_by: Sequence[ColumnElement[Any]], offset: int,
             limit: int) -> Page[T]:
    """Count what ``query`` selects, then fetch its rows ``offset`` … ``offset + limit`` in ``order_by`` order.

    The order should end on a unique column, so that pages neither overlap nor skip a row. Rows are made
    unique (an entity whose collections are eager-loaded by join comes back once)."""
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(*order_by).offset(offset).limit(limit)).unique()
    return Page(total, offset, limit, list(rows))


class PageOut(BaseModel):
    """The head of a paged response."""

    total: int
    offset: int
    limit: int
