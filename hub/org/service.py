from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.errors import NotFound
from hub.org.models import Department, Region


def get_region(session: Session, code: str) -> Region:
    region = session.get(Region, code)
    if region is None:
        raise NotFound(f"行政区划 {code} 不存在 (unknown region)")
    return region


def region_chain(session: Session, code: str) -> list[str]:
    """The region and its ancestors, nearest first."""
    chain: list[str] = []
    current: str | None = code
    while current is not None and current not in chain:
        chain.append(current)
        region = session.get(Region, current)
        current = region.parent_code if region else None
    return chain


def is_within(session: Session, *, region_code: str, ancestor: str) -> bool:
    return ancestor in _chain_cached(session, region_code)


def _chain_cached(session: Session, code: str) -> tuple[str, ...]:
    # Regions change only through migrations and seeding, so caching their chains is safe
    # even with many processes: nothing here must be shared between them.
    key = (session.get_bind().url.render_as_string(), code)
    cached = _CHAINS.get(key)
    if cached is None:
        cached = tuple(region_chain(session, code))
        if session.get(Region, code) is not None:
            _CHAINS[key] = cached
    return cached


_CHAINS: dict[tuple[str, str], tuple[str, ...]] = {}


def get_department(session: Session, *, region_code: str, code: str) -> Department:
    department = session.scalar(
        select(Department).where(Department.region_code == region_code, Department.code == code)
    )
    if department is None:
        raise NotFound(f"部门 {region_code}-{code} 不存在 (unknown department)")
    return department


def department_by_key(session: Session, key: str) -> Department:
    if len(key) != 9 or not key.isdigit():
        raise NotFound(f"部门编码 {key} 格式错误，应为 9 位数字 (department key is region + 3 digits)")
    return get_department(session, region_code=key[:6], code=key[6:])
