"""An outbox row built as plain values (``message_row``, a batch of partner records) is the row of the message
object ``message`` builds (``row``): the same columns in the same order, the same values but the new message id."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from hub.outbox.service import message, message_row, row


def test_a_message_row_is_the_row_of_the_message_object_but_its_new_id() -> None:
    values = {"event_type": "case.reported.v1", "region_code": "210100", "payload": {"tracking_no": "X", "n": 1},
              "occurred_at": datetime(2026, 12, 1, 3, 0, tzinfo=UTC), "correlation_id": "X"}
    plain, from_object = message_row(**values), row(message(**values))
    assert list(plain) == list(from_object)
    assert isinstance(plain["message_id"], uuid.UUID) and plain["message_id"] != from_object["message_id"]
    assert {**plain, "message_id": None} == {**from_object, "message_id": None}
    assert message_row(**{**values, "correlation_id": None})["correlation_id"] is None
