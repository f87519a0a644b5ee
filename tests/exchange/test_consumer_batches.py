"""The inbound consumer applies prefetched deliveries in batches, against the real broker, on every backend.

Each test publishes its records as the partner first, then starts the consumer (``adapters.amqp.consume`` with
the hub's ``InboundHandler``) with a batch as large as what it published, so the records arrive as one batch:

* the batch is committed once (COMMITs counted at the engine) and every ack follows that commit;
* a poison record in the middle of the batch — refused by a check, or failing halfway through its writes — is
  dead-lettered alone with its reason, and the records around it are applied;
* a transient failure of one record retries that record alone; a failed commit retries the whole batch and
  nothing of it is acked before it commits. Either way every record ends up applied once: nothing lost, no
  case or step twice.

The PostgreSQL database is the suite's (``HUB_TEST_BACKENDS``), the broker the exchange tests' private vhost.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from pika.adapters.blocking_connection import BlockingChannel
from sqlalchemy import bindparam, event, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from adapters.amqp import INBOUND_QUEUE
from hub.cases.models import Case
from hub.clock import SystemClock
from hub.exchange import service
from hub.exchange.consumer import InboundHandler
from hub.exchange.models import InboxMessage
from hub.settings import Settings
from mocks.city_platform import PartnerPublisher
from tests.adapters.amqp.conftest import running_consumer, wait_for
from tests.exchange.conftest import WORKER_AMQP, Broker, dead_letter_reasons, item_code
from tests.support import case_record, envelope, step


class Ledger:
    """Committed transactions of the hub's sessions and acks on the consumer's channel, in their order."""

    def __init__(self) -> None:
        self.entries: list[str] = []
        self._lock = threading.Lock()

    def note(self, what: str) -> None:
        with self._lock:
            self.entries.append(what)

    def count(self, what: str) -> int:
        with self._lock:
            return sum(1 for e in self.entries if e == what)

    def first(self, what: str) -> int:
        with self._lock:
            return self.entries.index(what)


@pytest.fixture
def ledger(session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> Iterator[Ledger]:
    ledger = Ledger()

    def on_commit(session: Session) -> None:
        if not session.in_nested_transaction():  # the event fires for released savepoints too
            ledger.note("commit")

    original_ack = BlockingChannel.basic_ack

    def basic_ack(channel: BlockingChannel, delivery_tag: int = 0, multiple: bool = False) -> None:
        ledger.note("ack")
        original_ack(channel, delivery_tag, multiple)

    monkeypatch.setattr(BlockingChannel, "basic_ack", basic_ack)
    event.listen(session_factory, "after_commit", on_commit)
    yield ledger
    event.remove(session_factory, "after_commit", on_commit)


def records(factory: sessionmaker[Session], count: int) -> list[dict[str, Any]]:
    code = item_code(factory)
    return [envelope(case_record(code, external_id=f"BT-{uuid.uuid4().hex[:12]}", steps=2)) for _ in range(count)]


def publish(url: str, documents: list[dict[str, Any]]) -> None:
    with PartnerPublisher(url) as publisher:
        for document in documents:
            publisher.publish("shenyang.case-record.v1", json.dumps(document, ensure_ascii=False).encode(),
                              message_id=document["message_id"], type_="case-record.v1")


@contextmanager
def consuming(broker: Broker, factory: sessionmaker[Session], settings: Settings, batch: int) -> Iterator[None]:
    """The hub's inbound consumer, with a batch as large as what the test published (and time to fill it)."""
    handler = InboundHandler(factory, SystemClock(), broker.admin_user, settings.audit_key, batch_size=batch,
                             batch_wait_s=5.0)
    with running_consumer(broker.settings(**WORKER_AMQP), INBOUND_QUEUE, handler):
        yield


def applied(factory: sessionmaker[Session], documents: list[dict[str, Any]]) -> int:
    ids = [uuid.UUID(d["message_id"]) for d in documents]
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(InboxMessage)
                                  .where(InboxMessage.message_id.in_(ids))) or 0)


def cases_and_steps(factory: sessionmaker[Session], documents: list[dict[str, Any]]) -> tuple[int, int]:
    external_ids = [d["payload"]["external_id"] for d in documents]
    with factory() as session:
        cases = session.scalar(select(func.count()).select_from(Case).where(
            Case.origin_partner == "shenyang", Case.external_id.in_(external_ids))) or 0
        steps = session.execute(text(
            "select count(*) from case_events e join cases c on c.id = e.case_id "
            "where c.origin_partner = 'shenyang' and c.external_id in :ids").bindparams(
            bindparam("ids", expanding=True)), {"ids": external_ids}).scalar_one()
    return int(cases), int(steps)


def fail_once_for(external_ids: set[str], exc: Callable[[], Exception],
                  monkeypatch: pytest.MonkeyPatch, *, every_time: bool = False) -> list[str]:
    """Make a record fail halfway through its writes (after its case and steps are flushed): once, or always."""
    original = service._publish
    failed: list[str] = []

    def publish(session: Session, case: Case, now: Any) -> None:
        if case.external_id in external_ids and (every_time or case.external_id not in failed):
            failed.append(str(case.external_id))
            raise exc()
        original(session, case, now)

    monkeypatch.setattr(service, "_publish", publish)
    return failed


def test_a_batch_is_committed_once_and_acked_after_the_commit(
        broker: Broker, partner_urls: dict[str, str], session_factory: sessionmaker[Session], settings: Settings,
        ledger: Ledger, empty_queues: None) -> None:
    documents = records(session_factory, 12)
    publish(partner_urls["shenyang"], documents)
    with consuming(broker, session_factory, settings, batch=len(documents)):
        wait_for(lambda: applied(session_factory, documents) == len(documents) and ledger.count("ack") >= 1,
                 timeout_s=60, what="the batch applied and acked")
    assert ledger.count("commit") == 1, ledger.entries
    assert ledger.first("commit") < ledger.first("ack"), ledger.entries
    assert cases_and_steps(session_factory, documents) == (12, 24)


def test_poison_in_the_middle_of_a_batch_is_dead_lettered_alone_and_the_others_apply(
        broker: Broker, partner_urls: dict[str, str], session_factory: sessionmaker[Session], settings: Settings,
        ledger: Ledger, empty_queues: None, monkeypatch: pytest.MonkeyPatch) -> None:
    documents = records(session_factory, 9)
    refused = documents[3]
    refused["payload"]["submitted_at"] = "garbage"  # refused by a check, before any write
    broken = documents[6]  # fails halfway through its writes: its savepoint must take them back
    fail_once_for({broken["payload"]["external_id"]}, lambda: RuntimeError("defect"), monkeypatch,
                  every_time=True)
    good = [d for d in documents if d not in (refused, broken)]
    publish(partner_urls["shenyang"], documents)
    with consuming(broker, session_factory, settings, batch=len(documents)):
        reasons = dead_letter_reasons(broker, expected=2)
        wait_for(lambda: applied(session_factory, good) == len(good), timeout_s=60, what="the good records")
    assert ledger.count("commit") == 1, ledger.entries
    assert "field payload.submitted_at, rule format" in reasons[refused["message_id"]], reasons
    assert reasons[broken["message_id"]].startswith("internal_error: RuntimeError"), reasons
    assert applied(session_factory, [refused, broken]) == 0
    assert cases_and_steps(session_factory, [refused, broken]) == (0, 0)
    assert cases_and_steps(session_factory, good) == (len(good), 2 * len(good))


def test_a_transient_failure_of_one_record_retries_it_alone_and_loses_or_repeats_nothing(
        broker: Broker, partner_urls: dict[str, str], session_factory: sessionmaker[Session], settings: Settings,
        ledger: Ledger, empty_queues: None, monkeypatch: pytest.MonkeyPatch) -> None:
    documents = records(session_factory, 8)
    flaky = documents[4]["payload"]["external_id"]
    failed = fail_once_for({flaky}, lambda: OperationalError("INSERT", {}, Exception("server restarting")),
                           monkeypatch)
    publish(partner_urls["shenyang"], documents)
    with consuming(broker, session_factory, settings, batch=len(documents)):
        wait_for(lambda: applied(session_factory, documents) == len(documents), timeout_s=60,
                 what="every record, the retried one too")
    assert failed == [flaky]
    assert ledger.count("commit") == 2, ledger.entries  # the batch without it, then the record alone
    assert cases_and_steps(session_factory, documents) == (8, 16)


def test_a_failed_commit_retries_the_whole_batch_and_acks_nothing_before_it_commits(
        broker: Broker, partner_urls: dict[str, str], session_factory: sessionmaker[Session], settings: Settings,
        ledger: Ledger, empty_queues: None) -> None:
    documents = records(session_factory, 10)
    refusals: list[str] = []

    def refuse_first_commit(_session: Session) -> None:
        if not refusals:
            refusals.append("refused")
            ledger.note("failed commit")
            raise OperationalError("COMMIT", {}, Exception("connection lost at commit"))

    event.listen(session_factory, "before_commit", refuse_first_commit)
    try:
        publish(partner_urls["shenyang"], documents)
        with consuming(broker, session_factory, settings, batch=len(documents)):
            wait_for(lambda: applied(session_factory, documents) == len(documents) and ledger.count("ack") >= 1,
                     timeout_s=60, what="the batch applied after its failed commit")
    finally:
        event.remove(session_factory, "before_commit", refuse_first_commit)
    entries = ledger.entries
    assert entries.index("failed commit") < entries.index("ack"), entries
    # The ack follows the second commit, the one that held.
    assert entries[entries.index("ack") - 1] == "commit" and entries.count("commit") == 1, entries
    assert cases_and_steps(session_factory, documents) == (10, 20)




def test_one_case_created_held_and_updated_within_one_batch_is_written_once(
        broker: Broker, partner_urls: dict[str, str], session_factory: sessionmaker[Session], settings: Settings,
        ledger: Ledger, empty_queues: None) -> None:
    code = item_code(session_factory)
    external_id = f"BT-{uuid.uuid4().hex[:12]}"
    documents = [
        envelope({"external_id": external_id, "step": step(4, "grant", "granted")}, record_type="case-event"),
        envelope(case_record(code, external_id=external_id, steps=2)),  # creates the case (steps 1–2)
        envelope({"external_id": external_id, "step": step(3, "review", "pending_decision")},
                 record_type="case-event"),  # fills the gap: the held step 4 follows
        envelope(case_record(code, external_id=external_id, version=2, steps=5)),  # the full history, v2
        envelope(case_record(code, external_id=external_id, version=1, steps=2)),  # older: stale
    ]
    publish(partner_urls["shenyang"], documents)
    with consuming(broker, session_factory, settings, batch=len(documents)):
        wait_for(lambda: applied(session_factory, documents) == len(documents), timeout_s=60,
                 what="the case's five messages")
    assert ledger.count("commit") == 1, ledger.entries
    assert cases_and_steps(session_factory, documents[1:2]) == (1, 5)
    with session_factory() as session:
        case = session.scalars(select(Case).where(Case.origin_partner == "shenyang",
                                                  Case.external_id == external_id)).one()
        assert (case.partner_event_seq, case.record_version, case.state) == (5, 2, "completed")
