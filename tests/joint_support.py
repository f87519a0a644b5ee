"""A joint case (enterprise establishment, Administrative Licensing Law Art. 26) opened over HTTP, for the
tests of what each audience sees of it: submitted, accepted by the lead department's intake officer, one
branch case per department."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from tests.support import person, submit

JOINT_KEY = "enterprise-establishment"
LEAD_INTAKE = "sy_scjg_intake"  # 沈阳市市场监督管理局 (210100-001), the lead department
BRANCH_DEPARTMENTS = {"registration": "210100001", "seal_engraving": "210100002", "tax_invoice": "210100011",
                      "social_insurance": "210100009"}
# One intake officer per branch department (pre-review is intake's or the reviewer's).
BRANCH_INTAKE = {"registration": "sy_scjg_intake", "seal_engraving": "sy_ga_intake", "tax_invoice": "sy_sw_intake",
                 "social_insurance": "sy_rs_intake"}


@dataclass(frozen=True)
class JointCase:
    receipt: dict[str, Any]
    branches: dict[str, str]  # branch name → the branch case's tracking number

    @property
    def number(self) -> str:
        return str(self.receipt["tracking_no"])

    @property
    def query_code(self) -> str:
        return str(self.receipt["query_code"])


def open_joint_case(client: TestClient, officers: Any, *, name: str = "张三丰") -> JointCase:
    receipt = submit(client, JOINT_KEY, applicant=person(name=name))
    number = receipt["tracking_no"]
    headers = officers.headers(LEAD_INTAKE)
    response = client.post(f"/api/v1/cases/{number}/actions", json={"action": "accept"}, headers=headers)
    assert response.status_code == 200, response.text
    parent = client.get(f"/api/v1/cases/{number}", headers=headers).json()
    return JointCase(receipt, {line["branch"]: line["tracking_no"] for line in parent["branches"]})
