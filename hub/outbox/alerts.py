"""Cases withheld from an outgoing document: reported, counted and alerted, never a failed response.

Input is normalised at every entrance (hub/text.py), but rows stored before that rule, or written by
hand, may still hold text that XML 1.0 cannot carry (U+0001, U+FFFE, ...). Every outgoing SOAP/XML
document checks each case on its own first; a case that cannot go out is left out of that document
and reported here, so one case never fails the answer about all the others:

* logged with the tracking number, the field and the rule, never the value (it is personal data);
* counted in ``hub_outbound_cases_withheld_total{channel,rule}`` (Prometheus, at /metrics);
* alerted once per case and channel with an ``alert.case_withheld.v1`` event on ``hub.events``
  (through the outbox, in the caller's transaction) so operators correct the case.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from prometheus_client import Counter
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.cases.models import Case
from hub.outbox import service as outbox
from hub.outbox.models import OutboxMessage
from hub.text import xml_safe

ALERT_TYPE = "alert.case_withheld.v1"
WITHHELD = Counter("hub_outbound_cases_withheld_total",
                   "Cases left out of an outgoing SOAP/XML document because they cannot be serialised",
                   ["channel", "rule"])
log = logging.getLogger("hub.outbound")
# By rule (alert-event.v1.json): what the department reads, then English.
WITHHELD_MESSAGES = {
    "xml_characters": "办件含有无法在XML中传输的字符，已暂停对外发送，请更正 (the case holds text XML cannot carry; "
                      "it is left out of this channel until corrected)",
    "schema": "办件字段不符合接口规范，已暂停对外发送，请更正 (a field of the case does not fit the channel's "
              "contract; the case is left out of this channel until corrected)",
}


@dataclass(frozen=True)
class Unserialisable:
    """Why a case cannot go out: the field (a path like ``applicant.name``) and the rule it breaks."""

    field: str
    rule: str

    def describe(self) -> str:
        return f"field {self.field}: rule {self.rule}"


def first_unsafe_text(value: Any, path: str = "") -> Unserialisable | None:
    """The first string in ``value`` (mappings, lists, dataclasses) that XML 1.0 cannot hold."""
    if isinstance(value, str):
        return None if xml_safe(value) else Unserialisable(path or "(value)", "xml_characters")
    if isinstance(value, datetime | date | int | float | bool) or value is None:
        return None
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = first_unsafe_text(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = first_unsafe_text(item, f"{path}.{index}" if path else str(index))
            if found is not None:
                return found
    return None


def report_withheld(session: Session, case: Case, *, channel: str, problem: Unserialisable, now: datetime) -> None:
    """Log, count and (once per case and channel) alert that ``case`` was left out of ``channel``."""
    WITHHELD.labels(channel=channel, rule=problem.rule).inc()
    log.warning("case %s withheld from %s: %s", case.tracking_no, channel, problem.describe(),
                extra={"tracking_no": case.tracking_no, "action": channel, "status": "withheld"})
    if _alerted(session, case, channel):
        return
    outbox.enqueue(
        session, event_type=ALERT_TYPE, region_code=case.region_code, occurred_at=now,
        correlation_id=case.tracking_no,
        payload={
            "tracking_no": case.tracking_no, "region": case.region_code, "department": case.department.key,
            "channel": channel, "field": problem.field, "rule": problem.rule,
            "message": WITHHELD_MESSAGES[problem.rule],
        },
    )


def _alerted(session: Session, case: Case, channel: str) -> bool:
    earlier = session.scalars(select(OutboxMessage.payload).where(
        OutboxMessage.type == ALERT_TYPE, OutboxMessage.correlation_id == case.tracking_no))
    return any(payload.get("channel") == channel for payload in earlier)
