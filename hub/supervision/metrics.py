"""Performance metrics of electronic supervision (绩效评估): counts, rates and speed-up of the cases of any
period, department, region (with the regions below it), item or channel, grouped by one of them — the
basis of performance reviews. docs/supervision.md "Performance metrics" defines every figure.

Computed in SQL (SQLAlchemy Core, the same statements on SQLite and PostgreSQL), summing additive counts only
(every rate is a ratio of two sums, taken here), so the per-region rows roll up to the level asked for in Python
without a second query: the cases' figures from the daily roll-up (``metrics_daily``, hub/supervision/rollup.py)
for the days it holds and from the cases for the others (one aggregate per event, index-only on PostgreSQL);
the alerts' and the ratings' from their own tables, one pass over the period's rows each.

What is counted (Administrative Licensing Law Art. 42 limits, Art. 45 special procedures not counted, Art. 82
working days):

* applications: a joint case counts once, as its parent (``parent_id IS NULL``); its branches are their
  departments' share of the one application. Alerts are counted on every case, branches included: a branch's
  lateness is its department's.
* each figure in the period its own event falls in: received by ``submitted_at``, accepted by
  ``accepted_on``, completed (办结: decided, granted or denied, after acceptance) by ``completed_at``, an alert
  by ``raised_at``, a rating by ``rated_at``. Days are China Standard Time business dates, both ends included.
* timeliness and speed-up from what the clock recorded when it stopped: ``cases.on_time`` (the promised limit
  kept, suspensions not counted) and ``cases.working_days_used`` (net of every clock stop).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, literal, or_, select
from sqlalchemy.orm import Session

from hub.auth.models import Officer
from hub.auth.service import can_oversee_region, require_role
from hub.cases.models import Case
from hub.catalog.models import Item
from hub.clock import CHINA_TZ
from hub.errors import FieldError, Forbidden, NotFound, ValidationFailed
from hub.org import service as org_service
from hub.org.models import Department, Region
from hub.supervision.models import Alert, MetricsDaily, MetricsDirtyDay, MetricsRollup, Rating

GROUPS: tuple[str, ...] = ("none", "department", "region", "item", "channel")
CHANNELS: Mapping[str, str] = {"online": "网上申请", "window": "窗口收件", "partner": "合作平台报送"}
DECIDED = ("granted", "denied")  # 办结: the case was decided (Art. 38) and ended
MAX_PERIOD_DAYS = 3 * 366  # three years: a longer report is several reports
SATISFIED_LEVEL = 4  # 满意 (4) and 非常满意 (5)

cases = Case.__table__
alerts = Alert.__table__
ratings = Rating.__table__
daily = MetricsDaily.__table__
dirty_days = MetricsDirtyDay.__table__
rollup_state = MetricsRollup.__table__
ROLLUP_ID = 1  # the one row of metrics_rollup


# --- the request ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """Business days ``first`` .. ``last``, both included."""

    first: date
    last: date

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first, time(0), CHINA_TZ)

    @property
    def end(self) -> datetime:  # exclusive
        return datetime.combine(self.last + timedelta(days=1), time(0), CHINA_TZ)


def checked_period(first: date, last: date) -> Period:
    """422 naming ``to`` when the period runs backwards or is longer than three years."""
    if last < first:
        raise ValidationFailed([FieldError("to", "not_before_from", "统计期间的结束日期不能早于开始日期 (to >= from)")])
    if (last - first).days >= MAX_PERIOD_DAYS:
        raise ValidationFailed([FieldError(
            "to", "period_at_most_3_years", "统计期间不能超过三年，请分段统计 (at most three years per report)")])
    return Period(first, last)


@dataclass(frozen=True)
class Scope:
    """What the figures cover: the regions (a region and those below it), and optionally one department, one
    item, one channel."""

    region_code: str
    regions: frozenset[str]
    department: Department | None = None
    item: Item | None = None
    channel: str | None = None

    def conditions(self, table: Any) -> list[ColumnElement[bool]]:
        """On ``table``'s region and department columns (cases; alerts and ratings carry their case's); item and
        channel on the case (for alerts and ratings: looked up by the case's primary key)."""
        found: list[ColumnElement[bool]] = [table.c.region_code.in_(sorted(self.regions))]
        if self.department is not None:
            found.append(table.c.department_id == self.department.id)
        if self.item is not None:
            found.append(_case_column(table, cases.c.item_id) == self.item.id)
        if self.channel is not None:
            found.append(_case_column(table, cases.c.channel) == self.channel)
        return found


def _case_column(table: Any, column: Any) -> Any:
    """``column`` of the case a row of ``table`` belongs to: the column itself on cases, else a lookup by primary
    key per row — the cost follows the period's alerts or ratings, not the cases table. The daily roll-up
    carries the case's item and channel itself."""
    if table is cases or table is daily:
        return table.c[column.key]
    return select(column).where(cases.c.id == table.c.case_id).scalar_subquery()


def scope_for(session: Session, officer: Officer, *, region: str | None, department: str | None,
              item: str | None, channel: str | None) -> Scope:
    """The supervisor's scope: his region and below (hub.auth.service.can_oversee_region); a region or
    department outside it is a 403, an unknown one a 404."""
    require_role(officer, ("supervisor",))
    region_code = region or officer.region_code
    org_service.get_region(session, region_code)
    if not can_oversee_region(session, officer, region_code):
        raise Forbidden(
            f"无权查看行政区划 {region_code} 的绩效数据：仅可查看本级及下级 (outside the supervisor's region)")
    chosen_department = org_service.department_by_key(session, department) if department else None
    if chosen_department is not None and not can_oversee_region(session, officer, chosen_department.region_code):
        raise Forbidden(f"无权查看部门 {department} 的绩效数据：仅可查看本级及下级 (outside the supervisor's region)")
    chosen_item = None
    if item:
        chosen_item = session.scalar(select(Item).where(Item.code == item))
        if chosen_item is None:
            raise NotFound(f"事项 {item} 不存在 (unknown item)")
    return Scope(region_code, frozenset(org_service.region_and_descendants(session, region_code)),
                 chosen_department, chosen_item, channel)


# --- the figures -----------------------------------------------------------------------------------------


@dataclass
class Sums:
    """Additive counts of one group; every published rate is a ratio of two of them."""

    received: int = 0
    accepted: int = 0
    completed: int = 0
    on_time: int = 0
    overtime: int = 0
    days_cases: int = 0  # completed cases with working days recorded
    days_sum: int = 0
    promised_statutory: int = 0  # Σ statutory limit of completed cases with a limit (> 0)
    promised_sum: int = 0  # Σ promised limit of those
    actual_statutory: int = 0  # Σ statutory limit of completed cases with a limit and working days recorded
    actual_sum: int = 0  # Σ working days used of those
    online: int = 0
    window: int = 0
    yellow: int = 0
    red: int = 0
    ratings: int = 0
    satisfied: int = 0
    level_sum: int = 0
    completion_ratings: int = 0  # ratings of the service event "completion"

    def add(self, other: Sums) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


def _ratio(numerator: int, denominator: int, digits: int = 4) -> float | None:
    return round(numerator / denominator, digits) if denominator else None


def figures_of(s: Sums) -> dict[str, Any]:
    """The published figures of one group, in COLUMNS order (rates 0..1, four decimals; None: no base)."""
    return {
        "received": s.received,
        "accepted": s.accepted,
        "completed": s.completed,
        "completion_rate": _ratio(s.completed, s.accepted),
        "on_time": s.on_time,
        "overtime": s.overtime,
        "on_time_rate": _ratio(s.on_time, s.on_time + s.overtime),
        "promised_speed_up": _ratio(s.promised_statutory - s.promised_sum, s.promised_statutory),
        "actual_speed_up": _ratio(s.actual_statutory - s.actual_sum, s.actual_statutory),
        "average_working_days": _ratio(s.days_sum, s.days_cases, 2),
        "online": s.online,
        "window": s.window,
        "online_share": _ratio(s.online, s.online + s.window),
        "yellow": s.yellow,
        "red": s.red,
        "ratings": s.ratings,
        "satisfied": s.satisfied,
        "satisfaction_rate": _ratio(s.satisfied, s.ratings),
        "average_rating": _ratio(s.level_sum, s.ratings, 2),
        "rating_rate": _ratio(s.completion_ratings, s.completed),
    }


# Column key → the label officers read (CSV / XLSX headers, docs/supervision.md).
COLUMNS: Mapping[str, str] = {
    "received": "收件数",
    "accepted": "受理数",
    "completed": "办结数",
    "completion_rate": "办结率",
    "on_time": "按时办结数",
    "overtime": "超期办结数",
    "on_time_rate": "按时办结率",
    "promised_speed_up": "承诺提速率",
    "actual_speed_up": "实际提速率",
    "average_working_days": "平均办理工作日",
    "online": "网上申请数",
    "window": "窗口申请数",
    "online_share": "网上办理率",
    "yellow": "黄灯预警数",
    "red": "红灯预警数",
    "ratings": "评价数",
    "satisfied": "满意数",
    "satisfaction_rate": "满意率",
    "average_rating": "平均评分",
    "rating_rate": "评价率",
}
RATES = frozenset({"completion_rate", "on_time_rate", "promised_speed_up", "actual_speed_up", "online_share",
                   "satisfaction_rate", "rating_rate"})


def _count(condition: ColumnElement[bool]) -> Any:
    # An aggregate FILTER (PostgreSQL, SQLite >= 3.30): cheaper per row than SUM(CASE ...).
    return func.count().filter(condition)


def _group_column(group_by: str, table: Any = cases) -> Any:
    """The grouping column, on ``table`` (cases, or alerts / ratings which carry the case's department and
    region themselves, and reach its item and channel by its primary key)."""
    if group_by == "none":
        return literal("")
    if group_by == "department":
        return table.c.department_id
    if group_by == "region":
        return table.c.region_code
    return _case_column(table, cases.c.item_id if group_by == "item" else cases.c.channel)


def _in_period(column: Any, period: Period) -> ColumnElement[bool]:
    return and_(column >= period.start, column < period.end)


def _in_days(column: Any, days: Sequence[Period]) -> ColumnElement[bool]:
    """An instant on one of the runs of business days (each a range an index on the column serves)."""
    return or_(false(), *(_in_period(column, run) for run in days))


def _on_days(column: Any, days: Sequence[Period]) -> ColumnElement[bool]:
    """A date on one of the runs of business days."""
    return or_(false(), *(column.between(run.first, run.last) for run in days))


def _case_sums(session: Session, scope: Scope, period: Period, group_by: str) -> dict[Any, Sums]:
    """The applications' figures of the period: the days the roll-up holds from ``metrics_daily`` (a few rows
    per day and group), the others — the days after its watermark, the dirty ones — from the cases."""
    rolled, live = split_period(session, period)
    grouped = _rolled_sums(session, scope, rolled, group_by) if rolled else {}
    if live:
        keys = () if group_by == "none" else (_group_column(group_by),)  # none: one row, no GROUP BY
        for values, sums in live_case_sums(session, scope.conditions(cases), live, keys).items():
            grouped.setdefault(values[0] if values else "", Sums()).add(sums)
    return grouped


def split_period(session: Session, period: Period) -> tuple[list[Period], list[Period]]:
    """(rolled, live): the period's days as runs of consecutive days, those the roll-up holds (up to its
    watermark, not dirty) and those to read from the cases (after the watermark, or dirty: a write changed
    their figures after they were rolled up and the roll-up has not recomputed them yet)."""
    rolled_until = session.scalar(select(rollup_state.c.rolled_until).where(rollup_state.c.id == ROLLUP_ID))
    if rolled_until is None or rolled_until < period.first:
        return [], [period]
    last_rolled = min(rolled_until, period.last)
    dirty = set(session.scalars(select(dirty_days.c.day).where(dirty_days.c.day.between(period.first, last_rolled))))
    rolled: list[Period] = []
    live: list[Period] = []
    day = period.first
    while day <= last_rolled:
        runs = live if day in dirty else rolled
        if runs and runs[-1].last == day - timedelta(days=1):
            runs[-1] = Period(runs[-1].first, day)
        else:
            runs.append(Period(day, day))
        day += timedelta(days=1)
    if period.last > rolled_until:
        after = rolled_until + timedelta(days=1)
        if live and live[-1].last == rolled_until:
            live[-1] = Period(live[-1].first, period.last)
        else:
            live.append(Period(after, period.last))
    return rolled, live


# The additive case figures the roll-up stores per day and group (metrics_daily's columns; Sums' names).
DAILY_FIGURES: tuple[str, ...] = (
    "received", "accepted", "completed", "on_time", "overtime", "days_cases", "days_sum", "promised_statutory",
    "promised_sum", "actual_statutory", "actual_sum", "online", "window")


def _rolled_sums(session: Session, scope: Scope, days: Sequence[Period], group_by: str) -> dict[Any, Sums]:
    """The roll-up's rows of the scope on those days, summed by the group (at most days × groups rows)."""
    rows = (
        select(_group_column(group_by, daily).label("key"), *(daily.c[name] for name in DAILY_FIGURES))
        .where(_on_days(daily.c.day, days), *scope.conditions(daily))
        .subquery()
    )
    statement = (
        select(rows.c.key, *(func.sum(rows.c[name]).label(name) for name in DAILY_FIGURES))
        .group_by(rows.c.key)
    )
    return {row.key: _sums(row._mapping) for row in session.execute(statement)}


def live_case_sums(session: Session, conditions: Sequence[ColumnElement[bool]], days: Sequence[Period],
                   keys: Sequence[Any]) -> dict[tuple[Any, ...], Sums]:
    """The applications (``parent_id IS NULL``) meeting ``conditions`` received, accepted and completed on
    ``days`` (runs of business days), summed by the values of ``keys`` (columns of cases) — what the report reads
    for the days the roll-up does not hold, and what the roll-up stores for a day.

    One aggregate per event, each over the range of its own column: on PostgreSQL an index-only scan of that
    column's covering index (migration 0015), whatever the table's physical order."""
    grouped: dict[tuple[Any, ...], Sums] = {}
    own = cases.c.origin == "hub"  # a partner platform counts its own channels (docs/window.md)
    limited = cases.c.statutory_limit_days > 0
    timed = cases.c.working_days_used.is_not(None)
    parts = (
        (_in_days(cases.c.submitted_at, days), (
            func.count().label("received"),
            _count(and_(own, cases.c.channel == "online")).label("online"),
            _count(and_(own, cases.c.channel == "window")).label("window"))),
        (_on_days(cases.c.accepted_on, days), (func.count().label("accepted"),)),
        (and_(_in_days(cases.c.completed_at, days), cases.c.accepted_on.is_not(None), cases.c.result.in_(DECIDED)), (
            func.count().label("completed"),
            _count(cases.c.on_time.is_(True)).label("on_time"),
            _count(cases.c.on_time.is_(False)).label("overtime"),
            _count(timed).label("days_cases"),
            func.sum(cases.c.working_days_used).label("days_sum"),
            func.sum(cases.c.statutory_limit_days).filter(limited).label("promised_statutory"),
            func.sum(cases.c.promised_limit_days).filter(limited).label("promised_sum"),
            func.sum(cases.c.statutory_limit_days).filter(and_(limited, timed)).label("actual_statutory"),
            func.sum(cases.c.working_days_used).filter(limited).label("actual_sum"))),
    )
    for event, figures in parts:
        statement = (
            select(*(key.label(f"key{number}") for number, key in enumerate(keys)), *figures)
            .where(cases.c.parent_id.is_(None), event, *conditions)
            .group_by(*keys)
        )
        for row in session.execute(statement):
            grouped.setdefault(tuple(row[: len(keys)]), Sums()).add(_sums(row._mapping))
    return grouped


def _alert_sums(session: Session, scope: Scope, period: Period, group_by: str) -> dict[Any, Sums]:
    """Alerts raised in the period (index on raised_at) on the scope's cases, branches included, by the case's
    group."""
    rows = (
        select(_group_column(group_by, alerts).label("key"), alerts.c.level)
        .where(_in_period(alerts.c.raised_at, period), *scope.conditions(alerts))
        .subquery()
    )
    statement = (
        select(rows.c.key, _count(rows.c.level == "yellow").label("yellow"), _count(rows.c.level == "red").label("red"))
        .group_by(rows.c.key)
    )
    return {row.key: _sums(row._mapping) for row in session.execute(statement)}


def _rating_sums(session: Session, scope: Scope, period: Period, group_by: str) -> dict[Any, Sums]:
    """Ratings given in the period: satisfaction over all, the rating rate's count over the completion's."""
    rows = (
        select(_group_column(group_by, ratings).label("key"), ratings.c.level, ratings.c.service_event)
        .where(_in_period(ratings.c.rated_at, period), *scope.conditions(ratings))
        .subquery()
    )
    statement = (
        select(
            rows.c.key,
            func.count().label("ratings"),
            _count(rows.c.level >= SATISFIED_LEVEL).label("satisfied"),
            func.coalesce(func.sum(rows.c.level), 0).label("level_sum"),
            _count(rows.c.service_event == "completion").label("completion_ratings"),
        )
        .group_by(rows.c.key)
    )
    return {row.key: _sums(row._mapping) for row in session.execute(statement)}


def _sums(row: Mapping[str, Any]) -> Sums:
    names = {f.name for f in fields(Sums)}
    return Sums(**{name: int(value or 0) for name, value in row.items() if name in names})


# --- the report ----------------------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    name: str
    sums: Sums = field(default_factory=Sums)

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "name": self.name, **figures_of(self.sums)}


@dataclass(frozen=True)
class Report:
    period: Period
    scope: Scope
    group_by: str
    rows: list[Row]
    total: Row


def report(session: Session, *, scope: Scope, period: Period, group_by: str) -> Report:
    """The figures of ``scope`` in ``period``, one row per group (those with anything to count), and the total.

    ``group_by="region"`` rolls each case's region up to the level just below the scope's region (a city
    supervisor sees one row per county, plus the city's own cases under the city)."""
    grouped: dict[Any, Sums] = {}
    for part in (_case_sums, _alert_sums, _rating_sums):
        for key, sums in part(session, scope, period, group_by).items():
            if group_by == "region":
                key = _rolled_up(session, key, scope.region_code)
            grouped.setdefault(key, Sums()).add(sums)
    labels = _labels(session, group_by, grouped.keys())
    rows = [Row(*labels.get(key, (str(key), str(key))), sums) for key, sums in grouped.items()]
    rows.sort(key=lambda row: row.key)
    total = Row("total", "合计")
    for row in rows:
        total.sums.add(row.sums)
    return Report(period, scope, group_by, rows if group_by != "none" else [], total)


def _rolled_up(session: Session, region_code: str, top: str) -> str:
    """The region just below ``top`` on ``region_code``'s path up (``top`` itself for its own cases)."""
    chain = org_service.region_chain(session, region_code)  # nearest first, up to the province
    if top not in chain:
        return region_code
    index = chain.index(top)
    return chain[index - 1] if index > 0 else top


def _labels(session: Session, group_by: str, keys: Iterable[Any]) -> dict[Any, tuple[str, str]]:
    """Each group's public key and name: a department's key (region + number, as in item codes), a region's
    code, an item's code, a channel."""
    wanted = list(keys)
    if group_by == "department":
        found = session.execute(select(Department.id, Department.region_code, Department.code, Department.name)
                                .where(Department.id.in_(wanted)))
        return {row.id: (row.region_code + row.code, row.name) for row in found}
    if group_by == "region":
        return {code: (code, name) for code, name in
                session.execute(select(Region.code, Region.name).where(Region.code.in_(wanted)))}
    if group_by == "item":
        return {id_: (code, name) for id_, code, name in
                session.execute(select(Item.id, Item.code, Item.name).where(Item.id.in_(wanted)))}
    if group_by == "channel":
        return {key: (key, CHANNELS.get(key, key)) for key in wanted}
    return {"": ("total", "合计")}


# --- the ranking for performance reviews -------------------------------------------------------------------

# Ordered by timeliness first: a speed-up rate is never ranked on alone (it rewards promising short limits and
# rushing cases through); it is shown beside the on-time rate and breaks ties only.
RANKED_BY = ("on_time_rate", "completion_rate", "actual_speed_up")


def ranking(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """The groups with completed cases ranked by on-time rate, then completion rate, then actual speed-up
    (equal figures share a rank); groups with no completion follow, unranked (rank None)."""
    figures = [row.as_dict() for row in rows]
    ranked = [f for f in figures if f["completed"]]
    ranked.sort(key=lambda f: (*(-(f[name] if f[name] is not None else -1e9) for name in RANKED_BY), f["key"]))
    previous: tuple[Any, ...] | None = None
    rank = 0
    for position, row in enumerate(ranked, start=1):
        current = tuple(row[name] for name in RANKED_BY)
        if current != previous:
            rank, previous = position, current
        row["rank"] = rank
    unranked = [{**f, "rank": None} for f in figures if not f["completed"]]
    return [*ranked, *unranked]


# --- exports -------------------------------------------------------------------------------------------------

LEADING: Mapping[str, str] = {"rank": "名次", "key": "编码", "name": "名称"}


def table(rows: Sequence[Mapping[str, Any]], *, ranked: bool) -> tuple[list[str], list[str], list[list[Any]]]:
    """(keys, labels, values): the columns of an export, figures in COLUMNS order."""
    keys = [*(["rank"] if ranked else []), "key", "name", *COLUMNS]
    labels = [LEADING.get(key) or COLUMNS[key] for key in keys]
    return keys, labels, [[row.get(key) for key in keys] for row in rows]


def csv_bytes(rows: Sequence[Mapping[str, Any]], *, ranked: bool) -> bytes:
    """UTF-8 with a byte-order mark (so spreadsheet programs read the Chinese headers), rates as decimals."""
    _, labels, values = table(rows, ranked=ranked)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(labels)
    writer.writerows([["" if v is None else v for v in line] for line in values])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def xlsx_bytes(rows: Sequence[Mapping[str, Any]], *, ranked: bool, title: str) -> bytes:
    """One sheet: a header row, then one row per group; rates as numbers shown as percentages."""
    from openpyxl import Workbook  # only the export needs it

    keys, labels, values = table(rows, ranked=ranked)
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = title[:31]
    sheet.append(labels)
    for line in values:
        sheet.append(line)
    for column, key in enumerate(keys, start=1):
        if key in RATES:
            for (cell,) in sheet.iter_rows(min_row=2, min_col=column, max_col=column):
                cell.number_format = "0.00%"
    sheet.freeze_panes = "A2"
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
