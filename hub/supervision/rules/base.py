"""What every procedure and anomaly rule is: a small named unit with its basis and parameters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, ClassVar, Literal, Protocol

if TYPE_CHECKING:
    from hub.supervision.findings import Finding
    from hub.supervision.rules.facts import CaseFacts

LAW = "《中华人民共和国行政许可法》"
DECISIONS = ("grant", "deny")
REFUSALS = ("refuse_intake", "deny")
ACCEPT = "accept"
COMPLETE = "complete"
WITHDRAW = "withdraw"


class Rule(Protocol):
    """``name`` (kind.what), ``kind``, ``description`` (what it finds), ``basis`` (the article or the
    administrative practice it enforces); parameters are the dataclass fields, each with its default;
    ``evaluate`` yields the findings — pure, over ``CaseFacts``."""

    name: ClassVar[str]
    kind: ClassVar[Literal["procedure", "anomaly"]]
    description: ClassVar[str]
    basis: ClassVar[str]

    def evaluate(self, facts: CaseFacts) -> Iterable[Finding]: ...


def label(facts: CaseFacts, action: str) -> str:
    """The action's Chinese label in the case's definition, else its name."""
    return facts.definition.action_label(action)
