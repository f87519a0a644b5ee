"""What the published exchange specification fixes: exchanges, expected outcomes, the standard flow; and
the simulator's errors."""

from __future__ import annotations

from datetime import timedelta, timezone

INBOUND_EXCHANGE = "hub.inbound"
EVENTS_EXCHANGE = "hub.events"
DEFAULT_SECRET = "demo-Partner-1"
CHINA = timezone(timedelta(hours=8))

# What a message is expected to become at the hub.
APPLY = "apply"
DEAD = "dead"

VALID_KINDS = ("new_case", "record_update", "event", "out_of_order")
FAULT_KINDS = ("schema", "wrong_region", "duplicate", "out_of_order", "bad_json", "unknown_item", "identifier")
# The reason the hub gives (dead letters carry "<reason>: <detail>").
FAULT_REASONS = {"schema": "schema", "wrong_region": "wrong_region", "bad_json": "bad_json",
                 "unknown_item": "unknown_item", "identifier": "identifier"}

# The standard flow, as published in the exchange specification: (state, action) -> new state.
TRANSITIONS: dict[tuple[str | None, str], str] = {
    (None, "submit"): "submitted",
    ("submitted", "accept"): "under_review",
    ("submitted", "refuse_intake"): "intake_refused",
    ("submitted", "request_supplement"): "awaiting_supplement",
    ("awaiting_supplement", "supplement"): "submitted",
    ("under_review", "request_supplement"): "review_supplement",
    ("review_supplement", "supplement"): "under_review",
    ("under_review", "review"): "pending_decision",
    ("pending_decision", "grant"): "granted",
    ("pending_decision", "deny"): "denied",
    ("granted", "complete"): "completed",
    ("denied", "complete"): "completed",
    **{(state, "withdraw"): "withdrawn" for state in
       ("submitted", "awaiting_supplement", "under_review", "review_supplement", "pending_decision")},
}
# How cases go, and how often (weights).
PATHS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (60, ("submit", "accept", "review", "grant", "complete")),
    (8, ("submit", "accept", "review", "deny", "complete")),
    (10, ("submit", "request_supplement", "supplement", "accept", "review", "grant", "complete")),
    (8, ("submit", "accept", "request_supplement", "supplement", "review", "grant", "complete")),
    (5, ("submit", "refuse_intake")),
    (5, ("submit", "accept", "withdraw")),
    (4, ("submit", "withdraw")),
)
OUTCOMES = {"grant": "granted", "deny": "denied", "refuse_intake": "intake_refused", "withdraw": "withdrawn"}


class SimulatorError(Exception):
    """The simulator cannot go on (broker refused, nothing bound, out of time)."""


class BrokerRefused(SimulatorError):
    """The broker closed the channel: 403 (permissions), 406 (user_id), 404 (no exchange)."""

    def __init__(self, reply_code: int, reply_text: str) -> None:
        super().__init__(f"broker refused the message: {reply_code} {reply_text}")
        self.reply_code = reply_code
        self.reply_text = reply_text
