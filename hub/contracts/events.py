"""Every event the hub publishes on ``hub.events``: its type, routing key and payload schema.

Built from the constants the publishing code itself uses (the case actions' event names, the supervision
alerts, the ratings, the audit checkpoints), so a new case action is documented the moment it exists. A test
(tests/contracts/test_event_schemas.py) creates real events through the services and checks each one against
this list and its schema, so the list cannot drift from what is really published.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.audit.checkpoints import EVENT_TYPE as AUDIT_CHECKPOINT
from hub.cases.service import EVENT_NAMES
from hub.exchange.feedback import EVENT_TYPE as PARTNER_REJECTED
from hub.exchange.feedback import routing_key_for as rejection_routing_key
from hub.outbox.alerts import ALERT_TYPE as CASE_WITHHELD
from hub.payments.service import EVENT_STATES as PAYMENT_EVENT_STATES
from hub.payments.service import event_type as payment_event_type
from hub.supervision.ratings import RECEIVED as RATING_RECEIVED
from hub.supervision.service import CLOSED as ALERT_CLOSED
from hub.supervision.service import ESCALATED as ALERT_ESCALATED
from hub.supervision.service import RAISED as ALERT_RAISED

# Written by hub/catalog/service.py (item created / updated).
CATALOGUE_EVENTS = ("catalog.item_created.v1", "catalog.item_updated.v1")
# Case events published beside the actions' own: a partner's record applied, a cross-region registration.
CASE_EVENTS_BESIDE_ACTIONS = ("reported", "forwarded")
# The rejection of a partner's message travels on that partner's own routing key (hub/exchange/feedback.py).
PARTNER_REJECTED_KEY = rejection_routing_key("{partner}")


@dataclass(frozen=True)
class PublishedEvent:
    event_type: str  # the AMQP ``type`` property, e.g. "case.accepted.v1"
    routing_key: str  # the routing key on hub.events; "{partner}" stands for a partner's code
    schema: str  # the payload's schema, a path below /schemas/ with an optional "#fragment"
    summary: str

    @property
    def envelope_type(self) -> str:
        """The envelope's ``type`` (its ``version`` is the number after ".v")."""
        return self.event_type.rpartition(".v")[0]

    @property
    def version(self) -> int:
        return int(self.event_type.rpartition(".v")[2])

    def matches(self, routing_key: str) -> bool:
        if "{partner}" not in self.routing_key:
            return routing_key == self.routing_key
        head, _, tail = self.routing_key.partition("{partner}")
        middle = routing_key.removeprefix(head).removesuffix(tail)
        return (routing_key.startswith(head) and routing_key.endswith(tail) and bool(middle)
                and "." not in middle and len(routing_key) == len(head) + len(middle) + len(tail))


def _case_events() -> list[PublishedEvent]:
    names = sorted(set(EVENT_NAMES.values()) | set(CASE_EVENTS_BESIDE_ACTIONS))
    summaries = {
        "reported": "a partner platform's record or step was applied (payload adds origin_partner and the "
                    "partner's external_id and record_version)",
        "forwarded": "a window of another region registered the application (跨域通办), beside case.submitted.v1",
        "deadline_recomputed": "a holiday notice moved the case's deadlines (payload adds old and new)",
    }
    return [PublishedEvent(f"case.{name}.v1", f"case.{name}.v1", "case-notification.v1.json",
                           summaries.get(name, f"a case step: {name.replace('_', ' ')}"))
            for name in names]


def published_events() -> list[PublishedEvent]:
    """Every event type the hub publishes, in a stable order."""
    alerts = [
        PublishedEvent(ALERT_RAISED, ALERT_RAISED, "alert-event.v1.json#/$defs/supervision_alert",
                       "electronic supervision raised an alert on a case"),
        PublishedEvent(ALERT_CLOSED, ALERT_CLOSED, "alert-event.v1.json#/$defs/supervision_alert",
                       "an alert's cause ended (payload adds reason)"),
        PublishedEvent(ALERT_ESCALATED, ALERT_ESCALATED, "alert-event.v1.json#/$defs/supervision_alert",
                       "a red alert left unresolved went one region level up (adds from_region, to_region)"),
        PublishedEvent(CASE_WITHHELD, CASE_WITHHELD, "alert-event.v1.json#/$defs/case_withheld",
                       "a case was left out of an outgoing SOAP/XML document (text XML cannot carry)"),
    ]
    catalogue = [PublishedEvent(t, t, "catalogue-event.v1.json", "an item of the catalogue was "
                                + ("created" if "created" in t else "changed")) for t in CATALOGUE_EVENTS]
    others = [
        PublishedEvent(RATING_RECEIVED, RATING_RECEIVED, "rating-event.v1.json",
                       "an applicant or a partner's record rated a completed case (好差评)"),
        PublishedEvent(AUDIT_CHECKPOINT, AUDIT_CHECKPOINT, "audit-checkpoint.v1.json",
                       "a checkpoint of every case's audit chain head: keep every one"),
        PublishedEvent(PARTNER_REJECTED, PARTNER_REJECTED_KEY, "partner-rejection.v1.json",
                       "one of this partner's messages was rejected or dead-lettered: why, by field and rule"),
    ]
    return [*_case_events(), *alerts, *catalogue, *others, *_payment_events()]


def _payment_events() -> list[PublishedEvent]:
    """``payment.<event>.v1`` (hub/payments/service.py ``transition``): a fee payment order changed state."""
    summaries = {"created": "a payment order was created for a case's fee",
                 "paid": "a gateway's verified word (notification, query, statement): the fee was paid",
                 "failed": "the gateway refused the payment for good", "closed": "the order closed unpaid",
                 "refunding": "a refund of the order was requested", "refunded": "a refund completed"}
    order = ("created", "paid", "failed", "closed", "refunding", "refunded")
    assert set(order) == PAYMENT_EVENT_STATES
    return [PublishedEvent(payment_event_type(state), payment_event_type(state), "payment-event.v1.json",
                           summaries[state]) for state in order]


def event_for_routing_key(routing_key: str) -> PublishedEvent | None:
    return next((event for event in published_events() if event.matches(routing_key)), None)
