"""The item catalogue: one coding scheme, guides, and the form schema of every item."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from sqlalchemy import LABEL_STYLE_TABLENAME_PLUS_COL, or_, select
from sqlalchemy.orm import Session, object_session

from hub import refcache
from hub.catalog.models import Item, ItemType
from hub.catalog.schemas import (
    BranchOut,
    DepartmentOut,
    Guide,
    ItemOut,
    ItemSummary,
    ItemTypeOut,
    ItemWrite,
)
from hub.errors import FieldError, NotFound, ValidationFailed
from hub.org import service as org_service
from hub.org.models import Department, Region
from hub.outbox import service as outbox
from hub.pagination import Page, paginate
from hub.payments import fees
from hub.validation import compiled_check, field_errors, validator_for
from workflow.definition import Branch, WorkflowDefinition
from workflow.identifiers import IdentifierError, build_item_code, validate_national_basic_code
from workflow.registry import UnknownDefinition, get_definition

GUIDE_FIELDS = tuple(Guide.model_fields)
# The form schema keyword naming, on each top-level property, the joint branches that need the field.
BRANCHES_KEYWORD = "x-branches"


def list_item_types(session: Session) -> list[ItemTypeOut]:
    rows = session.scalars(select(ItemType).order_by(ItemType.code))
    return [ItemTypeOut(code=r.code, name=r.name, on_application=r.on_application) for r in rows]


def get_item(session: Session, code: str, *, attach: bool = True) -> Item:
    item = find_item(session, code, attach=attach)
    if item is None:
        raise NotFound(f"事项 {code} 不存在 (unknown item code)")
    return item


def find_item(session: Session, code: str, *, attach: bool = True) -> Item | None:
    """The item with this code, or None. Served from the process's reference cache (hub/refcache.py): no
    query while the cached copy is current; the Item is attached to ``session`` with its department.

    ``attach=False``: for reading the item's values only (a submission): not added to the session, which
    saves the add's cascade; never change it."""
    snap = refcache.lookup(session, refcache.ITEMS, code.upper(), lambda: _item_snapshot(session, code.upper()))
    if snap is None:
        return None
    return refcache.attach(session, snap) if attach else refcache.values_of(session, snap)


def _item_snapshot(session: Session, code: str) -> refcache.Snapshot | None:
    """The item with its department and the department's region, as one joined row (what the ORM's
    joined loading read)."""
    items, departments, regions = Item.__table__, Department.__table__, Region.__table__
    rows = refcache.read(session, select(items, departments, regions)
                         .join(departments, items.c.department_id == departments.c.id)
                         .join(regions, departments.c.region_code == regions.c.code)
                         .where(items.c.code == code)
                         .set_label_style(LABEL_STYLE_TABLENAME_PLUS_COL))
    if not rows:
        return None
    row = rows[0]
    region = refcache.row_snapshot(Region, row, prefix="regions_")
    department = refcache.row_snapshot(Department, row, prefix="departments_", related={"region": region})
    return refcache.row_snapshot(Item, row, prefix="items_", related={"department": department})


def search_items(
    session: Session,
    *,
    q: str | None = None,
    department: str | None = None,
    region: str | None = None,
    level: str | None = None,
    item_type: str | None = None,
    offset: int = 0,
    limit: int = 20,
) -> Page[Item]:
    query = select(Item).where(Item.active.is_(True))
    if q:
        terms = [t for t in q.lower().split() if t]
        for term in terms:
            query = query.where(Item.search_text.contains(term, autoescape=True))
    if department:
        query = query.join(Department, Item.department_id == Department.id).where(
            or_(
                (Department.region_code + Department.code) == department,
                Department.name.contains(department, autoescape=True),
            )
        )
    if region:
        query = query.where(Item.region_code == region)
    if level:
        query = query.where(Item.level == level)
    if item_type:
        query = query.where(Item.item_type == item_type)
    return paginate(session, query, order_by=[Item.code], offset=offset, limit=limit)


def write_item(session: Session, *, data: ItemWrite, now: datetime) -> Item:
    """Create or update (by key) an item, validating its code and guide on every write."""
    department, co_ids = _check_item(session, data)
    code = build_item_code(
        data.region, data.department, data.item_type, data.main_item, data.sub_item
    ).value
    item = session.scalar(select(Item).where(Item.key == data.key))
    _check_code_free(session, code, item)
    created = item is None
    if item is None:
        item = Item(key=data.key, created_at=now, version=1)
        session.add(item)
    else:
        item.version += 1
    _apply(item, data, code=code, department=department, co_ids=co_ids, now=now)
    session.flush()
    _publish(session, item, "catalog.item_created.v1" if created else "catalog.item_updated.v1")
    return item


def _check_item(session: Session, data: ItemWrite) -> tuple[Department, list[int]]:
    errors: list[FieldError] = []
    try:
        validate_national_basic_code(data.national_code)
    except IdentifierError as exc:
        errors.append(FieldError("national_code", exc.rule, str(exc)))
    if session.get(ItemType, data.item_type) is None:
        errors.append(FieldError("item_type", "item_type_table", "事项类型不在类型表中"))
    region = session.get(Region, data.region)
    if region is None:
        errors.append(FieldError("region", "region_exists", "行政区划不存在"))
    elif region.level != data.level:
        errors.append(FieldError("level", "matches_region", f"层级应为 {region.level}"))
    if data.promised_limit_days > data.statutory_limit_days:
        errors.append(FieldError("promised_limit_days", "not_above_statutory", "承诺时限不得超过法定时限"))
    if (data.kind == "instant") != (data.promised_limit_days == 0):
        errors.append(FieldError("kind", "instant_means_zero_days", "即办件承诺时限为 0，承诺件应大于 0"))
    errors.extend(_form_schema_errors(data.form_schema))
    errors.extend(_branch_errors(session, data))
    if data.fee is not None:
        errors.extend(fees.rule_errors(data.fee, form_schema=data.form_schema, applicant_types=data.applicant_types))
    department = _find_department(session, data.region, data.department, "department", errors)
    co_ids = [
        d.id
        for i, ref in enumerate(data.departments)
        if (d := _find_department(session, ref.region, ref.code, f"departments.{i}", errors))
    ]
    if errors:
        raise ValidationFailed(errors)
    assert department is not None
    return department, co_ids


def _find_department(
    session: Session, region: str, code: str, field: str, errors: list[FieldError]
) -> Department | None:
    try:
        return org_service.get_department(session, region_code=region, code=code)
    except NotFound:
        errors.append(FieldError(field, "department_exists", f"部门 {region}-{code} 不存在"))
        return None


def _form_schema_errors(schema: dict[str, Any]) -> list[FieldError]:
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return [FieldError("form_schema", "json_schema", f"表单模式不是合法的 JSON Schema: {exc.message}")]
    if schema.get("type") != "object":
        return [FieldError("form_schema.type", "const", "表单模式的 type 必须为 object")]
    return []


def _branch_errors(session: Session, data: ItemWrite) -> list[FieldError]:
    """The item's workflow definition exists; a joint one's branches (Art. 26) are exactly the definition's,
    each handled by a department that exists, and every form field's ``x-branches`` says what the
    definition's ``form_part`` says: the definition cuts each department's part of the form, the tags show
    it to whoever reads the form, and they may never disagree."""
    try:
        definition = get_definition(data.workflow_id)
    except UnknownDefinition as exc:
        return [FieldError("workflow_id", "definition_exists", str(exc))]
    errors: list[FieldError] = []
    parts = {b.name: set(b.form_part) for b in definition.parallel.branches} if definition.parallel else {}
    branches_match = set(data.branches) == set(parts)
    if not branches_match:
        expected = ", ".join(sorted(parts)) or "无 (none)"
        errors.append(FieldError("branches", "matches_definition",
                                 f"联办分支须与流程定义 {data.workflow_id} 一致：{expected}"))
    for name, key in data.branches.items():
        if _department_by_key(session, key) is None:
            errors.append(FieldError(f"branches.{name}", "department_exists", f"部门 {key} 不存在"))
    properties = data.form_schema.get("properties")
    for field, prop in (properties.items() if isinstance(properties, dict) else ()):
        tagged = prop.get(BRANCHES_KEYWORD, []) if isinstance(prop, dict) else []
        where = f"form_schema.properties.{field}.{BRANCHES_KEYWORD}"
        if not isinstance(tagged, list) or not all(isinstance(b, str) for b in tagged):
            errors.append(FieldError(where, "type", "x-branches 须为分支名称列表 (a list of branch names)"))
            continue
        unknown = sorted(set(tagged) - set(data.branches))
        if unknown:
            errors.append(FieldError(where, "known_branch", f"分支 {', '.join(unknown)} 不在事项的 branches 中"))
            continue
        needed = sorted(name for name, fields in parts.items() if field in fields)
        if branches_match and sorted(tagged) != needed:
            errors.append(FieldError(where, "matches_definition",
                                     f"应为 {needed}：与流程定义 {data.workflow_id} 的 form_part 一致"))
    return errors


def _department_by_key(session: Session, key: str) -> Department | None:
    try:
        return org_service.get_department(session, region_code=key[:6], code=key[6:])
    except NotFound:
        return None


def _check_code_free(session: Session, code: str, item: Item | None) -> None:
    holder = session.scalar(select(Item).where(Item.code == code))
    if holder is not None and holder is not item:
        raise ValidationFailed(
            [FieldError("main_item", "unique_code", f"事项编码 {code} 已被事项 {holder.key} 使用")]
        )


def _apply(
    item: Item, data: ItemWrite, *, code: str, department: Department, co_ids: list[int],
    now: datetime,
) -> None:
    guide = data.model_dump(include=set(GUIDE_FIELDS), mode="json")
    item.code = code
    item.national_code = data.national_code.upper()
    item.name = data.name
    item.region_code = data.region
    item.department_id = department.id
    item.department = department
    item.item_type = data.item_type
    item.main_item = data.main_item
    item.sub_item = data.sub_item
    item.level = data.level
    item.kind = data.kind
    item.statutory_limit_days = data.statutory_limit_days
    item.promised_limit_days = data.promised_limit_days
    item.fee_fen = data.fee.shown_fen() if data.fee else None
    item.national_reporting = data.national_reporting
    item.applicant_types = list(data.applicant_types)
    item.co_department_ids = co_ids
    item.workflow_id = data.workflow_id
    item.guide = guide
    item.form_schema = data.form_schema
    item.search_text = " ".join(
        [data.name, data.key, code, data.national_code, department.name, data.legal_basis]
    ).lower()
    item.updated_at = now


def item_differs(session: Session, *, item: Item, data: ItemWrite) -> bool:
    """Whether writing ``data`` would change the stored item (what ``_apply`` sets), e.g. for a re-run of
    `hub bootstrap` that must leave an unchanged catalogue alone — no new version, no event."""
    department = session.get(Department, item.department_id)
    co = [session.get(Department, i) for i in item.co_department_ids]
    stored = (item.name, item.national_code, item.region_code, department.code if department else None,
              item.item_type, item.main_item, item.sub_item, item.level, item.kind, item.statutory_limit_days,
              item.promised_limit_days, item.national_reporting, list(item.applicant_types), item.workflow_id,
              [(d.region_code, d.code) for d in co if d is not None], item.guide, item.form_schema)
    wanted = (data.name, data.national_code.upper(), data.region, data.department, data.item_type,
              data.main_item, data.sub_item, data.level, data.kind, data.statutory_limit_days,
              data.promised_limit_days, data.national_reporting, list(data.applicant_types), data.workflow_id,
              [(ref.region, ref.code) for ref in data.departments],
              data.model_dump(include=set(GUIDE_FIELDS), mode="json"), data.form_schema)
    return stored != wanted


def _publish(session: Session, item: Item, event_type: str) -> None:
    outbox.enqueue(
        session,
        event_type=event_type,
        region_code=item.region_code,
        payload={"code": item.code, "key": item.key, "version": item.version, "name": item.name,
                 "national_code": item.national_code, "active": item.active},
        occurred_at=item.updated_at,
        correlation_id=item.code,
    )


def validate_form(item: Item, form: dict[str, Any], *, session: Session | None = None) -> None:
    """Validate an application form against its item's schema, naming every bad field. ``session``: the
    caller's, for an item not attached to it (its compiled validator is cached with the reference data).

    The compiled check (jsonschema-rs) first: a form it passes is one jsonschema passes
    (tests/hub/test_catalog_forms.py compares them on mutated forms of every seeded item); jsonschema
    words the errors of a form it refuses, and has the last word."""
    form_check = _form_check(item, session or object_session(item))
    try:
        if form_check.quick is not None and form_check.quick(form):
            return
    except Exception:  # something it cannot take (a huge integer?): jsonschema decides
        pass
    errors = field_errors(form_check.full.iter_errors(form), prefix="form")
    if errors:
        raise ValidationFailed(errors)


@dataclass(frozen=True)
class _FormCheck:
    quick: Callable[[Any], bool] | None
    full: Draft202012Validator


def _form_check(item: Item, session: Session | None) -> _FormCheck:
    """One compiled check per item id and version (a write bumps the version), kept with the process's
    reference data of the item's database. A transaction that wrote items compiles its own: its version may
    be rolled back and reused later with another schema."""
    if session is None:
        return _compile_form_check(item.form_schema)
    return refcache.lookup(session, refcache.ITEMS, ("form-validator", item.id, item.version),
                           lambda: _compile_form_check(item.form_schema))


def _compile_form_check(schema: dict[str, Any]) -> _FormCheck:
    return _FormCheck(compiled_check(schema), validator_for(schema))


def department_out(department: Department) -> DepartmentOut:
    return DepartmentOut(
        key=department.key, region=department.region_code, code=department.code,
        name=department.name, short_name=department.short_name,
    )


def item_summary(session: Session, item: Item) -> ItemSummary:
    return ItemSummary(**_summary_fields(session, item))


def _summary_fields(session: Session, item: Item) -> dict[str, Any]:
    item_type = session.get(ItemType, item.item_type)
    region = session.get(Region, item.region_code)
    return {
        "code": item.code,
        "national_code": item.national_code,
        "key": item.key,
        "name": item.name,
        "item_type": item.item_type,
        "item_type_name": item_type.name if item_type else item.item_type,
        "level": item.level,
        "kind": item.kind,
        "region": item.region_code,
        "region_name": region.name if region else item.region_code,
        "department": department_out(item.department),
        "promised_limit_days": item.promised_limit_days,
        "statutory_limit_days": item.statutory_limit_days,
        "fee_fen": item.fee_fen,
        "joint": bool(item.co_department_ids or item.guide.get("branches")),
    }


def item_out(session: Session, item: Item) -> ItemOut:
    co = [session.get(Department, i) for i in item.co_department_ids]
    return ItemOut(
        **_summary_fields(session, item),
        version=item.version,
        national_reporting=item.national_reporting,
        applicant_types=item.applicant_types,
        co_departments=[department_out(d) for d in co if d is not None],
        workflow_id=item.workflow_id,
        branches=branches_out(session, item),
        guide=Guide.model_validate(item.guide),
        form_schema_url=f"/api/v1/items/{item.code}/form-schema",
        blank_form_url=f"/api/v1/items/{item.code}/blank-form",
    )


# --- joint items: branches and their parts of the form ----------------------------------------------


def branch_departments(item: Item) -> dict[str, str]:
    """Branch name → Department.key of a joint item (its guide's ``branches``); empty for a single item."""
    return dict(item.guide.get("branches") or {})


def branch_fields(item: Item, branch: str) -> tuple[str, ...]:
    """The top-level form fields the ``branch``'s department sees: its ``form_part`` in the definition the
    item's cases start with (the one source; the form schema's ``x-branches`` tags are checked against it
    on every item write)."""
    return _branch(item, branch).form_part


def form_part(item: Item, form: dict[str, Any], branch: str) -> dict[str, Any]:
    """The part of an application ``form`` one branch's department sees (the branch case's form_data):
    only the fields of the branch's part, nothing else of the applicant's form."""
    return {name: form[name] for name in branch_fields(item, branch) if name in form}


def branches_out(session: Session, item: Item) -> list[BranchOut]:
    """A joint item's branches as the catalogue shows them: department, label and form fields."""
    definition = _definition(item)
    if definition is None or definition.parallel is None:
        return []
    out = []
    for name, key in branch_departments(item).items():
        department = _department_by_key(session, key)
        if department is None or name not in {b.name for b in definition.parallel.branches}:
            continue
        branch = definition.parallel.branch(name)
        out.append(BranchOut(name=name, label=branch.label, department=department_out(department),
                             workflow_id=branch.workflow_id, fields=list(branch.form_part)))
    return out


def _definition(item: Item) -> WorkflowDefinition | None:
    try:
        return get_definition(item.workflow_id)
    except UnknownDefinition:
        return None  # checked on every write: only a row written around the catalogue lacks it


def _branch(item: Item, name: str) -> Branch:
    definition = _definition(item)
    if definition is None or definition.parallel is None or name not in branch_departments(item):
        raise NotFound(f"事项 {item.code} 没有联办分支 {name} (unknown branch)")
    return definition.parallel.branch(name)


def render_blank_form(session: Session, item: Item) -> str:
    """A printable blank application form (申请表) for window and paper applicants."""
    summary = _summary_fields(session, item)
    rows = "".join(_form_rows(item.form_schema, _field_branches(item)))
    materials = "".join(
        f"<tr><td>{escape(m['name'])}</td><td>{escape(_FORM_NAMES[m['form']])}</td>"
        f"<td>{m['count']}</td><td>{'是' if m.get('required', True) else '否'}</td></tr>"
        for m in item.guide.get("materials", [])
    )
    return _BLANK_FORM.format(
        name=escape(item.name), code=item.code, department=escape(summary["department"].name),
        rows=rows, materials=materials, promised=item.promised_limit_days,
    )


_FORM_NAMES = {"original": "原件", "copy": "复印件", "electronic": "电子件"}


def _field_branches(item: Item) -> dict[str, list[str]]:
    """A joint item's form field → the labels of the branches (departments) that receive it."""
    definition = _definition(item)
    owners: dict[str, list[str]] = {}
    if definition is not None and definition.parallel is not None:
        for branch in definition.parallel.branches:
            for field in branch.form_part:
                owners.setdefault(field, []).append(branch.label)
    return owners


def _form_rows(schema: dict[str, Any], owners: dict[str, list[str]]) -> list[str]:
    required = set(schema.get("required", []))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        label = escape(str(prop.get("title", name)))
        mark = "（必填）" if name in required else ""
        # A joint item's one form: the applicant sees which departments receive each field (Art. 26).
        sent = f"<br><small>送：{escape('、'.join(owners[name]))}</small>" if owners.get(name) else ""
        hint = prop.get("enum")
        choices = "　".join(f"□ {escape(str(v))}" for v in hint) if hint else ""
        rows.append(f"<tr><th>{label}{mark}{sent}</th><td>{choices}</td></tr>")
    return rows


_BLANK_FORM = """<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{name} 申请表</title>
<style>body{{font-family:serif;margin:2em}}table{{border-collapse:collapse;width:100%}}
th,td{{border:1px solid #000;padding:.5em;text-align:left}}th{{width:30%}}</style></head>
<body><h1>{name} 申请表</h1><p>事项编码：{code}　实施部门：{department}　承诺时限：{promised} 个工作日</p>
<h2>申请人信息</h2><table>
<tr><th>申请人名称（姓名）（必填）</th><td></td></tr>
<tr><th>证件类型及号码（必填）</th><td>□ 居民身份证　□ 统一社会信用代码</td></tr>
<tr><th>联系电话（必填）</th><td></td></tr></table>
<h2>申请事项信息</h2><table>{rows}</table>
<h2>申请材料</h2><table><tr><th>材料名称</th><th>形式</th><th>份数</th><th>必需</th></tr>{materials}</table>
<p>申请人（签章）：＿＿＿＿＿＿　　日期：＿＿＿＿年＿＿月＿＿日</p>
<p>本人承诺所填内容及所附材料真实、有效。</p></body></html>
"""
