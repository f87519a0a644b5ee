"""A partner platform's record may carry the case's payment status (issue 12, item 7): stored as reported in
``case_fees`` (source partner), shown on the case and the fee view, read by electronic supervision — a granted
case completed with the fee reported unpaid raises ``procedure.fee_unpaid_at_completion``."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.amqp.messages import Outcome
from hub.cases.models import Case
from hub.payments.models import CaseFee
from hub.supervision.models import Alert
from tests.support import (
    PARTNER_SECRET,
    case_record,
    envelope,
    inbound_message,
    item_code,
    officer_of,
    sent_statements,
)

ID_CARD = "id-card-renewal"  # 沈阳市和平区公安分局 (210102 002): 2000 fen
RULE = "procedure.fee_unpaid_at_completion"


def push(client: TestClient, *records: dict[str, Any]) -> list[dict[str, Any]]:
    response = client.post("/api/v1/exchange/records", json={"records": list(records)},
                           auth=("shenyang", PARTNER_SECRET))
    assert response.status_code == 200, response.text
    return list(response.json()["results"])


def record(client: TestClient, external_id: str, *, version: int = 1, steps: int = 5,
           payment: dict[str, Any] | None = None) -> dict[str, Any]:
    body = case_record(item_code(client, ID_CARD), external_id=external_id, version=version, steps=steps,
                       region="210102")
    if steps == 5:
        body["result"] = {"outcome": "granted", "at": "2026-03-14T10:00:00+08:00"}
    if payment is not None:
        body["payment"] = payment
    return envelope(body)


def fee_row(session: Session, tracking_no: str) -> CaseFee | None:
    session.expire_all()
    case_id = session.scalar(select(Case.id).where(Case.tracking_no == tracking_no))
    return session.get(CaseFee, case_id)


def alerts(session: Session, tracking_no: str) -> set[str]:
    case_id = session.scalar(select(Case.id).where(Case.tracking_no == tracking_no))
    return set(session.scalars(select(Alert.rule).where(Alert.case_id == case_id)))


def new_id() -> str:
    return f"SY-{uuid.uuid4().hex[:12]}"


def test_a_completion_reported_unpaid_is_stored_as_reported_and_raises_the_alert(
        client: TestClient, officers, session: Session) -> None:
    payment = {"status": "unpaid", "amount_fen": 2000, "reference": "HP-2026-0001"}
    result = push(client, record(client, new_id(), payment=payment))[0]
    assert result["status"] == "applied", result
    number = result["tracking_no"]
    row = fee_row(session, number)
    assert row is not None
    assert (row.source, row.status, row.amount_fen, row.reported) == ("partner", "due", 2000, payment)
    assert RULE in alerts(session, number)
    view = client.get(f"/api/v1/cases/{number}", headers=officers.headers(officer_of(ID_CARD, "intake"))).json()
    assert view["fee"] == {"amount_fen": 2000, "paid_fen": 0, "due": "before_acceptance", "status": "due",
                           "source": "partner"}


def test_a_paid_completion_raises_nothing_and_a_later_record_replaces_the_status(
        client: TestClient, session: Session) -> None:
    external_id = new_id()
    number = push(client, record(client, external_id, steps=2, payment={"status": "unpaid", "amount_fen": 2000}))[0][
        "tracking_no"]
    assert fee_row(session, number).status == "due"  # type: ignore[union-attr]
    paid = {"status": "paid", "amount_fen": 2000, "paid_at": "2026-03-12T09:00:00+08:00", "reference": "R-1"}
    assert push(client, record(client, external_id, version=2, payment=paid))[0]["status"] == "applied"
    row = fee_row(session, number)
    assert (row.status, row.paid_fen, row.reported["reference"]) == ("paid", 2000, "R-1")  # type: ignore[union-attr]
    assert RULE not in alerts(session, number)


def test_a_record_without_payment_stores_no_fee_and_is_not_judged(client: TestClient, session: Session) -> None:
    number = push(client, record(client, new_id()))[0]["tracking_no"]
    assert fee_row(session, number) is None
    assert RULE not in alerts(session, number)


def test_a_bad_payment_object_is_rejected_naming_the_field(client: TestClient) -> None:
    result = push(client, record(client, new_id(), payment={"status": "settled", "amount_fen": 2000}))[0]
    assert result["status"] == "rejected", result
    assert "payment" in str(result)


def test_the_batch_path_stores_new_and_existing_cases_payments(client: TestClient, session: Session, handler,
                                                               ) -> None:
    first, second = new_id(), new_id()
    push(client, record(client, first, steps=2))  # an existing case before the batch
    messages = [inbound_message(record(client, first, version=2, payment={"status": "waived", "amount_fen": 2000})),
                inbound_message(record(client, second, payment={"status": "exempt", "amount_fen": 0}))]
    assert handler.handle_batch(messages) == [Outcome.ACK] * 2
    rows = {}
    for external_id in (first, second):
        number = session.scalar(select(Case.tracking_no).where(Case.external_id == external_id))
        rows[external_id] = fee_row(session, number)
    assert rows[first].status == "waived" and rows[second].status == "exempt"  # type: ignore[union-attr]


def test_the_batch_reads_case_fees_once_for_its_completions_and_never_without_them(
        client: TestClient, handler, engine) -> None:
    """The ingest path is hot: a record without ``payment`` costs nothing more; supervision reads the fee rows of
    a batch's completed fee cases in one statement, and records that complete nothing read none."""
    running = [inbound_message(record(client, new_id(), steps=2)) for _ in range(5)]
    with sent_statements(engine) as seen:
        assert handler.handle_batch(running) == [Outcome.ACK] * 5
    assert [s for s in seen if "case_fees" in s] == []
    completed = [inbound_message(record(client, new_id())) for _ in range(5)]
    with sent_statements(engine) as seen:
        assert handler.handle_batch(completed) == [Outcome.ACK] * 5
    assert len([s for s in seen if "case_fees" in s]) == 1
