from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from hub.db import Base


class CalendarOverride(Base):
    """One day of a State Council holiday notice: a holiday or a make-up working day."""

    __tablename__ = "calendar_overrides"

    day: Mapped[date] = mapped_column(primary_key=True)
    working: Mapped[bool]
    name: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(255))
    loaded_at: Mapped[datetime]
