from __future__ import annotations

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hub.db import Base


class Region(Base):
    """A GB/T 2260 administrative division: province, city or county."""

    __tablename__ = "regions"

    code: Mapped[str] = mapped_column(String(6), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    level: Mapped[str] = mapped_column(String(16))
    parent_code: Mapped[str | None] = mapped_column(ForeignKey("regions.code"), index=True)


class Department(Base):
    __tablename__ = "departments"
    __table_args__ = (UniqueConstraint("region_code", "code"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    region_code: Mapped[str] = mapped_column(ForeignKey("regions.code"), index=True)
    code: Mapped[str] = mapped_column(String(3))
    name: Mapped[str] = mapped_column(String(128))
    short_name: Mapped[str] = mapped_column(String(64))
    credit_code: Mapped[str] = mapped_column(String(18), unique=True)
    phone: Mapped[str | None] = mapped_column(String(32))

    region: Mapped[Region] = relationship(lazy="joined")

    @property
    def key(self) -> str:
        """Region + department number: the first nine digits of its items' codes."""
        return f"{self.region_code}{self.code}"
