"""Procedure and anomaly rules of electronic supervision (电子监察): each a small named unit over ``CaseFacts``.

``RULES`` lists them (documented in docs/supervision.md, "Procedure and anomaly rules"); ``evaluate`` runs
them over one case. The real-time hook (hub/supervision/realtime.py) runs them on every new event in the
unit of work that records it; the time-limit rules are the scanner's (hub/supervision/scanner.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hub.supervision.findings import Finding
from hub.supervision.rules import anomaly, procedure
from hub.supervision.rules.base import Rule
from hub.supervision.rules.facts import CaseFacts, FeeFacts, Lookups, NoLookups, Step, Withdrawal

__all__ = ["RULES", "CaseFacts", "FeeFacts", "Lookups", "NoLookups", "Rule", "Step", "Withdrawal", "evaluate"]

RULES: tuple[Rule, ...] = (*procedure.RULES, *anomaly.RULES)


def evaluate(facts: CaseFacts, rules: Iterable[Rule] = RULES) -> list[Finding]:
    """Every finding of ``rules`` on the case."""
    return [finding for rule in rules for finding in rule.evaluate(facts)]


def rule_names(rules: Sequence[Rule] = RULES) -> list[str]:
    return [rule.name for rule in rules]
