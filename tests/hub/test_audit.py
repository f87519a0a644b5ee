"""The event chain: `hub audit verify` names the case and event that was edited or deleted."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from adapters.amqp import InProcessBus
from adapters.amqp.topology import EVENTS_EXCHANGE
from hub.audit import checkpoints
from hub.audit.service import Finding, reseal, verify
from hub.cases.models import Case, CaseEvent
from hub.cli import app as cli
from hub.clock import FixedClock
from hub.outbox.models import OutboxMessage
from hub.settings import DEV_AUDIT_KEY, Settings, get_settings
from hub.validation import load_schema, validator_for
from hub.worker import Worker
from tests.support import PARTNER_SECRET, case_record, envelope, item_code, officer_of, step, submit
from tests.tamper import rewrite_with_plain_hashes

KEY = "physician-practice-registration"


@pytest.fixture
def decided_case(client: TestClient, officers) -> str:
    number = submit(client, KEY)["tracking_no"]
    for role, action in [("intake", "accept"), ("reviewer", "review"), ("approver", "grant")]:
        response = client.post(f"/api/v1/cases/{number}/actions",
                               json={"action": action, "opinion": "同意"},
                               headers=officers.headers(officer_of(KEY, role)))
        assert response.status_code == 200, response.text
    return number


@pytest.fixture
def cli_env(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HUB_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("HUB_AUDIT_KEY", DEV_AUDIT_KEY)  # the key the test app chains with (tests/conftest.py)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def run_verify(number: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["audit", "verify", "--tracking-no", number],
                                env={"COLUMNS": "200"})
    return result.exit_code, result.output


def case_id(engine: Engine, number: str) -> int:
    with engine.connect() as c:
        return int(c.execute(text("SELECT id FROM cases WHERE tracking_no = :n"), {"n": number}).scalar_one())


def test_intact_chain_verifies(decided_case: str, cli_env: None) -> None:
    code, output = run_verify(decided_case)
    assert code == 0, output
    assert "4 events verified" in output


def test_edited_opinion_is_reported_with_case_and_event(
    decided_case: str, engine: Engine, cli_env: None
) -> None:
    with engine.begin() as c:
        c.execute(text("UPDATE case_events SET opinion = '不同意' WHERE case_id = :c AND seq = 3"),
                  {"c": case_id(engine, decided_case)})
    code, output = run_verify(decided_case)
    assert code == 1
    line = next(line for line in output.splitlines() if decided_case in line)
    assert " 3 " in line and "edited" in line


def test_deleted_middle_event_is_reported(decided_case: str, engine: Engine, cli_env: None) -> None:
    with engine.begin() as c:
        c.execute(text("DELETE FROM case_events WHERE case_id = :c AND seq = 2"),
                  {"c": case_id(engine, decided_case)})
    code, output = run_verify(decided_case)
    assert code == 1
    assert "deleted" in output and "2" in output


def test_deleted_last_event_is_reported(decided_case: str, engine: Engine, cli_env: None) -> None:
    with engine.begin() as c:
        c.execute(text("DELETE FROM case_events WHERE case_id = :c AND seq = 4"),
                  {"c": case_id(engine, decided_case)})
    code, output = run_verify(decided_case)
    assert code == 1
    assert "deleted" in output and "4" in output


def test_event_moved_to_another_time_is_reported(
    decided_case: str, engine: Engine, cli_env: None
) -> None:
    with engine.begin() as c:
        c.execute(text("UPDATE case_events SET occurred_at = occurred_at - INTERVAL '1 day' "
                       "WHERE case_id = :c AND seq = 2") if engine.dialect.name == "postgresql" else
                  text("UPDATE case_events SET occurred_at = '2020-01-01 00:00:00.000000' "
                       "WHERE case_id = :c AND seq = 2"),
                  {"c": case_id(engine, decided_case)})
    code, output = run_verify(decided_case)
    assert code == 1
    assert "edited" in output


# --- issue 7: the chain is keyed and seals the case row ------------------------------------------


def findings_of(session_factory: sessionmaker[Session], settings: Settings, number: str,
                key: str | None = None) -> list[Finding]:
    with session_factory() as session:
        return verify(session, key=key or settings.audit_key, tracking_no=number)[1]


def problems(findings: list[Finding]) -> list[tuple[int | None, str]]:
    return [(f.seq, f.problem) for f in findings]


def officer_act(client: TestClient, officers: Any, number: str, role: str, action: str,
                opinion: str | None = "同意") -> None:
    response = client.post(f"/api/v1/cases/{number}/actions", json={"action": action, "opinion": opinion},
                           headers=officers.headers(officer_of(KEY, role)))
    assert response.status_code == 200, response.text


def push(client: TestClient, *records: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/v1/exchange/records", json={"records": list(records)},
                           auth=("shenyang", PARTNER_SECRET))
    assert response.status_code == 200, response.text
    result = response.json()["results"][0]
    assert result["status"] in {"applied", "held"}, result
    return dict(result)


def test_every_honest_change_of_a_hub_case_verifies(
    client: TestClient, officers: Any, session_factory: sessionmaker[Session], settings: Settings,
    clock: FixedClock,
) -> None:
    """Acceptance starts the clock, a supplement request suspends it, the supplement resumes it and
    moves every deadline: each change is sealed by its event, none fails verification."""
    receipt = submit(client, KEY)
    number, code = receipt["tracking_no"], receipt["query_code"]
    officer_act(client, officers, number, "intake", "accept")
    officer_act(client, officers, number, "reviewer", "request_supplement", "请补充执业证明")
    clock.advance(days=7)
    response = client.post(f"/api/v1/applications/{number}/supplement", headers={"X-Query-Code": code},
                           json={"note": "已补充"})
    assert response.status_code == 200, response.text
    response = client.post(f"/api/v1/applications/{number}/withdraw", headers={"X-Query-Code": code},
                           json={"reason": "不再需要"})
    assert response.status_code == 200, response.text
    assert findings_of(session_factory, settings, number) == []
    with session_factory() as session:
        case = session.scalar(select(Case).where(Case.tracking_no == number))
        assert case is not None and case.suspended_working_days > 0 and case.state == "withdrawn"


def test_partner_records_and_events_verify_however_they_arrive(
    client: TestClient, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    code, ext = item_code(client, KEY), f"SY-{uuid.uuid4().hex[:12]}"
    number = push(client, envelope(case_record(code, external_id=ext, version=1, steps=2)))["tracking_no"]
    assert findings_of(session_factory, settings, number) == []
    # A newer version with no new step but a new promised date: the change gets an event of its own.
    changed = case_record(code, external_id=ext, version=2, steps=2)
    changed["promised_completion_date"] = "2026-04-30"
    push(client, envelope(changed))
    # Steps out of order (5 held until 4 arrives), then a record with the result.
    for seq, action, state in [(3, "review", "pending_decision"), (5, "complete", "completed"),
                               (4, "grant", "granted")]:
        push(client, envelope({"external_id": ext, "step": step(seq, action, state)}, record_type="case-event"))
    final = case_record(code, external_id=ext, version=3, steps=5)
    final["result"] = {"outcome": "granted", "at": "2026-03-16T10:00:00+08:00"}
    push(client, envelope(final))
    assert findings_of(session_factory, settings, number) == []
    with session_factory() as session:
        actions = [e.action for e in session.scalars(select(CaseEvent).join(Case)
                                                     .where(Case.tracking_no == number).order_by(CaseEvent.seq))]
    assert actions == ["submit", "accept", "update_record", "review", "grant", "complete", "update_record"]


def test_case_row_set_to_granted_in_the_database_is_named(
    decided_case: str, engine: Engine, session_factory: sessionmaker[Session], settings: Settings,
    client: TestClient, officers: Any,
) -> None:
    number = submit(client, KEY)["tracking_no"]
    officer_act(client, officers, number, "intake", "accept")
    with engine.begin() as c:
        c.execute(text("UPDATE cases SET state = 'granted', result = 'granted' WHERE tracking_no = :n"),
                  {"n": number})
    found = findings_of(session_factory, settings, number)
    assert problems(found) == [(2, "case_row_edited")]
    assert "state: under_review → granted" in found[0].detail and "result: None → granted" in found[0].detail


def test_deadline_moved_in_the_database_is_named(
    decided_case: str, engine: Engine, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    with engine.begin() as c:
        c.execute(text("UPDATE cases SET deadline = NULL WHERE tracking_no = :n"), {"n": decided_case})
    found = findings_of(session_factory, settings, decided_case)
    assert problems(found) == [(4, "case_row_edited")] and "deadline" in found[0].detail


def test_applicant_identity_swapped_in_the_database_is_named(
    decided_case: str, engine: Engine, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    with engine.begin() as c:
        c.execute(text("UPDATE cases SET applicant_name = '李四' WHERE tracking_no = :n"), {"n": decided_case})
    assert problems(findings_of(session_factory, settings, decided_case)) == [(4, "case_row_edited")]


def test_a_state_forged_and_then_acted_on_is_still_named(
    client: TestClient, officers: Any, engine: Engine, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    """The next honest event seals the forged row, but it starts from a state the chain never reached."""
    number = submit(client, KEY)["tracking_no"]
    officer_act(client, officers, number, "intake", "accept")
    officer_act(client, officers, number, "reviewer", "review")
    with engine.begin() as c:
        c.execute(text("UPDATE cases SET state = 'granted', result = 'granted' WHERE tracking_no = :n"),
                  {"n": number})
    officer_act(client, officers, number, "intake", "complete", None)
    assert (4, "row_changed_between_events") in problems(findings_of(session_factory, settings, number))


def test_chain_recomputed_with_plain_hashes_is_named_unkeyed(
    decided_case: str, engine: Engine, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    rewrite_with_plain_hashes(engine, session_factory, decided_case, edit_seq=3)
    assert problems(findings_of(session_factory, settings, decided_case)) == [
        (1, "unkeyed"), (2, "unkeyed"), (3, "unkeyed"), (4, "unkeyed")]


def test_the_key_is_what_verifies_the_chain(
    decided_case: str, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    assert findings_of(session_factory, settings, decided_case) == []
    other = findings_of(session_factory, settings, decided_case, key="another-key-" + "x" * 40)
    assert {f.problem for f in other} == {"edited"}


def test_reseal_upgrades_a_chain_written_before_the_key(
    decided_case: str, engine: Engine, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    """What migration 0007 leaves behind: unkeyed digests, no row seal. Reported until resealed."""
    rewrite_with_plain_hashes(engine, session_factory, decided_case, drop_row_seal=True)
    assert {f.problem for f in findings_of(session_factory, settings, decided_case)} == {"unkeyed"}
    with session_factory() as session:
        report = reseal(session, key=settings.audit_key, tracking_no=decided_case)
        session.commit()
    assert (report.cases, report.events, report.refused) == (1, 4, [])
    assert findings_of(session_factory, settings, decided_case) == []


def test_reseal_refuses_an_edited_old_chain(
    decided_case: str, engine: Engine, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    rewrite_with_plain_hashes(engine, session_factory, decided_case, drop_row_seal=True)
    with engine.begin() as c:
        c.execute(text("UPDATE case_events SET opinion = '改' WHERE case_id = :c AND seq = 2"),
                  {"c": case_id(engine, decided_case)})
    with session_factory() as session:
        report = reseal(session, key=settings.audit_key, tracking_no=decided_case)
        session.commit()
    assert report.cases == 0 and problems(report.refused) == [(2, "refused")]
    assert (2, "edited") in problems(findings_of(session_factory, settings, decided_case))


# --- checkpoints --------------------------------------------------------------------------------


def checkpoint_rows(session_factory: sessionmaker[Session]) -> list[dict[str, Any]]:
    with session_factory() as session:
        rows = session.scalars(select(OutboxMessage).where(OutboxMessage.type == "audit.checkpoint.v1")
                               .order_by(OutboxMessage.id)).all()
        return [dict(r.payload) for r in rows]


def test_worker_publishes_a_checkpoint_of_every_head_on_hub_events(
    decided_case: str, settings: Settings, session_factory: sessionmaker[Session], clock: FixedClock
) -> None:
    bus = InProcessBus(user="hub", retry_initial_s=0.01, retry_max_s=0.02)
    bus.bind(bus.declare_queue("partner.audit"), EVENTS_EXCHANGE, "audit.#")
    worker = Worker(settings=settings.model_copy(update={"audit_checkpoint_interval_s": 3600}),
                    factory=session_factory, clock=clock, bus=bus)
    # Earlier tests on this database may have checkpointed at this clock's time: start one interval after the
    # newest checkpoint, so the first one here is due whatever ran before.
    with session_factory() as session:
        newest = session.scalar(select(OutboxMessage.occurred_at).where(OutboxMessage.type == "audit.checkpoint.v1")
                                .order_by(OutboxMessage.id.desc()).limit(1))
    if newest is not None:
        clock.advance(seconds=max(0.0, (newest - clock.now()).total_seconds()) + 3600)
    before = len(checkpoint_rows(session_factory))
    worker.checkpoint()
    worker.checkpoint()  # within the interval: nothing new
    assert len(checkpoint_rows(session_factory)) == before + 1
    clock.advance(hours=1)
    worker.checkpoint()
    assert len(checkpoint_rows(session_factory)) == before + 2
    while worker._relay():
        pass
    worker.stop(timeout=1)
    message = json.loads(bus.messages("partner.audit")[-1].body)
    assert (message["type"], message["version"], message["source"]) == ("audit.checkpoint", 1, "hub")
    validator_for(load_schema("audit-checkpoint.v1.json")).validate(message["payload"])
    heads = {h["tracking_no"]: h for h in message["payload"]["heads"]}
    assert heads[decided_case]["seq"] == 4
    assert message["payload"]["case_count"] == len(heads)


def test_checkpoint_names_every_case_rewritten_since(
    decided_case: str, engine: Engine, settings: Settings, session_factory: sessionmaker[Session], clock: FixedClock,
    client: TestClient, officers: Any,
) -> None:
    honest, earlier, same = (submit(client, KEY)["tracking_no"] for _ in range(3))
    officer_act(client, officers, earlier, "intake", "accept")
    with session_factory() as session:
        saved = checkpoints.build(session, key=settings.audit_key, now=clock.now())
    officer_act(client, officers, honest, "intake", "accept")  # honest changes after the checkpoint
    officer_act(client, officers, earlier, "reviewer", "review")
    with engine.begin() as c:  # the decision removed, and the row told it has three events
        c.execute(text("DELETE FROM case_events WHERE case_id = :c AND seq = 4"), {"c": case_id(engine, decided_case)})
        c.execute(text("UPDATE cases SET event_count = 3 WHERE tracking_no = :n"), {"n": decided_case})
    rewrite_with_plain_hashes(engine, session_factory, earlier, edit_seq=2)  # history before the checkpoint
    rewrite_with_plain_hashes(engine, session_factory, same, edit_seq=1)  # the head itself
    with session_factory() as session:
        found = checkpoints.compare(session, checkpoint=saved, key=settings.audit_key)
    named = {f.tracking_no: (f.seq, f.problem) for f in found}
    assert named[decided_case] == (4, "seq_decreased")
    assert named[earlier] == (2, "history_rewritten")
    assert named[same] == (1, "head_changed")
    assert honest not in named


def test_checkpoint_not_made_with_the_key_is_refused(settings: Settings, session_factory: sessionmaker[Session],
                                                     clock: FixedClock) -> None:
    with session_factory() as session:
        saved = checkpoints.build(session, key=settings.audit_key, now=clock.now())
        saved["heads"] = saved["heads"][:1]
        assert problems(checkpoints.compare(session, checkpoint=saved, key=settings.audit_key)) == [
            (None, "checkpoint_invalid")]


def test_checkpoint_schema_rejects_a_malformed_head() -> None:
    with pytest.raises(jsonschema.ValidationError):
        validator_for(load_schema("audit-checkpoint.v1.json")).validate(
            {"checkpoint_at": "2026-03-11T02:00:00+00:00", "algorithm": "hmac-sha256", "case_count": 1,
             "heads": [{"tracking_no": "x", "seq": 1, "head": "0" * 64}], "mac": "0" * 64})
