"""What a run sent, by category, and what the hub should make of it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from mocks.city_platform.cases import ExpectedCase


@dataclass
class SimulationReport:
    """What was sent and what the hub should make of it; the hub events received."""

    partner: str
    region: str
    run_id: str
    external_id_prefix: str
    sent: Counter[str] = field(default_factory=Counter)  # by category, confirmed by the broker
    published: int = 0  # basic.publish calls, including re-sends after a lost confirm
    republished: int = 0
    reconnects: int = 0
    expected_apply: set[str] = field(default_factory=set)  # message ids the hub applies (inbox)
    expected_dead: dict[str, str] = field(default_factory=dict)  # message id -> reason
    cases: dict[str, ExpectedCase] = field(default_factory=dict)
    events_received: Counter[str] = field(default_factory=Counter)  # hub events by type (distinct ids)
    event_message_ids: set[str] = field(default_factory=set)
    event_deliveries: int = 0
    started_at: float = 0.0
    finished_at: float = 0.0

    @property
    def expected_cases(self) -> int:
        return len(self.cases)

    @property
    def expected_events(self) -> int:
        return sum(c.seq for c in self.cases.values())

    @property
    def total_sent(self) -> int:
        return sum(self.sent.values())

    @property
    def publish_rate(self) -> float:
        elapsed = self.finished_at - self.started_at
        return self.total_sent / elapsed if elapsed > 0 else 0.0

    def dead_by_reason(self) -> Counter[str]:
        return Counter(self.expected_dead.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "partner": self.partner, "region": self.region, "run_id": self.run_id,
            "external_id_prefix": self.external_id_prefix, "sent": dict(self.sent), "total_sent": self.total_sent,
            "published": self.published, "republished": self.republished, "reconnects": self.reconnects,
            "publish_rate_per_s": round(self.publish_rate, 1),
            "expected": {"applied_messages": len(self.expected_apply), "dead_letters": len(self.expected_dead),
                         "dead_by_reason": dict(self.dead_by_reason()), "cases": self.expected_cases,
                         "case_events": self.expected_events},
            "hub_events": {"distinct": len(self.event_message_ids), "deliveries": self.event_deliveries,
                           "by_type": dict(self.events_received)},
        }

    def summary(self) -> str:
        d = self.to_dict()
        lines = [f"city platform {self.partner} ({self.region}), run {self.run_id}: {self.total_sent} messages "
                 f"confirmed in {self.finished_at - self.started_at:.1f} s ({d['publish_rate_per_s']}/s), "
                 f"{self.republished} re-sent after {self.reconnects} reconnect(s)",
                 "  sent:      " + ", ".join(f"{k}={v}" for k, v in sorted(self.sent.items())),
                 f"  expected:  {self.expected_cases} cases, {self.expected_events} case events, "
                 f"{len(self.expected_apply)} messages applied, {len(self.expected_dead)} dead letters "
                 f"({', '.join(f'{k}={v}' for k, v in sorted(self.dead_by_reason().items())) or 'none'})",
                 f"  hub events: {len(self.event_message_ids)} distinct in {self.event_deliveries} deliveries "
                 f"({', '.join(f'{k}={v}' for k, v in sorted(self.events_received.items())) or 'none'})"]
        return "\n".join(lines)
