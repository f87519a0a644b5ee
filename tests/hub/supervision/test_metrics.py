"""Performance metrics over HTTP (/api/v1/supervision/metrics, /ranking, CSV and XLSX) against a seeded data set
whose every figure is computed by hand below, on each backend.

The data set lies in June 2030, a month no other test writes to, and is removed after the module. Cases are
written as rows (the clock's results — on_time, working_days_used — as the alerts part stores them when a
clock stops), alerts and ratings likewise.

Shenyang (210100) cases, June 2030 unless said otherwise (promised / statutory limits of the seeded items):

| case | department (item)            | channel | origin  | received | accepted | completed (result)  | days | on time |
|------|------------------------------|---------|---------|----------|----------|---------------------|------|---------|
| A1   | 210100007 physician (5/20)   | online  | hub     | 06-03    | 06-03    | 06-10 granted       | 4    | yes     |
| A2   | 210100007 physician          | window  | hub     | 06-04    | 06-05    | 06-20 granted       | 7    | no      |
| A3   | 210100007 physician          | online  | hub     | 06-05    | 06-06    | —                   |      |         |
| A4   | 210100007 physician          | online  | hub     | 05-28    | 05-29    | 06-03 denied        | 3    | yes     |
| A5   | 210100007 physician          | online  | hub     | 06-10    | —        | —                   |      |         |
| B1   | 210100003 building (3/7)     | window  | hub     | 06-03    | 06-04    | 06-07 granted       | 2    | yes     |
| B2   | 210100003 building           | partner | partner | 06-03    | 06-03    | 06-12 granted       | 5    | no      |
| C1   | 210102001 food (5/10)        | online  | hub     | 06-03    | 06-03    | 06-05 granted       | 1    | yes     |
| C2   | 210102001 food               | online  | hub     | 06-03    | 06-03    | 06-28 withdrawn     |      |         |
| J    | 210100001 enterprise (1/3)   | online  | hub     | 06-03    | 06-03    | 06-04 granted       | 1    | yes     |
| J1   | branch of J, 210100002       | online  | hub     | 06-03    | 06-03    | 06-04 granted       | 1    | yes     |
| E1   | 210100007 physician          | online  | hub     | 07-01    | 07-01    | 07-02 granted       | 1    | yes     |
| D1   | 210200004 real estate (5/30) | online  | hub     | 06-03    | 06-03    | 06-06 granted       | 2    | yes     |

Alerts raised: A2 yellow and red (06-15), A3 yellow (06-20), J1 red (06-04), E1 red (07-02, outside the period).
Ratings: A1 5 (06-11), A2 2 (06-21), B1 4 (06-08), C1 3 (06-06), E1 5 (07-03, outside).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import delete, select
from sqlalchemy.engine import Engine

from hub.cases.models import Case
from hub.catalog.models import Item
from hub.clock import FixedClock
from hub.org.models import Department
from hub.supervision.models import Alert, Rating
from tests.conftest import Officers
from tests.support import officer_of, submit

JUNE = {"from": "2030-06-01", "to": "2030-06-30"}
CITY_SUPERVISOR = "sy_yshj_supervisor"  # 210100 沈阳市
PROVINCE_SUPERVISOR = "ln_yshj_supervisor"  # 210000 辽宁省
TRACKING_PREFIX = "2101002030"  # + 11 digits: numbers no real case gets (June 2030 is never "today" in tests)

ITEMS = {
    "A": "physician-practice-registration", "B": "building-construction-permit", "C": "food-business-licence",
    "J": "enterprise-establishment", "D": "real-estate-transfer-registration",
}
# name: (item, channel, origin, received, accepted, completed, result, working days, on time)
CASES: dict[str, tuple[Any, ...]] = {
    "A1": ("A", "online", "hub", "06-03", "06-03", "06-10", "granted", 4, True),
    "A2": ("A", "window", "hub", "06-04", "06-05", "06-20", "granted", 7, False),
    "A3": ("A", "online", "hub", "06-05", "06-06", None, None, None, None),
    "A4": ("A", "online", "hub", "05-28", "05-29", "06-03", "denied", 3, True),
    "A5": ("A", "online", "hub", "06-10", None, None, None, None, None),
    "B1": ("B", "window", "hub", "06-03", "06-04", "06-07", "granted", 2, True),
    "B2": ("B", "partner", "partner", "06-03", "06-03", "06-12", "granted", 5, False),
    "C1": ("C", "online", "hub", "06-03", "06-03", "06-05", "granted", 1, True),
    "C2": ("C", "online", "hub", "06-03", "06-03", "06-28", "withdrawn", None, None),
    "J": ("J", "online", "hub", "06-03", "06-03", "06-04", "granted", 1, True),
    "J1": ("J", "online", "hub", "06-03", "06-03", "06-04", "granted", 1, True),
    "E1": ("A", "online", "hub", "07-01", "07-01", "07-02", "granted", 1, True),
    "D1": ("D", "online", "hub", "06-03", "06-03", "06-06", "granted", 2, True),
}
ALERTS = [("A2", "yellow", "06-15"), ("A2", "red", "06-15"), ("A3", "yellow", "06-20"), ("J1", "red", "06-04"),
          ("E1", "red", "07-02")]
RATINGS = [("A1", 5, "06-11"), ("A2", 2, "06-21"), ("B1", 4, "06-08"), ("C1", 3, "06-06"), ("E1", 5, "07-03")]


def day(month_day: str) -> date:
    return date.fromisoformat(f"2030-{month_day}")


def at(month_day: str) -> datetime:
    """10:00 China time that day."""
    return datetime.combine(day(month_day), datetime.min.time(), UTC) + timedelta(hours=2)


@pytest.fixture(scope="module")
def dataset(engine: Engine) -> Iterator[dict[str, int]]:
    ids: dict[str, int] = {}
    with engine.begin() as connection:
        items = {letter: connection.execute(select(Item.__table__).where(Item.key == key)).one()
                 for letter, key in ITEMS.items()}
        branch_department = connection.execute(select(Department.id).where(
            Department.region_code == "210100", Department.code == "002")).scalar_one()
        for number, (name, values) in enumerate(CASES.items(), start=1):
            letter, channel, origin, received, accepted, completed, result, days, on_time = values
            item = items[letter]
            branch = name == "J1"
            row = {
                "tracking_no": f"{TRACKING_PREFIX}{number:011d}", "query_code_hash": "0" * 64,
                "item_id": item.id, "region_code": "210100" if branch else item.region_code,
                "department_id": branch_department if branch else item.department_id,
                "parent_id": ids["J"] if branch else None, "branch": "seal_engraving" if branch else None,
                "state": "completed" if completed else ("under_review" if accepted else "submitted"),
                "workflow_id": item.workflow_id, "channel": channel, "origin": origin,
                "origin_partner": "metrics-test" if origin == "partner" else None,
                "external_id": f"metrics-{name}" if origin == "partner" else None,
                "applicant_type": "1", "applicant_name": "测试申请人", "applicant_id_type": "citizen_id",
                "applicant_id_number": "11010519491231002X", "form_data": {},
                "submitted_at": at(received), "received_on": day(received),
                "accepted_on": day(accepted) if accepted else None,
                "promised_limit_days": item.promised_limit_days, "statutory_limit_days": item.statutory_limit_days,
                "decided_at": at(completed) if completed else None,
                "completed_at": at(completed) if completed else None,
                "result": result, "working_days_used": days, "on_time": on_time, "updated_at": at(received),
            }
            ids[name] = connection.execute(Case.__table__.insert().values(row).returning(Case.id)).scalar_one()
        cases = {name: connection.execute(select(Case.department_id, Case.region_code).where(Case.id == id_)).one()
                 for name, id_ in ids.items()}
        for name, level, raised in ALERTS:
            connection.execute(Alert.__table__.insert().values(
                case_id=ids[name], rule="time.case_overdue", kind="time", level=level, status="open",
                department_id=cases[name].department_id, region_code=cases[name].region_code,
                supervisor_region_code=cases[name].region_code, escalations=0, message="办件即将超期",
                detail={}, raised_at=at(raised), raised_on=day(raised), history=[]))
        for name, level, rated in RATINGS:
            connection.execute(Rating.__table__.insert().values(
                case_id=ids[name], service_event="completion", level=level, source="applicant", rated_at=at(rated),
                department_id=cases[name].department_id, region_code=cases[name].region_code))
    yield ids
    with engine.begin() as connection:
        connection.execute(delete(Rating.__table__).where(Rating.case_id.in_(ids.values())))
        connection.execute(delete(Alert.__table__).where(Alert.case_id.in_(ids.values())))
        connection.execute(delete(Case.__table__).where(Case.parent_id.in_(ids.values())))
        connection.execute(delete(Case.__table__).where(Case.id.in_(ids.values())))


def item_code(client: TestClient, key: str, engine: Engine) -> str:
    with engine.connect() as connection:
        return str(connection.execute(select(Item.code).where(Item.key == key)).scalar_one())


def get(client: TestClient, officers: Officers, path: str, who: str = CITY_SUPERVISOR, **params: Any) -> Any:
    return client.get(path, params={**JUNE, **params}, headers=officers.headers(who))


def figures(row: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: row[name] for name in names}


# Shenyang, June 2030, hand-computed (see the module's table):
# received A1 A2 A3 A5 B1 B2 C1 C2 J = 9 (A4 in May, E1 in July, J1 a branch, D1 Dalian)
# accepted A1 A2 A3 B1 B2 C1 C2 J = 8; completed A1 A2 A4 B1 B2 C1 J = 7 (C2 withdrawn) → 办结率 7/8
# on time A1 A4 B1 C1 J = 5, overtime A2 B2 = 2 → 5/7; working days 4+7+3+2+5+1+1 = 23 → 23/7 = 3.29
# statutory 20·3 + 7·2 + 10 + 3 = 87, promised 5·3 + 3·2 + 5 + 1 = 27 → 承诺提速率 60/87; 实际 (87 − 23)/87 = 64/87
# online (origin hub) A1 A3 A5 C1 C2 J = 6, window A2 B1 = 2 (B2 partner) → 6/8
# yellow A2 A3 = 2, red A2 J1 = 2; ratings 5 2 4 3 → satisfied 2/4, average 14/4; rated 4 of 7 completed
CITY_TOTAL = {
    "received": 9, "accepted": 8, "completed": 7, "completion_rate": 0.875, "on_time": 5, "overtime": 2,
    "on_time_rate": 0.7143, "promised_speed_up": 0.6897, "actual_speed_up": 0.7356, "average_working_days": 3.29,
    "online": 6, "window": 2, "online_share": 0.75, "yellow": 2, "red": 2, "ratings": 4, "satisfied": 2,
    "satisfaction_rate": 0.5, "average_rating": 3.5, "rating_rate": 0.5714,
}
assert round(60 / 87, 4) == 0.6897 and round(64 / 87, 4) == 0.7356 and round(5 / 7, 4) == 0.7143
# Per department: 007 physician (A1 A2 A3 A4 A5), 003 building (B1 B2), 210102001 food (C1 C2), 001 enterprise (J),
# 002 public security (J1's branch: only its red alert).
BY_DEPARTMENT = {
    "210100007": {"received": 4, "accepted": 3, "completed": 3, "completion_rate": 1.0, "on_time": 2, "overtime": 1,
                  "on_time_rate": 0.6667, "promised_speed_up": 0.75, "actual_speed_up": 0.7667,
                  "average_working_days": 4.67, "online": 3, "window": 1, "online_share": 0.75, "yellow": 2,
                  "red": 1, "ratings": 2, "satisfied": 1, "satisfaction_rate": 0.5, "average_rating": 3.5,
                  "rating_rate": 0.6667},
    "210100003": {"received": 2, "accepted": 2, "completed": 2, "completion_rate": 1.0, "on_time": 1, "overtime": 1,
                  "on_time_rate": 0.5, "promised_speed_up": 0.5714, "actual_speed_up": 0.5,
                  "average_working_days": 3.5, "online": 0, "window": 1, "online_share": 0.0, "yellow": 0, "red": 0,
                  "ratings": 1, "satisfied": 1, "satisfaction_rate": 1.0, "average_rating": 4.0, "rating_rate": 0.5},
    "210102001": {"received": 2, "accepted": 2, "completed": 1, "completion_rate": 0.5, "on_time": 1, "overtime": 0,
                  "on_time_rate": 1.0, "promised_speed_up": 0.5, "actual_speed_up": 0.9,
                  "average_working_days": 1.0, "online": 2, "window": 0, "online_share": 1.0, "yellow": 0, "red": 0,
                  "ratings": 1, "satisfied": 0, "satisfaction_rate": 0.0, "average_rating": 3.0, "rating_rate": 1.0},
    "210100001": {"received": 1, "accepted": 1, "completed": 1, "completion_rate": 1.0, "on_time": 1, "overtime": 0,
                  "on_time_rate": 1.0, "promised_speed_up": 0.6667, "actual_speed_up": 0.6667,
                  "average_working_days": 1.0, "online": 1, "window": 0, "online_share": 1.0, "yellow": 0, "red": 0,
                  "ratings": 0, "satisfied": 0, "satisfaction_rate": None, "average_rating": None,
                  "rating_rate": 0.0},
    "210100002": {"received": 0, "accepted": 0, "completed": 0, "completion_rate": None, "on_time": 0, "overtime": 0,
                  "on_time_rate": None, "promised_speed_up": None, "actual_speed_up": None,
                  "average_working_days": None, "online": 0, "window": 0, "online_share": None, "yellow": 0,
                  "red": 1, "ratings": 0, "satisfied": 0, "satisfaction_rate": None, "average_rating": None,
                  "rating_rate": None},
}


def test_city_totals_match_the_hand_computed_figures(client: TestClient, officers: Officers, dataset: Any) -> None:
    response = get(client, officers, "/api/v1/supervision/metrics")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["period"] == {"from": "2030-06-01", "to": "2030-06-30"}
    assert body["scope"]["region"] == "210100"
    assert body["rows"] == []
    assert figures(body["total"], *CITY_TOTAL) == CITY_TOTAL


def test_grouped_by_department_each_row_matches(client: TestClient, officers: Officers, dataset: Any) -> None:
    body = get(client, officers, "/api/v1/supervision/metrics", group_by="department").json()
    rows = {row["key"]: figures(row, *CITY_TOTAL) for row in body["rows"]}
    assert rows == BY_DEPARTMENT
    names = {row["key"]: row["name"] for row in body["rows"]}
    assert names["210100007"] == "沈阳市卫生健康委员会"
    assert figures(body["total"], *CITY_TOTAL) == CITY_TOTAL


def test_filters_by_department_item_and_channel(client: TestClient, officers: Officers, engine: Engine,
                                                dataset: Any) -> None:
    by_department = get(client, officers, "/api/v1/supervision/metrics", department="210100007").json()["total"]
    assert figures(by_department, *CITY_TOTAL) == BY_DEPARTMENT["210100007"]
    physician = item_code(client, ITEMS["A"], engine)
    by_item = get(client, officers, "/api/v1/supervision/metrics", item=physician).json()["total"]
    assert figures(by_item, *CITY_TOTAL) == BY_DEPARTMENT["210100007"]
    # window: A2 (accepted, completed late, yellow + red, rated 2) and B1 (completed on time, rated 4)
    window = get(client, officers, "/api/v1/supervision/metrics", channel="window").json()["total"]
    assert figures(window, "received", "accepted", "completed", "on_time", "overtime", "on_time_rate", "yellow",
                   "red", "ratings", "satisfied", "average_working_days", "online_share") == {
        "received": 2, "accepted": 2, "completed": 2, "on_time": 1, "overtime": 1, "on_time_rate": 0.5,
        "yellow": 1, "red": 1, "ratings": 2, "satisfied": 1, "average_working_days": 4.5, "online_share": 0.0}
    # A county (和平区 210102): only the food cases
    county = get(client, officers, "/api/v1/supervision/metrics", region="210102").json()["total"]
    assert figures(county, *CITY_TOTAL) == BY_DEPARTMENT["210102001"]


def test_grouped_by_channel(client: TestClient, officers: Officers, dataset: Any) -> None:
    body = get(client, officers, "/api/v1/supervision/metrics", group_by="channel").json()
    rows = {row["key"]: (row["name"], row["received"], row["completed"], row["online"], row["window"])
            for row in body["rows"]}
    # online: A1 A3 A5 C1 C2 J received, A1 A4 C1 J completed; partner: B2
    assert rows == {"online": ("网上申请", 6, 4, 6, 0), "window": ("窗口收件", 2, 2, 0, 2),
                    "partner": ("合作平台报送", 1, 1, 0, 0)}


def test_province_rolls_regions_up_to_the_cities(client: TestClient, officers: Officers, dataset: Any) -> None:
    body = get(client, officers, "/api/v1/supervision/metrics", who=PROVINCE_SUPERVISOR, group_by="region").json()
    rows = {row["key"]: row for row in body["rows"]}
    assert set(rows) == {"210100", "210200"}  # 和平区's food cases roll up into 沈阳市
    assert rows["210100"]["name"] == "沈阳市"
    assert figures(rows["210100"], *CITY_TOTAL) == CITY_TOTAL
    # 大连 D1: received, accepted, completed on time in 2 of 30 working days (promised 5)
    assert figures(rows["210200"], "received", "accepted", "completed", "on_time_rate", "promised_speed_up",
                   "actual_speed_up", "online_share") == {
        "received": 1, "accepted": 1, "completed": 1, "on_time_rate": 1.0, "promised_speed_up": round(25 / 30, 4),
        "actual_speed_up": round(28 / 30, 4), "online_share": 1.0}
    assert body["total"]["received"] == 10 and body["total"]["completed"] == 8
    city = get(client, officers, "/api/v1/supervision/metrics", group_by="region").json()
    assert {row["key"]: row["received"] for row in city["rows"]} == {"210100": 7, "210102": 2}


def test_ranking_orders_by_on_time_rate_and_shows_speed_up_beside_it(client: TestClient, officers: Officers,
                                                                       dataset: Any) -> None:
    body = get(client, officers, "/api/v1/supervision/metrics/ranking").json()
    assert body["ranked_by"] == ["on_time_rate", "completion_rate", "actual_speed_up"]
    order = [(row["rank"], row["key"], row["on_time_rate"], row["completion_rate"], row["actual_speed_up"],
              row["promised_speed_up"]) for row in body["rows"]]
    assert order == [
        (1, "210100001", 1.0, 1.0, 0.6667, 0.6667),
        (2, "210102001", 1.0, 0.5, 0.9, 0.5),  # the best speed-up, but half its accepted cases still open
        (3, "210100007", 0.6667, 1.0, 0.7667, 0.75),
        (4, "210100003", 0.5, 1.0, 0.5, 0.5714),
        (None, "210100002", None, None, None, None),  # nothing completed: not ranked
    ]


def test_csv_export_holds_the_same_figures(client: TestClient, officers: Officers, dataset: Any) -> None:
    response = get(client, officers, "/api/v1/supervision/metrics", group_by="department", format="csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    text = response.content.decode("utf-8-sig")
    lines = list(csv.reader(io.StringIO(text)))
    header = lines[0]
    assert header[:6] == ["编码", "名称", "收件数", "受理数", "办结数", "办结率"]
    assert "按时办结率" in header and "实际提速率" in header and "满意率" in header
    rows = {line[0]: dict(zip(header, line, strict=True)) for line in lines[1:]}
    assert rows["210100007"]["办结数"] == "3" and rows["210100007"]["按时办结率"] == "0.6667"
    assert rows["210100002"]["办结率"] == ""  # no base: empty, not zero
    total = rows["total"]
    assert (total["收件数"], total["受理数"], total["办结数"], total["办结率"], total["超期办结数"],
            total["承诺提速率"], total["实际提速率"], total["平均办理工作日"], total["网上办理率"], total["红灯预警数"],
            total["平均评分"], total["评价率"]) == (
        "9", "8", "7", "0.875", "2", "0.6897", "0.7356", "3.29", "0.75", "2", "3.5", "0.5714")


def test_xlsx_export_opens_with_openpyxl_and_holds_the_same_figures(client: TestClient, officers: Officers,
                                                                     dataset: Any) -> None:
    response = get(client, officers, "/api/v1/supervision/metrics", group_by="department", format="xlsx")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    sheet = load_workbook(io.BytesIO(response.content)).active
    assert sheet is not None
    values = list(sheet.iter_rows(values_only=True))
    header = list(values[0])
    keys = ["key", "name", *CITY_TOTAL]
    assert len(header) == len(keys)
    rows = {line[0]: dict(zip(keys, line, strict=True)) for line in values[1:]}
    assert figures(rows["total"], *CITY_TOTAL) == CITY_TOTAL
    for key, expected in BY_DEPARTMENT.items():
        assert figures(rows[key], *CITY_TOTAL) == expected
    rate = header.index("按时办结率") + 1
    assert sheet.cell(row=2, column=rate).number_format == "0.00%"


def test_ranking_exports_with_ranks(client: TestClient, officers: Officers, dataset: Any) -> None:
    response = get(client, officers, "/api/v1/supervision/metrics/ranking", format="xlsx")
    sheet = load_workbook(io.BytesIO(response.content)).active
    assert sheet is not None
    values = list(sheet.iter_rows(values_only=True))
    assert values[0][:4] == ("名次", "编码", "名称", "收件数")
    assert [(line[0], line[1]) for line in values[1:]] == [
        (1, "210100001"), (2, "210102001"), (3, "210100007"), (4, "210100003"), (None, "210100002")]
    text = get(client, officers, "/api/v1/supervision/metrics/ranking", format="csv").content.decode("utf-8-sig")
    assert [line[:2] for line in csv.reader(io.StringIO(text))][1:3] == [["1", "210100001"], ["2", "210102001"]]


def test_scope_is_the_supervisors_region_and_below(client: TestClient, officers: Officers, dataset: Any) -> None:
    for params in ({"region": "210200"}, {"region": "210000"}, {"department": "210200004"}):
        response = get(client, officers, "/api/v1/supervision/metrics", **params)
        assert response.status_code == 403, params
        assert response.headers["content-type"] == "application/problem+json"
    assert get(client, officers, "/api/v1/supervision/metrics", who="sy_wj_intake").status_code == 403
    assert client.get("/api/v1/supervision/metrics", params=JUNE).status_code == 401
    assert get(client, officers, "/api/v1/supervision/metrics", region="219999").status_code == 404
    assert get(client, officers, "/api/v1/supervision/metrics", who=PROVINCE_SUPERVISOR,
               region="210200").status_code == 200


@pytest.mark.parametrize(("params", "field", "rule"), [
    ({"from": "2030-07-01", "to": "2030-06-30"}, "to", "not_before_from"),
    ({"from": "2026-01-01", "to": "2030-06-30"}, "to", "period_at_most_3_years"),
    ({"from": "2030-13-01"}, "from", None),
    ({"to": "yesterday"}, "to", None),
    ({"group_by": "officer"}, "group_by", None),
    ({"format": "pdf"}, "format", None),
    ({"channel": "fax"}, "channel", None),
    ({"region": "21"}, "region", None),
])
def test_bad_parameters_are_422_naming_the_field(client: TestClient, officers: Officers, params: dict[str, str],
                                                 field: str, rule: str | None) -> None:
    response = client.get("/api/v1/supervision/metrics", params={**JUNE, **params},
                          headers=officers.headers(CITY_SUPERVISOR))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == [field]
    if rule is not None:
        assert errors[0]["rule"] == rule


def test_default_period_is_this_month(client: TestClient, officers: Officers) -> None:
    response = client.get("/api/v1/supervision/metrics", headers=officers.headers(CITY_SUPERVISOR))
    assert response.status_code == 200
    assert response.json()["period"] == {"from": "2026-03-01", "to": "2026-03-11"}  # the tests' clock: 2026-03-11


def test_cases_completed_through_the_write_path_count_with_their_recorded_clock(
        client: TestClient, clock: FixedClock) -> None:
    """End to end: the on-time flag and working days the clock records when it stops (hub/cases/clock.py) are
    what the metrics count — one case decided in 2 working days (promise 5: on time), one in 7 (overtime)."""
    physician = "physician-practice-registration"
    march = {"from": "2026-03-01", "to": "2026-04-30", "department": "210100007"}

    def totals() -> dict[str, Any]:
        response = client.get("/api/v1/supervision/metrics", params=march,
                              headers=Officers(client).headers(CITY_SUPERVISOR))
        assert response.status_code == 200, response.text
        return dict(response.json()["total"])

    def run(number: str, *actions: str) -> None:
        staff = Officers(client)  # signed in again: the clock may have moved past the last token's expiry
        roles = {"accept": "intake", "review": "reviewer", "grant": "approver", "complete": "approver"}
        for action in actions:
            role = roles[action]
            response = client.post(f"/api/v1/cases/{number}/actions", json={"action": action, "opinion": "同意"},
                                   headers=staff.headers(officer_of(physician, role)))
            assert response.status_code == 200, response.text

    before = totals()
    quick, slow = submit(client, physician)["tracking_no"], submit(client, physician)["tracking_no"]
    run(quick, "accept")
    run(slow, "accept")  # both accepted Wednesday 2026-03-11
    clock.advance(days=2)  # Friday 03-13: 2 working days used
    run(quick, "review", "grant", "complete")
    clock.advance(days=7)  # Friday 03-20: 7 working days used, 2 more than promised
    run(slow, "review", "grant", "complete")
    after = totals()
    delta = {name: after[name] - before[name] for name in ("received", "accepted", "completed", "on_time", "overtime")}
    assert delta == {"received": 2, "accepted": 2, "completed": 2, "on_time": 1, "overtime": 1}
