"""`Idempotency-Key` on `POST /api/v1/applications`: a retry gets the first answer, never a second case."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from hub.app import create_app
from hub.cases.models import Case
from hub.clock import FixedClock
from hub.idempotency.models import IdempotencyKey
from hub.settings import Settings
from tests.servers import serving
from tests.support import example_form, item_code, person

KEY = "physician-practice-registration"
HEADER = "Idempotency-Key"


def application(client: TestClient, **applicant: Any) -> dict[str, Any]:
    return {"item_code": item_code(client, KEY), "applicant": person(**applicant), "form": example_form(KEY)}


def case_count(session: Session) -> int:
    session.rollback()  # a fresh snapshot: the app commits in its own sessions
    return int(session.scalar(select(func.count()).select_from(Case)) or 0)


def test_a_retry_with_the_same_key_gets_the_first_answer_and_no_second_case(client: TestClient,
                                                                           session: Session) -> None:
    body, key = application(client), str(uuid.uuid4())
    before = case_count(session)
    first = client.post("/api/v1/applications", json=body, headers={HEADER: key})
    again = client.post("/api/v1/applications", json=body, headers={HEADER: key})
    assert (first.status_code, again.status_code) == (201, 201), again.text
    assert again.json() == first.json()  # same tracking number, same query code, same everything
    assert again.headers.get("Idempotent-Replayed") == "true" and "Idempotent-Replayed" not in first.headers
    assert case_count(session) == before + 1
    status = client.get(f"/api/v1/applications/{first.json()['tracking_no']}",
                        headers={"X-Query-Code": again.json()["query_code"]})
    assert status.status_code == 200


def test_a_different_key_or_no_key_is_a_new_application(client: TestClient, session: Session) -> None:
    body = application(client)
    before = case_count(session)
    one = client.post("/api/v1/applications", json=body, headers={HEADER: str(uuid.uuid4())})
    two = client.post("/api/v1/applications", json=body, headers={HEADER: str(uuid.uuid4())})
    three = client.post("/api/v1/applications", json=body)
    assert len({r.json()["tracking_no"] for r in (one, two, three)}) == 3
    assert case_count(session) == before + 3


def test_the_same_key_with_a_different_body_is_refused_naming_the_header(client: TestClient,
                                                                         session: Session) -> None:
    key = str(uuid.uuid4())
    assert client.post("/api/v1/applications", json=application(client), headers={HEADER: key}).status_code == 201
    before = case_count(session)
    other = client.post("/api/v1/applications", json=application(client, name="李四"), headers={HEADER: key})
    assert other.status_code == 422
    assert other.headers["content-type"].startswith("application/problem+json")
    problem = other.json()
    assert problem["type"].endswith("/idempotency-key-reused")
    assert [(e["field"], e["rule"]) for e in problem["errors"]] == [(HEADER, "idempotency_key_reused")]
    assert HEADER in problem["detail"]
    assert case_count(session) == before


@pytest.mark.parametrize("value", [b"", b"x" * 256, b"key with spaces", "ключ".encode(), b"a\x01b"])
def test_a_malformed_key_is_a_422_naming_the_header(client: TestClient, value: bytes) -> None:
    response = client.post("/api/v1/applications", json=application(client), headers={HEADER: value})
    assert response.status_code == 422, response.text
    assert HEADER in {e["field"] for e in response.json()["errors"]}


@pytest.mark.parametrize(("value", "rule"), [
    (b"", "string_too_short"), (b"x" * 256, "string_too_long"), (b"key with spaces", "string_pattern_mismatch"),
    ("ключ".encode(), "string_pattern_mismatch"),
])
def test_a_malformed_key_and_an_invalid_body_are_one_422_naming_both_the_header_first(
    client: TestClient, value: bytes, rule: str,
) -> None:
    body = {**application(client), "item_code": "short", "extra": 1}
    response = client.post("/api/v1/applications", json=body, headers={HEADER: value})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    fields = [(e["field"], e["rule"]) for e in problem["errors"]]
    assert fields[0] == (HEADER, rule) and problem["code"] == rule
    assert ("item_code", "string_too_short") in fields and ("extra", "extra_forbidden") in fields
    assert problem["detail"].startswith(f"{HEADER}: ")


def test_a_body_that_is_not_json_is_refused_alone_whatever_the_key(client: TestClient) -> None:
    response = client.post("/api/v1/applications", content=b"{not json",
                           headers={HEADER: "key with spaces", "Content-Type": "application/json"})
    assert response.status_code == 422
    assert [e["rule"] for e in response.json()["errors"]] == ["json_invalid"]


def test_the_first_of_two_keys_counts(client: TestClient) -> None:
    body = {**application(client), "item_code": "short"}
    first_bad = client.post("/api/v1/applications", json=body, headers=[(HEADER, ""), (HEADER, "fine")])
    first_fine = client.post("/api/v1/applications", json=body, headers=[(HEADER, "fine"), (HEADER, "")])
    assert HEADER in {e["field"] for e in first_bad.json()["errors"]}
    assert HEADER not in {e["field"] for e in first_fine.json()["errors"]}


def test_the_stored_answer_keeps_no_secret_in_the_clear(client: TestClient, session: Session) -> None:
    key = f"retry-{uuid.uuid4()}"
    receipt = client.post("/api/v1/applications", json=application(client), headers={HEADER: key}).json()
    session.rollback()
    case_id = session.scalar(select(Case.id).where(Case.tracking_no == receipt["tracking_no"]))
    row = session.scalars(select(IdempotencyKey).where(IdempotencyKey.case_id == case_id)).one()
    stored = " ".join(str(getattr(row, c.key)) for c in IdempotencyKey.__table__.columns)
    for secret in (receipt["query_code"], receipt["tracking_no"], key, "张三丰"):
        assert secret not in stored
    assert row.status_code == 201 and row.expires_at > row.created_at


@pytest.fixture
def short_lived(settings: Settings, clock: FixedClock, engine: Engine) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"idempotency_key_ttl_s": 600}), clock=clock, engine=engine)
    with TestClient(app) as client:
        yield client


def test_an_expired_key_is_forgotten(short_lived: TestClient, clock: FixedClock, session: Session) -> None:
    body, key = application(short_lived), str(uuid.uuid4())
    first = short_lived.post("/api/v1/applications", json=body, headers={HEADER: key})
    clock.advance(seconds=300)
    assert short_lived.post("/api/v1/applications", json=body, headers={HEADER: key}).json() == first.json()
    clock.advance(seconds=301)  # the key has lived its 600 s
    later = short_lived.post("/api/v1/applications", json=body, headers={HEADER: key})
    assert later.status_code == 201 and "Idempotent-Replayed" not in later.headers
    assert later.json()["tracking_no"] != first.json()["tracking_no"]
    session.rollback()
    expired = select(func.count()).select_from(IdempotencyKey).where(IdempotencyKey.expires_at <= clock.now())
    assert session.scalar(expired) == 0  # the first answer, with its query code, is gone


def test_concurrent_duplicates_make_one_case(app: Any, client: TestClient, session: Session) -> None:
    body, key, copies = application(client), str(uuid.uuid4()), 6
    before = case_count(session)
    answers: list[httpx.Response] = []
    start = threading.Barrier(copies)

    def send(url: str) -> None:
        with httpx.Client(timeout=60, trust_env=False) as http:
            start.wait()
            answers.append(http.post(f"{url}/api/v1/applications", json=body, headers={HEADER: key}))

    with serving(app) as url:
        threads = [threading.Thread(target=send, args=(url,)) for _ in range(copies)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert [a.status_code for a in answers] == [201] * copies, [a.text for a in answers]
    assert len({a.json()["tracking_no"] for a in answers}) == 1
    assert len({a.json()["query_code"] for a in answers}) == 1
    assert sum(1 for a in answers if "Idempotent-Replayed" not in a.headers) == 1
    assert case_count(session) == before + 1


def test_the_header_is_documented_in_the_openapi_document(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/api/v1/applications"]["post"]
    [parameter] = [p for p in operation["parameters"] if p["name"] == HEADER]
    assert parameter["in"] == "header" and parameter["required"] is False
    assert "same tracking number" in parameter["description"] and "422" in parameter["description"]


def test_a_stored_answer_edited_in_the_database_is_never_replayed(client: TestClient, engine: Engine,
                                                                  session: Session) -> None:
    body, key = application(client), str(uuid.uuid4())
    receipt = client.post("/api/v1/applications", json=body, headers={HEADER: key}).json()
    with engine.begin() as connection:
        case_id = connection.scalar(select(Case.id).where(Case.tracking_no == receipt["tracking_no"]))
        sealed = connection.scalar(select(IdempotencyKey.response).where(IdempotencyKey.case_id == case_id))
        flipped = sealed[:30] + ("A" if sealed[30] != "A" else "B") + sealed[31:]
        connection.execute(IdempotencyKey.__table__.update().where(IdempotencyKey.case_id == case_id)
                           .values(response=flipped))
    again = client.post("/api/v1/applications", json=body, headers={HEADER: key})
    assert again.status_code == 409, again.text
    assert again.json()["type"].endswith("/idempotency-answer-unavailable")
