from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub import refcache
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
    """Whether the region is the ancestor or lies below it (walks region_chain's path, in memory)."""
    parents = _region_parents(session)
    current: str | None = region_code
    seen: set[str] = set()
    while current is not None and current not in seen:
        if current == ancestor:
            return True
        seen.add(current)
        current = parents.get(current)
    return False


def region_and_descendants(session: Session, code: str) -> set[str]:
    """The region and every region below it (from the cached tree: a few hundred rows), e.g. for a
    ``region_code IN (...)`` filter that an index serves."""
    children: dict[str, list[str]] = {}
    for child, parent in _region_parents(session).items():
        if parent is not None:
            children.setdefault(parent, []).append(child)
    found: set[str] = set()
    pending = [code]
    while pending:
        current = pending.pop()
        if current not in found:
            found.add(current)
            pending.extend(children.get(current, ()))
    return found


def _region_parents(session: Session) -> dict[str, str | None]:
    """Every region's parent, from the process's reference cache (hub/refcache.py): the tree is a few
    hundred rows and changes only by seeding or migration, so it is read once per change, whole."""
    return refcache.lookup(session, refcache.REGIONS, "parents", lambda: _read_region_parents(session))


def _read_region_parents(session: Session) -> dict[str, str | None]:
    return {code: parent for code, parent in session.execute(select(Region.code, Region.parent_code))}


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
