"""The national-results and legacy-department adapters (zeep) against their mocks over loopback sockets:
answers, idempotent repeats, the fault switches, timeouts, retries only for retryable failures, breaker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from adapters.errors import CircuitOpen, MalformedResponse, RegistryRejected, RegistryTimeout, RegistryUnavailable
from adapters.legacy import LegacyApplicant, LegacyCase, LegacyDepartment, SoapLegacyDepartment
from adapters.national import NationalResult, NationalResults, SoapNationalResults
from adapters.outbound import OutboundContext
from adapters.resilience import ResiliencePolicy
from mocks.legacy_department import LegacyMock, start_legacy
from mocks.national import NationalMock, start_national
from tests.adapters.conftest import TEST_POLICY, FakeClock

CASE = "210100202603110000012"


@pytest.fixture(scope="module")
def national_mock() -> Iterator[NationalMock]:
    mock = start_national()
    yield mock
    mock.stop()


@pytest.fixture
def national(national_mock: NationalMock) -> Iterator[NationalMock]:
    national_mock.server.recover()
    national_mock.server.faults.reset_counts()
    national_mock.state.clear()
    yield national_mock
    national_mock.server.recover()


def adapter(mock: NationalMock, clock: FakeClock, policy: ResiliencePolicy = TEST_POLICY) -> SoapNationalResults:
    return SoapNationalResults("national-results", mock.wsdl_url, policy, clock=clock, sleep=lambda _: None)


def result(**overrides: object) -> NationalResult:
    values: dict[str, object] = dict(
        message_id=str(uuid.uuid4()), case_number=CASE, item_national_code="000114016000",
        item_code="210100007010160005", item_name="医师执业注册", region="210100",
        department_credit_code="11210100035341606A", department_name="沈阳市卫生健康委员会", applicant_type="1",
        result="granted", completed_at=datetime(2026, 3, 16, 2, 0, tzinfo=UTC), accepted_on=date(2026, 3, 11),
    )
    values.update(overrides)
    return NationalResult(**values)  # type: ignore[arg-type]


def context(report: NationalResult) -> OutboundContext:
    return OutboundContext(report.message_id, on_behalf_of="210100007", case=report.case_number)


def test_a_result_is_reported_once_even_when_repeated(national: NationalMock, clock: FakeClock) -> None:
    client = adapter(national, clock)
    assert isinstance(client, NationalResults)
    report = result()
    first = client.submit_result(report, context=context(report))
    again = client.submit_result(report, context=context(report))
    assert first.id.startswith("NR-") and not first.duplicate
    assert (again.id, again.duplicate) == (first.id, True)
    [got] = national.received()
    assert (got["caseNumber"], got["completedAt"], got["acceptedOn"]) == (CASE, "2026-03-16T02:00:00Z", "2026-03-11")
    assert got["messageId"] == report.message_id
    assert got["exchange"] == {"client": "ln-approval-hub", "service": "national-results.SubmitResult",
                               "onBehalfOf": "210100007", "case": CASE}
    assert "certificateName" not in got  # optional elements are left out, not sent empty


@pytest.mark.parametrize("switches", [{"error": "soap_fault"}, {"error": "http_5xx", "error_status": 500},
                                      {"error": "http_5xx", "error_status": 503}])
def test_server_failures_are_retried_then_reported_unavailable(national: NationalMock, clock: FakeClock,
                                                               switches: dict[str, object]) -> None:
    national.server.faults.update({"error_rate": 1.0, **switches})
    report = result()
    with pytest.raises(RegistryUnavailable):
        adapter(national, clock).submit_result(report, context=context(report))
    assert national.server.faults.requests_total() == TEST_POLICY.attempts


def test_a_burst_of_failures_is_ridden_out_by_the_quick_retries(national: NationalMock, clock: FakeClock) -> None:
    national.server.faults.update({"fail_next": TEST_POLICY.attempts - 1})
    report = result()
    assert not adapter(national, clock).submit_result(report, context=context(report)).duplicate
    assert [r["caseNumber"] for r in national.received()] == [CASE]


def test_refused_connections_and_recovery(national: NationalMock, clock: FakeClock) -> None:
    client = adapter(national, clock)
    warm = result()
    client.submit_result(warm, context=context(warm))  # WSDL loaded while the mock listens
    national.server.refuse()
    report = result()
    with pytest.raises(RegistryUnavailable) as caught:
        client.submit_result(report, context=context(report))
    assert "connection failed" in caught.value.message
    national.server.recover()
    assert client.submit_result(report, context=context(report)).id


def test_a_slow_answer_times_out(national: NationalMock, clock: FakeClock) -> None:
    national.server.faults.update({"latency_ms": int(TEST_POLICY.timeout_s * 1000) + 400})
    client = adapter(national, clock, ResiliencePolicy(timeout_s=TEST_POLICY.timeout_s, attempts=1))
    report = result()
    with pytest.raises(RegistryTimeout):
        client.submit_result(report, context=context(report))


def test_a_request_the_national_system_rejects_is_not_retried(national: NationalMock, clock: FakeClock) -> None:
    report = result(region="21010")  # five digits: the XSD wants six
    with pytest.raises(RegistryRejected) as caught:
        adapter(national, clock).submit_result(report, context=context(report))
    assert "Client fault" in caught.value.message and "INVALID_REQUEST" in caught.value.message
    assert national.received() == []


def test_an_answer_outside_the_contract_is_malformed(national: NationalMock, clock: FakeClock) -> None:
    national.server.faults.update({"malformed": "schema"})
    report = result()
    with pytest.raises(MalformedResponse):
        adapter(national, clock).submit_result(report, context=context(report))


def test_the_breaker_opens_fails_fast_and_lets_a_trial_through_later(national: NationalMock,
                                                                     clock: FakeClock) -> None:
    policy = ResiliencePolicy(timeout_s=1.0, attempts=1, breaker_failures=2, breaker_reset_s=30.0)
    client = adapter(national, clock, policy)
    national.server.faults.update({"error_rate": 1.0})
    for _ in range(2):
        report = result()
        with pytest.raises(RegistryUnavailable):
            client.submit_result(report, context=context(report))
    report = result()
    with pytest.raises(CircuitOpen):
        client.submit_result(report, context=context(report))
    assert national.server.faults.requests_total() == 2
    assert client.status()["breaker"] == "open"
    national.server.recover()
    clock.advance(31)
    assert client.submit_result(report, context=context(report)).id
    assert client.status()["breaker"] == "closed"


# --- legacy department ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def legacy_mock() -> Iterator[LegacyMock]:
    mock = start_legacy(hub_url=None)
    yield mock
    mock.stop()


def test_a_new_case_is_pushed_to_the_legacy_system(legacy_mock: LegacyMock, clock: FakeClock) -> None:
    client = SoapLegacyDepartment("legacy-sy-wj", legacy_mock.wsdl_url, TEST_POLICY, clock=clock,
                                  sleep=lambda _: None)
    assert isinstance(client, LegacyDepartment)
    case = LegacyCase(
        message_id=str(uuid.uuid4()), tracking_no=CASE, item_code="210100007010160005", item_name="医师执业注册",
        national_code="000114016000", region="210100", department="210100007", department_name="沈阳市卫生健康委员会",
        channel="online", state="submitted", submitted_at=datetime(2026, 3, 11, 2, 0, tzinfo=UTC),
        promised_limit_days=5, statutory_limit_days=20, intake_deadline=date(2026, 3, 18),
        applicant=LegacyApplicant(type="1", name="张三丰", id_type="citizen_id", id_number="210102199003071233",
                                  phone="13812345678"),
        form_json='{"qualification_no": "Q123"}',
    )
    context = OutboundContext(case.message_id, on_behalf_of="ln-approval-hub", case=CASE)
    first = client.receive_case(case, context=context)
    assert client.receive_case(case, context=context) == type(first)(first.id, True)
    [pushed] = [c for c in legacy_mock.received() if c["messageId"] == case.message_id]
    assert pushed["applicant"]["idNumber"] == "210102199003071233" and pushed["formJson"] == case.form_json
