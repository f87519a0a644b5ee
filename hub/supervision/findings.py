"""What a supervision rule reports about a case: a finding, raised as an alert once per (case, rule, level)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["time", "procedure", "anomaly"]
Level = Literal["yellow", "red"]
KINDS: tuple[Kind, ...] = ("time", "procedure", "anomaly")
LEVELS: tuple[Level, ...] = ("yellow", "red")


@dataclass(frozen=True)
class Finding:
    """One rule's finding on one case. ``rule`` is the rule's name ("time.case_overdue",
    "procedure.skipped_step", "anomaly.too_fast"); ``message`` is the Chinese text the department reads;
    ``detail`` the facts behind it (event seqs, dates, figures — never personal data)."""

    rule: str
    kind: Kind
    level: Level
    message: str
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown finding kind {self.kind!r}")
        if self.level not in LEVELS:
            raise ValueError(f"unknown finding level {self.level!r}")
        if not self.rule or len(self.rule) > 64:
            raise ValueError("a finding's rule is a name of 1 to 64 characters")
