"""REST: the performance metrics (绩效评估) and the ranking for performance reviews, as JSON, CSV or XLSX.

Supervisors only, for their region and the regions below it (hub/supervision/metrics.py)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from hub.clock import business_date
from hub.deps import NowDep, OfficerDep, SessionDep
from hub.problems import problem_responses
from hub.supervision import metrics

router = APIRouter(prefix="/api/v1/supervision/metrics", tags=["supervision"])

From = Annotated[date | None, Query(alias="from", description="统计期间开始日（含），默认本月一日")]
To = Annotated[date | None, Query(alias="to", description="统计期间结束日（含），默认今天")]
RegionQ = Annotated[str | None, Query(pattern=r"^\d{6}$", description="行政区划（含下级），默认本人所在区划")]
DepartmentQ = Annotated[str | None, Query(pattern=r"^\d{9}$", description="部门编码：区划 + 3 位部门号")]
ItemQ = Annotated[str | None, Query(pattern=r"^\d{17}[0-9X]$", description="事项编码")]
ChannelQ = Annotated[Literal["online", "window", "partner"] | None, Query(description="渠道")]
FormatQ = Annotated[Literal["json", "csv", "xlsx"], Query(alias="format", description="json（默认）、csv 或 xlsx")]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "JSON, or the CSV / XLSX file asked for with `format`",
          "content": {"application/json": {}, "text/csv": {}, XLSX: {}}},
    **problem_responses(401, 403, 404, 422),
}


def _report(session: Any, officer: Any, now: Any, *, first: date | None, last: date | None, region: str | None,
            department: str | None, item: str | None, channel: str | None, group_by: str) -> metrics.Report:
    today = business_date(now)
    period = metrics.checked_period(first or today.replace(day=1), last or today)
    scope = metrics.scope_for(session, officer, region=region, department=department, item=item, channel=channel)
    return metrics.report(session, scope=scope, period=period, group_by=group_by)


def _envelope(report: metrics.Report) -> dict[str, Any]:
    scope = report.scope
    return {
        "period": {"from": report.period.first.isoformat(), "to": report.period.last.isoformat()},
        "scope": {
            "region": scope.region_code,
            "department": scope.department.key if scope.department is not None else None,
            "item": scope.item.code if scope.item is not None else None,
            "channel": scope.channel,
        },
        "group_by": report.group_by,
        "columns": dict(metrics.COLUMNS),
    }


def _export(rows: list[dict[str, Any]], report: metrics.Report, *, fmt: str, name: str, ranked: bool) -> Response:
    filename = f"{name}-{report.period.first.isoformat()}-{report.period.last.isoformat()}"
    if fmt == "csv":
        return Response(metrics.csv_bytes(rows, ranked=ranked), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}.csv"'})
    return Response(metrics.xlsx_bytes(rows, ranked=ranked, title=name), media_type=XLSX,
                    headers={"Content-Disposition": f'attachment; filename="{filename}.xlsx"'})


@router.get("", responses=RESPONSES)
def performance_metrics(
    session: SessionDep, officer: OfficerDep, now: NowDep,
    first: From = None, last: To = None, region: RegionQ = None, department: DepartmentQ = None,
    item: ItemQ = None, channel: ChannelQ = None,
    group_by: Annotated[Literal["none", "department", "region", "item", "channel"],
                        Query(description="分组：none、department、region（本级以下一级）、item、channel")] = "none",
    export: FormatQ = "json",
) -> Any:
    """Received, accepted, completed, 办结率, on-time and overtime completions, speed-up rates, working days,
    online share, yellow and red alerts, satisfaction and rating rate (docs/supervision.md)."""
    report = _report(session, officer, now, first=first, last=last, region=region, department=department,
                     item=item, channel=channel, group_by=group_by)
    rows = [row.as_dict() for row in report.rows]
    if export != "json":
        return _export([*rows, report.total.as_dict()], report, fmt=export, name="metrics", ranked=False)
    return {**_envelope(report), "rows": rows, "total": report.total.as_dict()}


@router.get("/ranking", responses=RESPONSES)
def performance_ranking(
    session: SessionDep, officer: OfficerDep, now: NowDep,
    first: From = None, last: To = None, region: RegionQ = None, item: ItemQ = None, channel: ChannelQ = None,
    group_by: Annotated[Literal["department", "region", "item"],
                        Query(description="排名对象：department（默认）、region、item")] = "department",
    export: FormatQ = "json",
) -> Any:
    """The ranking for performance reviews: by on-time rate, then 办结率, then actual speed-up; the speed-up
    rates are shown beside the on-time rate, never ranked on alone."""
    report = _report(session, officer, now, first=first, last=last, region=region, department=None, item=item,
                     channel=channel, group_by=group_by)
    rows = metrics.ranking(report.rows)
    if export != "json":
        return _export(rows, report, fmt=export, name="ranking", ranked=True)
    return {**_envelope(report), "ranked_by": list(metrics.RANKED_BY),
            "note": "按时办结率优先排名；提速率仅与按时办结率并列参考，不单独排名", "rows": rows}
