"""Cases as the city platform runs them, and what the hub should hold for each afterwards."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from mocks.city_data import (
    OPINIONS,
    SPECIAL_PROCEDURES,
    CatalogueItem,
)
from mocks.city_platform.spec import CHINA, OUTCOMES, TRANSITIONS


@dataclass
class ExpectedCase:
    """What the hub should hold for one case after the run."""

    external_id: str
    item_code: str
    region: str
    seq: int  # steps the hub should have
    state: str
    record_version: int  # the highest record_version sent


@dataclass
class SimulatedCase:
    external_id: str
    item: CatalogueItem
    applicant: dict[str, Any]
    submitted_at: datetime
    path: tuple[str, ...]
    window: str
    clerks: tuple[str, str]
    steps: list[dict[str, Any]] = field(default_factory=list)
    version: int = 0
    special: list[dict[str, Any]] = field(default_factory=list)
    certificate: str = ""
    satisfaction: int = 5

    @property
    def state(self) -> str | None:
        return self.steps[-1]["to_state"] if self.steps else None

    @property
    def remaining(self) -> int:
        return len(self.path) - len(self.steps)

    def add_step(self, rng: random.Random, now: datetime) -> dict[str, Any]:
        action = self.path[len(self.steps)]
        if self.steps:
            at = min(datetime.fromisoformat(self.steps[-1]["at"]) + timedelta(minutes=rng.randint(20, 2 * 24 * 60)),
                     now)
        else:
            at = self.submitted_at
        if action == "submit":
            officer = self.window  # the window (or online hall) that took the application in
        elif action in ("supplement", "withdraw"):
            officer = "申请人"  # the applicant's own step
        else:
            officer = rng.choice(self.clerks)
        step = {
            "seq": len(self.steps) + 1, "action": action, "to_state": TRANSITIONS[(self.state, action)],
            "at": at.astimezone(CHINA).isoformat(timespec="seconds"), "officer": officer,
            "opinion": rng.choice(OPINIONS[action]),
        }
        self.steps.append(step)
        if action == "review" and rng.random() < 0.1:
            start = at.date()
            kind, reason = rng.choice(SPECIAL_PROCEDURES)
            self.special.append({"kind": kind, "reason": reason, "start": start.isoformat(),
                                 "end": (start + timedelta(days=rng.randint(1, 10))).isoformat(), "result": "通过"})
        return step

    def record(self) -> dict[str, Any]:
        self.version += 1
        record: dict[str, Any] = {
            "external_id": self.external_id, "record_version": self.version, "item_code": self.item.code,
            "region": self.item.region, "applicant": self.applicant,
            "submitted_at": self.submitted_at.astimezone(CHINA).isoformat(timespec="seconds"),
            "state": self.state, "steps": [dict(s) for s in self.steps],
        }
        accepted = next((s for s in self.steps if s["action"] == "accept"), None)
        if accepted:
            record["accepted_at"] = accepted["at"]
            if self.item.promised_limit_days >= 10:  # long items: the platform promises a calendar date
                day = datetime.fromisoformat(accepted["at"]).date() + timedelta(
                    days=self.item.promised_limit_days * 7 // 5 + 2)
                record["promised_completion_date"] = day.isoformat()
        if self.special:
            record["special_procedures"] = [dict(p) for p in self.special]
        decision = next((s for s in reversed(self.steps) if s["action"] in OUTCOMES), None)
        if decision:
            result: dict[str, Any] = {"at": decision["at"], "outcome": OUTCOMES[decision["action"]]}
            if decision["action"] == "grant":
                result["certificate_name"] = f"{self.item.name}准予许可决定书"[:128]
                result["certificate_number"] = self.certificate
            if self.state == "completed":
                result["satisfaction"] = self.satisfaction
            record["result"] = result
        return record


@dataclass
class Planned:
    """One message of the run, with what the hub is expected to make of it."""

    category: str
    message_id: str
    record_type: str  # case-record | case-event
    body: bytes
    expect: str  # APPLY | DEAD
    reason: str | None = None  # for DEAD: the hub's reason
    external_id: str | None = None

    @property
    def type(self) -> str:
        return f"{self.record_type}.v1"
