"""`hub demo`: one complete case through the HTTP API of a running hub, printed as a timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from hub.clock import CHINA_TZ
from hub.seed.service import demo_accounts

DEMO_ITEM = "physician-practice-registration"
STEPS = [
    ("intake", "accept", "材料齐全，符合法定形式，予以受理"),
    ("reviewer", "review", "申请人具备执业医师资格，体检合格，审核通过"),
    ("approver", "grant", "准予医师执业注册"),
    ("intake", "complete", "已制发《医师执业证书》，办结"),
]
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


class DemoError(Exception):
    pass


def run_demo(base_url: str, console: Console) -> int:
    try:
        with httpx.Client(base_url=base_url, timeout=10.0) as client:
            _run(client, console)
    except httpx.TransportError as exc:
        console.print(f"[red]cannot reach the hub at {base_url}[/]: {exc}. Start it with `hub up`.")
        return 1
    except DemoError as exc:
        console.print(f"[red]demo failed:[/] {exc}")
        return 1
    return 0


def _run(client: httpx.Client, console: Console) -> None:
    item = _find_item(client)
    console.print(f"事项 [bold]{item['name']}[/] {item['code']} — {item['department']['name']}")
    receipt = _submit(client, item)
    number, code = receipt["tracking_no"], receipt["query_code"]
    console.print(f"提交成功：办件编号 [bold]{number}[/]，查询码 [bold]{code}[/]")
    replaced = [m["name"] for m in receipt["materials"] if m.get("replaced_by_registry")]
    console.print(f"申请人核验：{receipt.get('verification', 'none')}"
                  + (f"；经信息库核验免交材料：{'、'.join(replaced)}" if replaced else ""))
    _upload_materials(client, receipt)
    department = item["department"]
    for role, action, opinion in STEPS:
        username = _officer(department["region"], department["code"], role)
        result = _expect(client.post(
            f"/api/v1/cases/{number}/actions", json={"action": action, "opinion": opinion},
            headers=_login(client, username),
        ), 200)
        console.print(f"  {username:<24} {action:<10} → {result['state_label']}")
    status = _expect(client.get(f"/api/v1/applications/{number}", headers={"X-Query-Code": code}), 200)
    console.print(_timeline(status))
    public = _expect(client.get(f"/api/v1/transparency/cases/{number}"), 200)
    console.print(
        f"公示：申请人 {public['applicant_name']}，证件 {public['applicant_id_number']}，"
        f"结果 {public['result']}，承诺期限 {public['deadline']}"
    )


def _find_item(client: httpx.Client) -> dict[str, Any]:
    page = _expect(client.get("/api/v1/items", params={"q": DEMO_ITEM}), 200)
    for item in page["items"]:
        if item["key"] == DEMO_ITEM:
            return dict(item)
    raise DemoError(f"item {DEMO_ITEM} is not in the catalogue; was the hub seeded (`hub up`)?")


def _submit(client: httpx.Client, item: dict[str, Any]) -> dict[str, Any]:
    schema = _expect(client.get(f"/api/v1/items/{item['code']}/form-schema"), 200)
    applicant = {"type": "1", **_identity(), "phone": "13812345678", "region": "210102"}
    return _expect(client.post("/api/v1/applications", json={
        "item_code": item["code"], "applicant": applicant, "form": schema["examples"][0],
    }), 201)


def _identity() -> dict[str, str]:
    """The mocks' well-known living person: verified at submission when the hub uses the mock registries
    (`hub up`), unchecked (`not_configured`) when it has none. The anonymous prefill cannot tell which
    (it confirms nothing about a person), and need not."""
    from mocks.registries.seed import build_seed

    known = build_seed().normal_person
    return {"name": known.name, "id_type": "citizen_id", "id_number": known.id_number}


def _upload_materials(client: httpx.Client, receipt: dict[str, Any]) -> None:
    for material in receipt["materials"]:
        if material["required"] and not material.get("replaced_by_registry"):
            _expect(client.post(
                f"/api/v1/applications/{receipt['tracking_no']}/materials",
                data={"key": material["key"]},
                files={"file": (f"{material['key']}.pdf", PDF, "application/pdf")},
                headers={"X-Query-Code": receipt["query_code"]},
            ), 201)


def _officer(region: str, department: str, role: str) -> str:
    for account in demo_accounts():
        if (account["region"], account["department"]) == (region, department) and role in account["roles"]:
            return str(account["username"])
    raise DemoError(f"no demo {role} officer for department {region}-{department}")


def _login(client: httpx.Client, username: str) -> dict[str, str]:
    password = next(a["password"] for a in demo_accounts() if a["username"] == username)
    token = _expect(client.post("/api/v1/auth/token", data={"username": username, "password": password}), 200)
    return {"Authorization": f"Bearer {token['access_token']}"}


def _timeline(status: dict[str, Any]) -> Table:
    table = Table(title=f"办件 {status['tracking_no']} — {status['item_name']}（{status['state_label']}）")
    for column in ("#", "时间", "环节", "状态", "部门", "经办", "意见"):
        table.add_column(column)
    for step in status["steps"]:
        at = datetime.fromisoformat(step["at"]).astimezone(CHINA_TZ)
        table.add_row(str(step["seq"]), f"{at:%Y-%m-%d %H:%M:%S}", step["label"],
                      step["state_label"], step["department"] or "", step["actor"], step["opinion"] or "")
    return table


def _expect(response: httpx.Response, status: int) -> Any:
    if response.status_code != status:
        raise DemoError(f"{response.request.method} {response.request.url.path} answered "
                        f"{response.status_code}: {response.text[:500]}")
    return response.json()
