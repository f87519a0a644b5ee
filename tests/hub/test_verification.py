"""Applicants verified against the mock registries over real sockets: on submission, by the worker later,
for prefill; materials a check replaces; grant blocked by a failed or pending check; nothing lost while
a registry is down."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from rich.console import Console
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from adapters.registries import Registries
from hub.app import create_app
from hub.cases.models import Case
from hub.cli import app as cli
from hub.clock import FixedClock
from hub.demo import run_demo
from hub.seed.service import read_seed
from hub.settings import DEV_AUDIT_KEY, DEV_SECRET, Settings, get_settings
from hub.verification.checks import reverify_pending
from hub.verification.models import CaseVerification, RegistryAccess
from hub.verification.registries import build_from_settings
from mocks.registries.seed import Seed
from mocks.runner import RunningMocks
from tests.conftest import Officers
from tests.hub.conftest import build
from tests.mocks.support import ManualMonotonic, MockControl
from tests.servers import serving
from tests.support import company, example_form, item_code, officer_of, person

PHYSICIAN = "physician-practice-registration"  # id_card replaceable by the population registry


Monotonic = ManualMonotonic


def apply(client: TestClient, key: str, applicant: dict[str, Any]) -> dict[str, Any]:
    body = {"item_code": item_code(client, key), "applicant": applicant, "form": example_form(key)}
    response = client.post("/api/v1/applications", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def someone(seed_person: Any, **overrides: Any) -> dict[str, Any]:
    return person(name=seed_person.name, id_number=seed_person.id_number, **overrides)


def firm(organisation: Any, applicant_type: str = "2") -> dict[str, Any]:
    return company(type=applicant_type, name=organisation.name, id_number=organisation.credit_code)


def case_view(client: TestClient, staff: Officers, key: str, tracking_no: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/cases/{tracking_no}", headers=staff.headers(officer_of(key, "intake")))
    assert response.status_code == 200, response.text
    return dict(response.json())


def act(client: TestClient, staff: Officers, key: str, tracking_no: str, role: str, action: str) -> Any:
    return client.post(f"/api/v1/cases/{tracking_no}/actions", json={"action": action, "opinion": "依法办理"},
                       headers=staff.headers(officer_of(key, role)))


def outcomes(session_factory: sessionmaker[Session], tracking_nos: list[str]) -> dict[str, set[str]]:
    with session_factory() as session:
        rows = session.execute(
            select(Case.tracking_no, CaseVerification.outcome)
            .join(CaseVerification, CaseVerification.case_id == Case.id)
            .where(Case.tracking_no.in_(tracking_nos))
        ).all()
    found: dict[str, set[str]] = {}
    for number, outcome in rows:
        found.setdefault(number, set()).add(outcome)
    return found


# --- a person ----------------------------------------------------------------------------------


def test_a_registered_person_is_verified_and_the_id_card_is_not_asked_for(
        hub: TestClient, staff: Officers, seed: Seed) -> None:
    receipt = apply(hub, PHYSICIAN, someone(seed.normal_person))

    assert receipt["verification"] == "verified"
    materials = {m["key"]: m for m in receipt["materials"]}
    assert materials["id_card"]["replaceable_by"] == "population"
    assert materials["id_card"]["replaced_by_registry"] is True
    assert not any(m["replaced_by_registry"] for k, m in materials.items() if k != "id_card")

    view = case_view(hub, staff, PHYSICIAN, receipt["tracking_no"])
    [check] = view["verifications"]
    assert (check["registry"], check["check"], check["outcome"]) == ("population", "population.applicant", "verified")
    assert check["registry_label"] == "人口信息库" and check["checked_at"] and check["message_id"]
    assert seed.normal_person.id_number not in str(check) and seed.normal_person.name not in str(check)
    assert "id_card" not in view["missing_materials"]
    assert "application_form" in view["missing_materials"]

    status = hub.get(f"/api/v1/applications/{receipt['tracking_no']}",
                     headers={"X-Query-Code": receipt["query_code"]}).json()
    assert status["verifications"] == [{"registry": "population", "registry_label": "人口信息库",
                                        "outcome": "verified", "outcome_label": "核验通过",
                                        "checked_at": check["checked_at"]}]


@pytest.mark.parametrize("who", ["deceased", "unknown", "wrong_name"])
def test_a_failed_verification_blocks_grant_but_not_intake_or_review(
        who: str, hub: TestClient, staff: Officers, seed: Seed) -> None:
    applicant = {
        "deceased": someone(seed.deceased_person),
        "unknown": person(name="王五", id_number=seed.unknown_id_number),
        "wrong_name": person(name="王五", id_number=seed.normal_person.id_number),
    }[who]
    receipt = apply(hub, PHYSICIAN, applicant)
    number = receipt["tracking_no"]
    assert receipt["verification"] == "failed"
    assert not any(m["replaced_by_registry"] for m in receipt["materials"])
    [check] = case_view(hub, staff, PHYSICIAN, number)["verifications"]
    assert check["outcome"] == "failed" and check["detail"]
    assert applicant["id_number"] not in check["detail"]

    assert act(hub, staff, PHYSICIAN, number, "intake", "accept").status_code == 200
    assert act(hub, staff, PHYSICIAN, number, "reviewer", "review").status_code == 200
    refused = act(hub, staff, PHYSICIAN, number, "approver", "grant")
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert problem["type"].endswith("/verification-failed")
    assert "人口信息库" in problem["detail"] and "cannot be granted" in problem["detail"]
    assert act(hub, staff, PHYSICIAN, number, "approver", "deny").status_code == 200


# --- a registry that is down -------------------------------------------------------------------


def test_no_submission_is_lost_while_the_population_registry_is_down(
        hub: TestClient, staff: Officers, seed: Seed, control: MockControl, mocks: RunningMocks,
        session_factory: sessionmaker[Session], clock: FixedClock) -> None:
    control.refuse("population")
    people = [p for p in seed.people if p.status == "normal"][:20]
    receipts = [apply(hub, PHYSICIAN, someone(p)) for p in people]

    assert all(r["verification"] == "pending" for r in receipts)
    assert all(next(m for m in r["materials"] if m["key"] == "id_card")["replaced_by_registry"] is False
               for r in receipts)
    numbers = [r["tracking_no"] for r in receipts]
    assert len(set(numbers)) == 20
    assert outcomes(session_factory, numbers) == {n: {"pending"} for n in numbers}  # all stored, all pending
    view = case_view(hub, staff, PHYSICIAN, numbers[0])
    assert view["verifications"][0]["outcome"] == "pending"
    assert "id_card" in view["missing_materials"]

    number = numbers[0]
    assert act(hub, staff, PHYSICIAN, number, "intake", "accept").status_code == 200
    assert act(hub, staff, PHYSICIAN, number, "reviewer", "review").status_code == 200
    refused = act(hub, staff, PHYSICIAN, number, "approver", "grant")
    assert refused.status_code == 409 and refused.json()["type"].endswith("/verification-pending")

    # The registry comes back; the worker (its own process, its own registries) re-verifies.
    control.recover("population")
    worker = build(mocks)
    try:
        clock.advance(minutes=5)
        with session_factory() as session:
            settled = reverify_pending(session, registries=worker, now=clock.now(), limit=1000)
            session.commit()
    finally:
        worker.close()
    assert settled >= 20
    assert outcomes(session_factory, numbers) == {n: {"verified"} for n in numbers}
    view = case_view(hub, staff, PHYSICIAN, number)
    assert view["verifications"][0]["outcome"] == "verified" and view["verifications"][0]["attempts"] == 2
    assert "id_card" not in view["missing_materials"]
    assert act(hub, staff, PHYSICIAN, number, "approver", "grant").status_code == 200


def test_with_the_breaker_open_submissions_are_fast_and_the_registry_is_left_alone(
        hub: TestClient, staff: Officers, seed: Seed, control: MockControl, monotonic: Monotonic,
        registries: Registries, session_factory: sessionmaker[Session], clock: FixedClock) -> None:
    control.set_faults("population", error_rate=1.0)  # every request a SOAP Server fault
    people = [p for p in seed.people if p.status == "normal"][20:30]
    for p in people[:3]:  # 2 attempts each: the fifth failed attempt opens the breaker
        assert apply(hub, PHYSICIAN, someone(p))["verification"] == "pending"
    ops = hub.get("/api/v1/admin/registries", headers=staff.headers("ln_admin"))
    assert ops.status_code == 200, ops.text
    population = next(r for r in ops.json()["registries"] if r["name"] == "population")
    assert population["breaker"] == "open" and population["error_rate"] == 1.0 and population["failures"] >= 5
    assert ops.json()["pending_cases"] >= 3

    control.reset_counts("population")
    receipts = []
    for p in people[3:]:
        receipts.append(apply(hub, PHYSICIAN, someone(p)))
    assert all(r["verification"] == "pending" for r in receipts)
    assert control.requests("population") == 0  # the open breaker kept every call off the network

    # After the reset time the worker's trial call closes the breaker again.
    control.recover("population")
    monotonic.advance(31)
    clock.advance(minutes=1)
    with session_factory() as session:
        reverify_pending(session, registries=registries, now=clock.now(), limit=1000)
        session.commit()
    numbers = [r["tracking_no"] for r in receipts]
    assert outcomes(session_factory, numbers) == {n: {"verified"} for n in numbers}
    population = next(r for r in hub.get("/api/v1/admin/registries", headers=staff.headers("ln_admin"))
                      .json()["registries"] if r["name"] == "population")
    assert population["breaker"] == "closed"


def test_a_slow_registry_costs_a_submission_at_most_its_time_budget(
        settings: Settings, clock: FixedClock, engine: Engine, registries: Registries, seed: Seed,
        control: MockControl) -> None:
    control.set_faults("population", latency_ms=2000)  # beyond the 0.5 s timeout of each attempt
    spent = settings.model_copy(update={"verification_budget_s": 0.0})
    with TestClient(create_app(spent, clock=clock, engine=engine, registries=registries)) as client:
        receipt = apply(client, PHYSICIAN, someone(seed.normal_person))  # no budget left: the worker checks
    assert receipt["verification"] == "pending"
    assert control.requests("population") == 0
    with TestClient(create_app(settings, clock=clock, engine=engine, registries=registries)) as client:
        receipt = apply(client, PHYSICIAN, someone(seed.normal_person))
    assert receipt["verification"] == "pending"  # timed out within the budget, left for the worker
    assert 1 <= control.requests("population") <= settings.registry_attempts


# --- organisations -----------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "which", "summary", "checks", "replaced"), [
    ("construction-enterprise-qualification", "active_company", "verified",
     {"enterprise.applicant": "verified"}, {"business_licence"}),
    ("construction-enterprise-qualification", "revoked_company", "failed",
     {"enterprise.applicant": "failed"}, set()),
    ("dangerous-goods-road-transport-licence", "active_company", "verified",
     {"enterprise.applicant": "verified", "population.legal_representative": "verified"},
     {"business_licence", "legal_rep_id"}),
    # The applicant's ID card is a person's; the tax receipt is about the transfer, which a tax
    # *registration* check says nothing about: only the enterprise's own licence is waived.
    ("real-estate-transfer-registration", "company_with_arrears", "verified",
     {"enterprise.applicant": "verified"}, {"business_licence"}),
    ("environmental-impact-report-approval", "institution", "verified",
     {"organisation.applicant": "verified"}, set()),
])
def test_organisations_are_checked_as_the_item_needs(
        key: str, which: str, summary: str, checks: dict[str, str], replaced: set[str], hub: TestClient,
        staff: Officers, seed: Seed) -> None:
    organisation = getattr(seed, which)
    receipt = apply(hub, key, firm(organisation, "3" if which == "institution" else "2"))
    assert receipt["verification"] == summary
    assert {m["key"] for m in receipt["materials"] if m["replaced_by_registry"]} == replaced
    view = case_view(hub, staff, key, receipt["tracking_no"])
    assert {v["check"]: v["outcome"] for v in view["verifications"]} == checks
    if which == "revoked_company":
        assert "吊销" in view["verifications"][0]["detail"]
    representative = seed.person(organisation.legal_representative_id)
    assert representative is not None and representative.id_number not in str(view["verifications"])


# --- registries not configured -----------------------------------------------------------------


def test_without_registries_verification_is_not_configured_and_nothing_blocks(
        client: TestClient, officers: Officers) -> None:
    key = "teacher-qualification-senior"
    body = {"item_code": item_code(client, key), "applicant": person(), "form": example_form(key)}
    receipt = client.post("/api/v1/applications", json=body).json()
    assert receipt["verification"] == "not_configured"
    assert not any(m["replaced_by_registry"] for m in receipt["materials"])
    view = client.get(f"/api/v1/cases/{receipt['tracking_no']}",
                      headers=officers.headers(officer_of(key, "intake"))).json()
    assert [(v["registry"], v["outcome"]) for v in view["verifications"]] == [("population", "not_configured")]
    assert "id_card" in view["missing_materials"]
    prefill = client.get("/api/v1/prefill", params={"id_type": "credit_code", "id_number": company()["id_number"]})
    assert prefill.status_code == 503 and prefill.json()["type"].endswith("/registry-not-configured")
    ops = client.get("/api/v1/admin/registries", headers=officers.headers("ln_admin")).json()
    assert ops["configured"] is False
    assert {r["breaker"] for r in ops["registries"]} == {"not_configured"}


def test_an_officer_can_have_a_failed_check_run_again(hub: TestClient, staff: Officers, seed: Seed) -> None:
    receipt = apply(hub, PHYSICIAN, person(name="王五", id_number=seed.normal_person.id_number))
    number = receipt["tracking_no"]
    intake = staff.headers(officer_of(PHYSICIAN, "intake"))
    again = hub.post(f"/api/v1/cases/{number}/verifications", headers=intake)
    assert again.status_code == 200, again.text
    [check] = again.json()["verifications"]
    assert check["outcome"] == "failed" and check["attempts"] == 2
    other = hub.post(f"/api/v1/cases/{number}/verifications", headers=staff.headers("ln_zj_intake"))
    assert other.status_code == 404  # another department's case is answered like an unknown one


# --- prefill -----------------------------------------------------------------------------------


def test_prefill_gives_an_enterprise_its_public_registration_data(hub: TestClient, seed: Seed) -> None:
    firm_ = seed.active_company
    answer = hub.get("/api/v1/prefill", params={"id_type": "credit_code", "id_number": firm_.credit_code})
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert (data["registry"], data["verified"]) == ("enterprise", True)
    fields = data["fields"]
    assert fields["name"] == firm_.name and fields["address"] == firm_.address and fields["status"] == "active"
    assert fields["legal_representative"] == firm_.legal_representative_name[0] + "*" * (
        len(firm_.legal_representative_name) - 1)
    assert firm_.legal_representative_id not in answer.text

    institution = hub.post("/api/v1/prefill", json={"id_type": "credit_code",
                                                    "id_number": seed.institution.credit_code})
    assert institution.status_code == 200 and institution.json()["registry"] == "organisation"
    assert institution.json()["fields"]["name"] == seed.institution.name
    unknown = hub.get("/api/v1/prefill", params={"id_type": "credit_code", "id_number": seed.unknown_credit_code})
    assert unknown.status_code == 404 and seed.unknown_credit_code not in unknown.text


def test_prefill_of_a_person_confirms_nothing_and_asks_no_registry(hub: TestClient, seed: Seed,
                                                                    session_factory: sessionmaker[Session]) -> None:
    """The anonymous prefill is no identity oracle: the right name, a wrong name, a deceased person and an
    unknown number get the same kind of answer — what the number itself encodes, ``verified: null``."""
    someone_ = seed.normal_person
    with session_factory() as session:
        logged_before = session.scalar(select(func.count()).select_from(RegistryAccess))
    answers = []
    for name, number in ((someone_.name, someone_.id_number), ("王五", someone_.id_number),
                         (seed.deceased_person.name, seed.deceased_person.id_number),
                         ("王五", seed.unknown_id_number), (None, someone_.id_number)):
        answer = hub.post("/api/v1/prefill", json={"id_type": "citizen_id", "id_number": number, "name": name})
        assert answer.status_code == 200, answer.text
        answers.append(answer.json())
        assert answer.json()["verified"] is None and set(answer.json()["fields"]) == {"gender", "birth_date"}
        assert (name or "王五") not in answer.text
    assert answers[0]["fields"] == {"gender": someone_.gender, "birth_date": someone_.birth_date.isoformat()}
    assert {k: v for k, v in answers[0].items() if k != "checked_at"} == {
        k: v for k, v in answers[1].items() if k != "checked_at"}
    assert someone_.registered_address not in str(answers) and someone_.photo_digest not in str(answers)
    with session_factory() as session:  # the population registry was never asked
        assert session.scalar(select(func.count()).select_from(RegistryAccess)) == logged_before
    bad = hub.get("/api/v1/prefill", params={"id_type": "citizen_id", "id_number": someone_.id_number[:-1] + "0"
                                             if someone_.id_number[-1] != "0" else someone_.id_number[:-1] + "1"})
    assert bad.status_code == 422


def test_prefill_while_the_registry_is_down_says_so(hub: TestClient, seed: Seed, control: MockControl) -> None:
    control.refuse("enterprise")
    answer = hub.get("/api/v1/prefill", params={"id_type": "credit_code", "id_number": seed.active_company.credit_code})
    assert answer.status_code == 503 and answer.json()["type"].endswith("/registry-unavailable")


# --- the personal-data access log --------------------------------------------------------------


def test_every_look_up_is_logged_with_a_hashed_identifier_and_supervisors_can_search_it(
        hub: TestClient, staff: Officers, seed: Seed, control: MockControl, mocks: RunningMocks,
        session_factory: sessionmaker[Session], clock: FixedClock, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    clock.advance(days=1)  # a day of its own, to tell this test's entries apart
    subject = next(p for p in seed.people if p.status == "normal" and p is not seed.normal_person
                   and p.id_number not in {q.id_number for q in seed.people[:60]})
    control.refuse("population")
    down = apply(hub, PHYSICIAN, someone(subject))  # failed calls are logged too
    control.recover("population")
    ok = apply(hub, PHYSICIAN, someone(subject))
    # The anonymous prefill of a person asks no registry (nothing to log); an organisation's is logged.
    hub.post("/api/v1/prefill", json={"id_type": "citizen_id", "id_number": subject.id_number, "name": subject.name})
    hub.post("/api/v1/prefill", json={"id_type": "credit_code", "id_number": seed.active_company.credit_code})
    worker = build(mocks)
    try:
        with session_factory() as session:
            reverify_pending(session, registries=worker, now=clock.now(), limit=1000)
            session.commit()
    finally:
        worker.close()

    supervisor = staff.headers("ln_yshj_supervisor")  # province supervisor
    page = hub.get("/api/v1/supervision/access-log", params={"id_number": subject.id_number}, headers=supervisor)
    assert page.status_code == 200, page.text
    entries = page.json()["entries"]
    by_actor = {(e["actor"], e["tracking_no"], e["outcome"]) for e in entries}
    assert ("hub", ok["tracking_no"], "answered") in by_actor
    assert ("hub", down["tracking_no"], "unavailable") in by_actor
    assert ("worker", down["tracking_no"], "answered") in by_actor
    assert "portal" not in {e["actor"] for e in entries}
    assert all(e["registry"] == "population" and e["subject_kind"] == "citizen_id" and e["message_id"]
               and e["purpose"] for e in entries)
    assert page.json()["total"] == len(entries) >= 3

    by_case = hub.get("/api/v1/supervision/access-log", params={"case": down["tracking_no"]},
                      headers=supervisor).json()
    assert {e["actor"] for e in by_case["entries"]} == {"hub", "worker"}
    paged = hub.get("/api/v1/supervision/access-log", params={"limit": 1, "actor": "portal"}, headers=supervisor)
    assert len(paged.json()["entries"]) == 1 and paged.json()["total"] >= 1
    window = hub.get("/api/v1/supervision/access-log", headers=supervisor, params={
        "id_number": subject.id_number, "from": (clock.now() + timedelta(hours=1)).isoformat()})
    assert window.json()["total"] == 0

    # A city supervisor sees the city's cases but not the portal's look-ups (no region).
    city = hub.get("/api/v1/supervision/access-log", params={"id_number": subject.id_number},
                   headers=staff.headers("sy_yshj_supervisor")).json()
    assert {e["actor"] for e in city["entries"]} == {"hub", "worker"}
    assert hub.get("/api/v1/supervision/access-log",
                   headers=staff.headers(officer_of(PHYSICIAN, "intake"))).status_code == 403
    assert hub.get("/api/v1/supervision/access-log", headers=staff.headers("ln_admin")).status_code == 403

    # Nothing personal in clear: not in the log table, not in the verification rows, not in log output.
    with session_factory() as session:
        stored = [
            {c.key: getattr(row, c.key) for c in row.__table__.columns}
            for model in (RegistryAccess, CaseVerification) for row in session.scalars(select(model))
        ]
    text = repr(stored) + caplog.text + "".join(capsys.readouterr())
    assert subject.id_number not in text
    assert subject.name not in repr(stored)
    assert any(row.get("subject_hash") for row in stored)


def test_the_ops_view_is_for_admins_and_supervisors(hub: TestClient, staff: Officers, seed: Seed) -> None:
    apply(hub, PHYSICIAN, someone(seed.normal_person))
    for username in ("ln_admin", "ln_yshj_supervisor"):
        ops = hub.get("/api/v1/admin/registries", headers=staff.headers(username))
        assert ops.status_code == 200, ops.text
    data = ops.json()
    assert data["configured"] is True
    population = next(r for r in data["registries"] if r["name"] == "population")
    assert population["breaker"] == "closed" and population["calls"] == 1 and population["latency_p50_ms"] > 0
    assert population["label"] == "人口信息库"
    assert hub.get("/api/v1/admin/registries",
                   headers=staff.headers(officer_of(PHYSICIAN, "approver"))).status_code == 403


# --- commands and the demo ---------------------------------------------------------------------


def test_hub_registries_reverify_runs_one_round(
        hub: TestClient, seed: Seed, control: MockControl, mocks: RunningMocks, engine: Engine,
        session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch) -> None:
    control.refuse("population")
    receipt = apply(hub, PHYSICIAN, someone(seed.people[3] if seed.people[3].status == "normal"
                                            else seed.normal_person))
    control.recover("population")
    for name, value in (("HUB_DATABASE_URL", engine.url.render_as_string(hide_password=False)),
                        ("HUB_POPULATION_WSDL", mocks.population_wsdl), ("HUB_ENTERPRISE_URL", mocks.enterprise_url),
                        ("HUB_TAX_WSDL", mocks.tax_wsdl), ("HUB_ORGANISATION_URL", mocks.organisation_url),
                        ("HUB_SECRET_KEY", DEV_SECRET), ("HUB_AUDIT_KEY", DEV_AUDIT_KEY)):  # the test app's keys
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["registries", "reverify"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "checks settled" in result.output
    assert outcomes(session_factory, [receipt["tracking_no"]]) == {receipt["tracking_no"]: {"verified"}}


def test_hub_registries_status_prints_the_breakers(hub: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from hub.verification import cli as registry_cli

    answer = hub.get("/api/v1/admin/registries", headers=Officers(hub).headers("ln_admin")).json()
    console = Console(record=True, width=160)
    monkeypatch.setattr(registry_cli, "console", console)
    registry_cli.print_status(answer)
    text = console.export_text()
    assert "population" in text and "closed" in text and "人口信息库" in text


def test_hub_up_starts_the_mocks_only_when_no_registry_is_configured(settings: Settings) -> None:
    from hub.mocks_cli import set_partner_endpoints, start_for_up

    console = Console(record=True, width=200)
    configured = settings.model_copy(update={"population_wsdl": "http://127.0.0.1:9/population?wsdl"})
    assert start_for_up(configured, hub_url="http://127.0.0.1:9", console=console) is None
    fresh = settings.model_copy(update={"mock_registries_base_port": 0})
    running = start_for_up(fresh, hub_url="http://127.0.0.1:9", console=console)
    assert running is not None
    try:
        assert fresh.population_wsdl == running.registries.population_wsdl
        assert fresh.organisation_url == running.registries.organisation_url
    finally:
        running.stop()
        set_partner_endpoints(fresh, dict.fromkeys(running.endpoints()))  # leave the shared database as it was


def test_the_demo_uses_a_registered_person_when_the_hub_has_registries(
        settings: Settings, clock: FixedClock, engine: Engine, registries: Registries, seed: Seed) -> None:
    console = Console(record=True, width=200)
    with serving(create_app(settings, clock=clock, engine=engine, registries=registries)) as base_url:
        code = run_demo(base_url, console)
    output = console.export_text()
    assert code == 0, output
    assert "申请人核验：verified" in output and "免交材料：申请人居民身份证" in output
    assert f"公示：申请人 {seed.normal_person.name[0]}*" in output
    assert "已办结" in output


def test_the_docs_state_how_many_materials_a_registry_check_replaces() -> None:
    items = read_seed("items")
    materials = [m for item in items for m in item["materials"]]
    replaceable = [m for m in materials if m.get("replaceable_by")]
    required = [m for m in replaceable if m["required"]]
    items_with = [item for item in items if any(m.get("replaceable_by") for m in item["materials"])]
    by = {name: sum(m["replaceable_by"] == name for m in replaceable) for name in ("population", "enterprise")}
    people = sum(m["replaceable_by"] == "population" and m["subject"] == "applicant" for m in replaceable)
    root = Path(__file__).parents[2]
    docs = " ".join((root / "docs" / "registries.md").read_text(encoding="utf-8").split())
    readme = " ".join((root / "README.md").read_text(encoding="utf-8").split())
    assert (f"**{len(replaceable)} of the {len(materials)} materials** of the {len(items)} demo items "
            f"({len(items_with)} items), {len(required)} of them required ones: {by['population']} by the "
            f"population registry ({people} applicants' ID cards, {by['population'] - people} legal "
            f"representatives' IDs) and {by['enterprise']} by the enterprise registry") in docs
    assert f"**{len(replaceable)} of the {len(materials)} materials** ({len(required)} of them required)" in readme


def test_registries_can_be_connected_one_at_a_time(
        settings: Settings, clock: FixedClock, engine: Engine, hub: TestClient, staff: Officers, seed: Seed,
        mocks: RunningMocks, session_factory: sessionmaker[Session]) -> None:
    key = "dangerous-goods-road-transport-licence"  # enterprise + legal representative
    population_only = settings.model_copy(update={"population_wsdl": mocks.population_wsdl})
    partial = build_from_settings(population_only)
    assert partial is not None
    try:
        with TestClient(create_app(population_only, clock=clock, engine=engine, registries=partial)) as client:
            receipt = apply(client, key, firm(seed.active_company))
            ops = client.get("/api/v1/admin/registries", headers=Officers(client).headers("ln_admin")).json()
        assert {r["name"]: r["configured"] for r in ops["registries"]} == {
            "population": True, "enterprise": False, "tax": False, "organisation": False}
    finally:
        partial.close()
    number = receipt["tracking_no"]
    assert receipt["verification"] == "not_configured"  # the representative needs the enterprise register too
    assert outcomes(session_factory, [number]) == {number: {"not_configured"}}

    # A worker without the population registry leaves a pending check alone instead of settling it.
    with session_factory() as session:
        session.execute(update(CaseVerification).where(
            CaseVerification.case_id == select(Case.id).where(Case.tracking_no == number).scalar_subquery(),
            CaseVerification.registry_name == "population").values(outcome="pending"))
        session.commit()
    enterprise_only = build_from_settings(settings.model_copy(update={"enterprise_url": mocks.enterprise_url}))
    assert enterprise_only is not None
    try:
        with session_factory() as session:
            reverify_pending(session, registries=enterprise_only, now=clock.now(), limit=1000)
            session.commit()
    finally:
        enterprise_only.close()
    assert outcomes(session_factory, [number]) == {number: {"pending", "not_configured"}}

    # Once every registry is connected, an officer's re-check runs them all.
    again = hub.post(f"/api/v1/cases/{number}/verifications", headers=staff.headers(officer_of(key, "intake")))
    assert again.status_code == 200, again.text
    assert {v["check"]: v["outcome"] for v in again.json()["verifications"]} == {
        "enterprise.applicant": "verified", "population.legal_representative": "verified"}
    assert {"business_licence", "legal_rep_id"}.isdisjoint(again.json()["missing_materials"])
