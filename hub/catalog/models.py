from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hub.db import Base
from hub.org.models import Department


class ItemType(Base):
    """Item types as the national exchange tables number them; a table, since vendors differ."""

    __tablename__ = "item_types"

    code: Mapped[str] = mapped_column(String(2), primary_key=True)
    name: Mapped[str] = mapped_column(String(32))
    on_application: Mapped[bool] = mapped_column(default=True)


class Item(Base):
    """An approval item (事项) with its guide (办事指南) and application form schema."""

    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(18), unique=True)
    national_code: Mapped[str] = mapped_column(String(12), index=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    department_id: Mapped[int] = mapped_column(ForeignKey("departments.id"), index=True)
    item_type: Mapped[str] = mapped_column(ForeignKey("item_types.code"), index=True)
    main_item: Mapped[str] = mapped_column(String(3))
    sub_item: Mapped[str] = mapped_column(String(3))
    level: Mapped[str] = mapped_column(String(16), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    statutory_limit_days: Mapped[int] = mapped_column(Integer)
    promised_limit_days: Mapped[int] = mapped_column(Integer)
    fee_fen: Mapped[int | None] = mapped_column(Integer)
    national_reporting: Mapped[bool] = mapped_column(default=False)
    guide: Mapped[dict[str, Any]]
    form_schema: Mapped[dict[str, Any]]
    # The versioned workflow definition (workflow/definitions/<id>.json) new cases of the item start with.
    workflow_id: Mapped[str] = mapped_column(String(64), default="standard.v1", server_default="standard.v1")
    co_department_ids: Mapped[list[int]] = mapped_column(default=list, type_=JSON)
    applicant_types: Mapped[list[str]] = mapped_column(default=list, type_=JSON)
    search_text: Mapped[str] = mapped_column(Text, default="")
    active: Mapped[bool] = mapped_column(default=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    department: Mapped[Department] = relationship(lazy="joined")
