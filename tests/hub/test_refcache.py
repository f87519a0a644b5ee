"""Reference data cached per process (hub/refcache.py): a repeated submission reads no catalogue, partner,
region or calendar row; a change committed anywhere — this process, another engine, another process — is
served to the next request (at once here; after the NOTIFY on PostgreSQL, after the TTL on SQLite); a
rolled-back change neither invalidates nor poisons what is cached."""

from __future__ import annotations

import copy
import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, event, inspect, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from hub import refcache
from hub.calendar.service import load_calendar, load_notice
from hub.catalog import service as catalog
from hub.catalog.schemas import ItemWrite
from hub.db import make_engine, make_session_factory, unit_of_work
from hub.exchange import partners
from hub.exchange.models import Partner
from hub.exchange.partners import set_endpoint
from hub.org.models import Department, Region
from hub.org.service import is_within
from hub.seed.service import read_form, read_seed
from hub.settings import DEV_AUDIT_KEY
from tests.conftest import START
from tests.e2e.cli_support import ROOT, hub_executable, operator_env, run_process
from tests.support import PROCESS_KEYS, company, example_form, person, sent_statements, wait_until

SUBMITTED = "physician-practice-registration"  # 沈阳市卫健委 (210100-007): a legacy partner, national reporting
TEST_ITEM_KEY = "refcache-test-licence"
REFERENCE_READ = re.compile(r"\bFROM\s+\"?(items|departments|regions|partners|calendar_overrides)\b", re.I)


def item_body(**changes: Any) -> dict[str, Any]:
    """A test item of its own (a county item of 和平区, type 01: outside every filter test_catalog pins)."""
    row = copy.deepcopy(next(i for i in read_seed("items") if i["key"] == "food-business-licence"))
    row["form_schema"] = read_form(row.pop("form"))
    # Named and based apart from the seeded items: it stays in the shared database, where test_catalog's
    # searches (e.g. "食品") must still find only the seeded catalogue.
    row.update(key=TEST_ITEM_KEY, main_item="951", name="经营许可（缓存测试）", legal_basis="《缓存测试依据》")
    row.update(changes)
    return row


def application(code: str, key: str = SUBMITTED) -> dict[str, Any]:
    row = next(i for i in read_seed("items") if i["key"] == key)
    applicant = person() if "1" in row["applicant_types"] else company()
    return {"item_code": code, "applicant": applicant, "form": example_form(key)}


def notice_for(year: int) -> dict[str, Any]:
    """A holiday notice for a year no other test loads (the database is shared by the whole run)."""
    return {"year": year, "source": "测试通知", "workdays": [],
            "holidays": [{"name": "国庆节", "from": f"{year}-10-01", "to": f"{year}-10-07"}]}


def code_of(session_factory: sessionmaker[Session], key: str) -> str:
    from hub.catalog.models import Item

    with session_factory() as session:
        return str(session.scalar(select(Item.code).where(Item.key == key)))


@contextmanager
def statements(engine: Engine) -> Iterator[list[str]]:
    """Every SQL statement sent meanwhile on the engine's connections, counted at the driver."""
    with sent_statements(engine) as seen:
        yield seen


def reference_reads(seen: list[str]) -> list[str]:
    return [s for s in seen if s.lstrip().upper().startswith("SELECT") and REFERENCE_READ.search(s)]


@pytest.fixture
def long_ttl(backend: str, app: Any, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cached values trusted for an hour (after the app applied its settings): only invalidation refreshes.
    On PostgreSQL, listening first: a listener that (re)connects starts every cache afresh."""
    monkeypatch.setattr(refcache, "_ttl_s", 3600.0)
    if backend == "postgresql":
        assert wait_until(lambda: refcache.listening(engine))


@pytest.fixture
def other_process(backend: str, engine: Engine, app: Any,
                  monkeypatch: pytest.MonkeyPatch) -> Iterator[sessionmaker[Session]]:
    """Another engine on the same database, as if in another process: this process's own after-commit
    invalidation is switched off, so only what crosses processes remains — NOTIFY on PostgreSQL (cached
    values are otherwise trusted for an hour), the TTL on SQLite (made short here)."""
    monkeypatch.setattr(refcache, "invalidate", lambda *_: None)
    monkeypatch.setattr(refcache, "_ttl_s", 0.2 if backend == "sqlite" else 3600.0)
    if backend == "postgresql":
        assert wait_until(lambda: refcache.listening(engine))
    other = make_engine(engine.url.render_as_string(hide_password=False), **(
        {"pool_size": 1} if backend == "postgresql" else {}))
    try:
        yield make_session_factory(other)
    finally:
        other.dispose()


# --- statements -------------------------------------------------------------------------------------


def test_a_repeated_submission_reads_no_item_partner_region_or_calendar_row(
    client: TestClient, engine: Engine, session_factory: sessionmaker[Session], long_ttl: None
) -> None:
    code = code_of(session_factory, SUBMITTED)
    first = client.post("/api/v1/applications", json=application(code))
    assert first.status_code == 201, first.text
    with statements(engine) as seen:
        again = client.post("/api/v1/applications", json=application(code))
    assert again.status_code == 201, again.text
    # The listener saw the submission (one WITH … INSERT statement on PostgreSQL, plain INSERTs on SQLite).
    assert any("INSERT INTO" in s.upper() for s in seen)
    assert reference_reads(seen) == []


def test_a_partner_record_reads_no_partner_item_or_region_row_once_cached(
    client: TestClient, engine: Engine, session_factory: sessionmaker[Session], long_ttl: None
) -> None:
    from tests.support import PARTNER_SECRET, case_record, envelope

    code = code_of(session_factory, "food-business-licence")
    for _ in range(2):
        record = case_record(code, external_id=f"refcache-{uuid.uuid4().hex[:12]}", region="210102")
        with statements(engine) as seen:
            response = client.post("/api/v1/exchange/records", json={"records": [envelope(record, region="210102")]},
                                   auth=("shenyang", PARTNER_SECRET))
        assert response.status_code == 200, response.text
        assert response.json()["results"][0]["status"] == "applied", response.text
    assert [s for s in reference_reads(seen) if re.search(r"FROM\s+\"?(items|partners|regions)\b", s)] == []


# --- this process: at once ----------------------------------------------------------------------------


def test_an_item_written_through_the_api_is_served_and_validated_at_once(
    client: TestClient, officers: Any, long_ttl: None
) -> None:
    admin = officers.headers("ln_admin")
    created = client.post("/api/v1/items", json=item_body(), headers=admin)
    assert created.status_code == 201, created.text
    code = created.json()["code"]
    assert client.get(f"/api/v1/items/{code}").json()["name"] == "经营许可（缓存测试）"  # cached now
    schema = item_body()["form_schema"]
    schema = {**schema, "properties": {**schema["properties"], "refcache_extra": {"type": "string", "title": "附加"}},
              "required": [*schema.get("required", []), "refcache_extra"]}
    renamed = item_body(name="经营许可（已改名）", form_schema=schema)
    updated = client.post("/api/v1/items", json=renamed, headers=admin)
    assert updated.status_code == 201, updated.text

    assert client.get(f"/api/v1/items/{code}").json()["name"] == "经营许可（已改名）"
    assert "refcache_extra" in client.get(f"/api/v1/items/{code}/form-schema").json()["required"]
    body = {"item_code": code, "applicant": person(), "form": example_form("food-business-licence")}
    refused = client.post("/api/v1/applications", json=body)
    assert refused.status_code == 422, refused.text  # validated by the new version's schema, not the cached one
    assert "form.refcache_extra" in {e["field"] for e in refused.json()["errors"]}


def test_a_loaded_notice_moves_deadlines_in_this_process_at_once(
    client: TestClient, officers: Any, session_factory: sessionmaker[Session], long_ttl: None
) -> None:
    assert client.get("/api/v1/calendar/2036").json()["coverage"] == "fallback"
    notice = notice_for(2036)
    loaded = client.post("/api/v1/calendar/notices", json=notice, headers=officers.headers("ln_admin"))
    assert loaded.status_code == 201, loaded.text
    assert client.get("/api/v1/calendar/2036").json()["coverage"] == "override"
    with session_factory() as session:
        assert load_calendar(session).coverage(2036) == "override"


def test_a_cached_item_is_the_sessions_own_instance_when_it_holds_one(
    session_factory: sessionmaker[Session], long_ttl: None
) -> None:
    from hub.catalog.models import Item

    code = code_of(session_factory, SUBMITTED)
    with session_factory() as session:
        catalog.get_item(session, code)  # cached
    with session_factory() as session:
        loaded = session.scalars(select(Item).where(Item.code == code)).one()
        loaded.name = "未刷新的改动"  # the session's view wins over the cache, as with session.get
        assert catalog.get_item(session, code) is loaded
        session.rollback()
    with session_factory() as session:
        attached = catalog.get_item(session, code)
        assert attached in session and attached not in session.dirty and attached.department in session
        assert attached.department.key == "210100007" and attached.department.region.code == "210100"
        assert attached.name != "未刷新的改动"


def test_a_submissions_item_is_one_shared_detached_instance_that_no_session_ever_attaches(
    client: TestClient, officers: Any, session_factory: sessionmaker[Session], long_ttl: None
) -> None:
    """The values a submission reads (its item, the item's department and region) are one instance per
    process, reused by every request while the cache holds them — so none may ever join a session: an
    object belongs to one session at a time, and another thread's request holds the same one."""
    from tests.hub.test_window import DALIAN_WINDOW, URL, paper_application

    code = code_of(session_factory, SUBMITTED)
    with session_factory() as session:
        shared = catalog.get_item(session, code, attach=False)
    graph = [shared, shared.department, shared.department.region]
    assert all(refcache.is_shared(instance) for instance in graph)
    attached: list[Any] = []

    def watch(_session: Session, instance: Any) -> None:
        if refcache.is_shared(instance):
            attached.append(instance)

    event.listen(Session, "before_attach", watch)
    try:
        for _ in range(2):
            online = client.post("/api/v1/applications", json=application(code))
            assert online.status_code == 201, online.text
        # Registered at another city's window (跨域通办): the forwarded path reads the item's department too.
        window = client.post(URL, json=paper_application(client), headers=officers.headers(DALIAN_WINDOW))
        assert window.status_code == 201, window.text
    finally:
        event.remove(Session, "before_attach", watch)
    assert attached == []
    with session_factory() as session:
        assert catalog.get_item(session, code, attach=False) is shared  # reused, not rebuilt per request
    assert all(inspect(instance).detached for instance in graph)


# --- rolled back: nothing changes -----------------------------------------------------------------------


def test_a_rolled_back_item_write_neither_invalidates_nor_poisons_the_cache(
    client: TestClient, officers: Any, engine: Engine, session_factory: sessionmaker[Session], long_ttl: None
) -> None:
    created = client.post("/api/v1/items", json=item_body(), headers=officers.headers("ln_admin"))
    assert created.status_code == 201, created.text
    code = created.json()["code"]
    name = client.get(f"/api/v1/items/{code}").json()["name"]

    with session_factory() as writer:
        catalog.write_item(writer, data=ItemWrite.model_validate(item_body(name="从未提交的名称")), now=START)
        assert catalog.get_item(writer, code).name == "从未提交的名称"  # its own transaction sees its write
        with session_factory() as reader:  # read while the write is pending: must not be cached for others
            assert catalog.get_item(reader, code).name == name
        writer.rollback()

    with statements(engine) as seen:
        assert client.get(f"/api/v1/items/{code}").json()["name"] == name
        with session_factory() as session:
            assert catalog.get_item(session, code).name == name
    assert [s for s in seen if re.search(r"FROM\s+\"?items\b", s)] == []  # still cached: not invalidated


def test_an_unflushed_partner_change_never_reaches_the_cache(
    session_factory: sessionmaker[Session], long_ttl: None
) -> None:
    with session_factory() as writer:
        partner = writer.get(Partner, "shenyang")
        assert partner is not None
        partner.active = False  # not flushed: the directory is read without autoflush, as committed
        partners.directory(writer)
        writer.rollback()
    with session_factory() as session:
        found = partners.find_partner(session, "shenyang")
        assert found is not None and found.active


# --- another engine, as another process ------------------------------------------------------------------


def test_an_item_edit_committed_elsewhere_is_served_to_the_next_requests(
    client: TestClient, officers: Any, other_process: sessionmaker[Session]
) -> None:
    created = client.post("/api/v1/items", json=item_body(name="经营许可（缓存测试）"),
                          headers=officers.headers("ln_admin"))
    assert created.status_code == 201, created.text
    code = created.json()["code"]
    assert client.get(f"/api/v1/items/{code}").json()["name"] == "经营许可（缓存测试）"

    with unit_of_work(other_process) as session:
        catalog.write_item(session, data=ItemWrite.model_validate(item_body(name="另一进程改的名称")), now=START)

    assert wait_until(lambda: client.get(f"/api/v1/items/{code}").json()["name"] == "另一进程改的名称")
    assert {client.get(f"/api/v1/items/{code}").json()["name"] for _ in range(5)} == {"另一进程改的名称"}


def test_a_notice_loaded_elsewhere_reaches_this_process(
    client: TestClient, other_process: sessionmaker[Session]
) -> None:
    assert client.get("/api/v1/calendar/2037").json()["coverage"] == "fallback"
    notice = notice_for(2037)
    with unit_of_work(other_process) as session:
        load_notice(session, notice=notice, now=START, audit_key=DEV_AUDIT_KEY)
    assert wait_until(lambda: client.get("/api/v1/calendar/2037").json()["coverage"] == "override")


def test_a_partner_endpoint_set_elsewhere_changes_who_a_new_case_is_owed_to(
    session_factory: sessionmaker[Session], other_process: sessionmaker[Session]
) -> None:
    def legacy_of(department_id: int) -> str | None:
        with session_factory() as session:
            return partners.directory(session).legacy_by_department.get(department_id)

    with session_factory() as session:
        department = session.scalars(select(Department).where(
            Department.region_code == "210100", Department.code == "007")).one()
    assert legacy_of(department.id) is None
    try:
        with unit_of_work(other_process) as session:
            set_endpoint(session, code="legacy-sy-wj", endpoint="http://127.0.0.1:9/legacy?wsdl")
        assert wait_until(lambda: legacy_of(department.id) == "legacy-sy-wj")
    finally:
        with unit_of_work(other_process) as session:
            set_endpoint(session, code="legacy-sy-wj", endpoint=None)
    assert wait_until(lambda: legacy_of(department.id) is None)


def test_a_region_added_elsewhere_counts_for_is_within(
    session_factory: sessionmaker[Session], other_process: sessionmaker[Session]
) -> None:
    def within() -> bool:
        with session_factory() as session:
            return is_within(session, region_code="210198", ancestor="210100")

    assert not within()
    try:
        with unit_of_work(other_process) as session:
            session.add(Region(code="210198", name="缓存测试区", level="county", parent_code="210100"))
        assert wait_until(within)
    finally:
        with unit_of_work(other_process) as session:
            session.execute(delete(Region).where(Region.code == "210198"))
    assert wait_until(lambda: not within())


# --- a real second process ---------------------------------------------------------------------------------


def test_a_notice_loaded_by_the_cli_in_another_process_reaches_the_running_api(
    backend: str, client: TestClient, engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On PostgreSQL only the NOTIFY can tell this process (cached values are trusted for an hour otherwise).
    monkeypatch.setattr(refcache, "_ttl_s", 0.2 if backend == "sqlite" else 3600.0)
    if backend == "postgresql":
        assert wait_until(lambda: refcache.listening(engine))
    assert client.get("/api/v1/calendar/2038").json()["coverage"] == "fallback"
    notice = tmp_path / "notice.json"
    notice.write_text(json.dumps(notice_for(2038)), encoding="utf-8")
    env = operator_env(tmp_path, HUB_DATABASE_URL=engine.url.render_as_string(hide_password=False), **PROCESS_KEYS)
    ran = run_process([*hub_executable(), "calendar", "load", str(notice)], env, cwd=ROOT)
    assert ran.code == 0, str(ran)
    assert wait_until(lambda: client.get("/api/v1/calendar/2038").json()["coverage"] == "override")


# --- SQLite -------------------------------------------------------------------------------------------------


def test_on_sqlite_another_process_is_trusted_for_the_ttl_then_read_again(
    backend: str, session_factory: sessionmaker[Session], other_process: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    if backend != "sqlite":
        pytest.skip("PostgreSQL processes hear of changes by NOTIFY; the TTL is SQLite's")
    monkeypatch.setattr(refcache, "_ttl_s", 3600.0)
    with session_factory() as session:
        cached = load_calendar(session)
    with unit_of_work(other_process) as session:
        load_notice(session, notice=notice_for(2039), now=START, audit_key=DEV_AUDIT_KEY)
    with session_factory() as session:
        assert load_calendar(session) is cached  # no NOTIFY on SQLite: the documented TTL bounds this
    monkeypatch.setattr(refcache, "_ttl_s", 0.0)
    with session_factory() as session:
        assert load_calendar(session).coverage(2039) == "override"
