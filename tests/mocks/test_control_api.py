"""The control API: every fault switch is visible, takes effect over real sockets, and recovery clears it."""

from __future__ import annotations

import time

import httpx
import pytest

from mocks.registries.seed import Seed
from mocks.runner import SPECS, RunningMocks
from tests.mocks.support import HTTP, MockControl


def enterprise(mocks: RunningMocks, seed: Seed) -> httpx.Response:
    return HTTP.get(f"{mocks.enterprise_url}/api/enterprises/{seed.active_company.credit_code}")


def enterprise_on_new_connection(mocks: RunningMocks, seed: Seed) -> httpx.Response:
    # A pooled keep-alive connection closed by the mock may surface as a reset instead; a new
    # connection shows what the port itself does.
    return httpx.get(f"{mocks.enterprise_url}/api/enterprises/{seed.active_company.credit_code}", trust_env=False)


def tax(mocks: RunningMocks, seed: Seed) -> httpx.Response:
    body = (f'<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:t="urn:ln:registry:tax:v1">'
            f"<s:Body><t:GetTaxRegistration><t:creditCode>{seed.active_company.credit_code}</t:creditCode>"
            f"</t:GetTaxRegistration></s:Body></s:Envelope>")
    return HTTP.post(mocks.endpoint("tax").service_url, content=body, headers={"Content-Type": "text/xml"})


def test_state_reports_defaults_counts_and_exchange_identifiers(control: MockControl, mocks: RunningMocks,
                                                                seed: Seed) -> None:
    HTTP.get(f"{mocks.enterprise_url}/api/enterprises/{seed.active_company.credit_code}",
             headers={"X-Message-Id": "m-1", "X-Client": "tester", "X-Case": "CASE-1",
                      "X-Purpose": "%E6%B5%8B%E8%AF%95"})
    state = control.state("enterprise")
    assert state["listening"] is True
    assert state["faults"] == {"latency_ms": 0, "error_rate": 0.0, "error": "http_5xx", "error_status": 503,
                               "malformed": None, "fail_next": 0}
    assert state["requests"] == {"total": 1, "by_operation": {"lookup": 1}}
    assert state["recent"][-1]["message_id"] == "m-1"
    assert state["recent"][-1]["case"] == "CASE-1"
    assert state["recent"][-1]["purpose"] == "测试"


def test_own_port_control_matches_the_control_plane(control: MockControl, mocks: RunningMocks) -> None:
    HTTP.post(f"{mocks.endpoint('tax').control_url}/faults", json={"latency_ms": 5})
    assert control.state("tax")["faults"]["latency_ms"] == 5
    assert HTTP.get(mocks.endpoint("tax").control_url).json()["faults"]["latency_ms"] == 5


def test_added_latency_delays_the_answer(control: MockControl, mocks: RunningMocks, seed: Seed) -> None:
    control.set_faults("enterprise", latency_ms=300)
    started = time.perf_counter()
    assert enterprise(mocks, seed).status_code == 200
    assert time.perf_counter() - started >= 0.3


def test_error_rate_one_fails_every_request_with_a_5xx_problem(control: MockControl, mocks: RunningMocks,
                                                               seed: Seed) -> None:
    control.set_faults("enterprise", error_rate=1, error_status=502)
    responses = [enterprise(mocks, seed) for _ in range(3)]
    assert [r.status_code for r in responses] == [502, 502, 502]
    assert responses[0].headers["content-type"] == "application/problem+json"
    assert control.state("enterprise")["injected"]["http_5xx"] == 3


def test_partial_error_rate_fails_some_but_not_all_requests(control: MockControl, mocks: RunningMocks,
                                                            seed: Seed) -> None:
    control.set_faults("enterprise", error_rate=0.5)
    codes = [enterprise(mocks, seed).status_code for _ in range(40)]
    assert 5 <= codes.count(503) <= 35
    assert codes.count(200) + codes.count(503) == 40


def test_fail_next_fails_exactly_that_many_requests(control: MockControl, mocks: RunningMocks, seed: Seed) -> None:
    control.set_faults("enterprise", fail_next=2)
    assert [enterprise(mocks, seed).status_code for _ in range(3)] == [503, 503, 200]
    assert control.state("enterprise")["faults"]["fail_next"] == 0


def test_soap_mock_fails_with_a_server_fault_or_a_plain_5xx(control: MockControl, mocks: RunningMocks,
                                                            seed: Seed) -> None:
    control.set_faults("tax", error_rate=1)
    fault = tax(mocks, seed)
    assert fault.status_code == 500
    assert "<faultcode>soap:Server</faultcode>" in fault.text
    control.set_faults("tax", error="http_5xx")
    plain = tax(mocks, seed)
    assert plain.status_code == 503
    assert plain.headers["content-type"].startswith("text/html")


def test_soap_fault_switch_is_refused_on_a_rest_mock(control: MockControl) -> None:
    response = control.http.post("/enterprise/faults", json={"error": "soap_fault"})
    assert response.status_code == 422


@pytest.mark.parametrize("body", [{"error_rate": 1.5}, {"latency_ms": -1}, {"malformed": "garbage"}, {"bogus": 1}])
def test_invalid_switch_values_are_rejected(control: MockControl, body: dict[str, object]) -> None:
    assert control.http.post("/enterprise/faults", json=body).status_code == 422


def test_malformed_syntax_answers_invalid_json_and_non_xml(control: MockControl, mocks: RunningMocks,
                                                           seed: Seed) -> None:
    control.set_faults("enterprise", malformed="invalid_json")
    control.set_faults("tax", malformed="non_xml")
    rest = enterprise(mocks, seed)
    assert rest.status_code == 200
    with pytest.raises(ValueError):
        rest.json()
    soap = tax(mocks, seed)
    assert soap.status_code == 200
    assert not soap.text.lstrip().startswith("<")


def test_malformed_schema_answers_parse_but_break_the_contract(control: MockControl, mocks: RunningMocks,
                                                               seed: Seed) -> None:
    control.set_faults("enterprise", malformed="schema_mismatch")
    body = enterprise(mocks, seed).json()
    assert isinstance(body["name"], int)
    assert "established_on" not in body
    control.set_faults("tax", malformed="schema")
    assert "unexpectedField" in tax(mocks, seed).text


def test_refuse_closes_the_port_and_the_control_plane_brings_it_back(control: MockControl, mocks: RunningMocks,
                                                                    seed: Seed) -> None:
    assert control.refuse("enterprise")["listening"] is False
    with pytest.raises(httpx.ConnectError):
        enterprise_on_new_connection(mocks, seed)
    assert control.state("enterprise")["listening"] is False
    assert control.recover("enterprise")["listening"] is True
    assert enterprise(mocks, seed).status_code == 200


def test_refuse_through_the_mocks_own_port_takes_effect_before_the_answer(control: MockControl,
                                                                          mocks: RunningMocks, seed: Seed) -> None:
    response = HTTP.post(f"{mocks.endpoint('enterprise').control_url}/refuse")
    assert response.status_code == 202
    with pytest.raises(httpx.ConnectError):
        enterprise_on_new_connection(mocks, seed)


def test_refuse_for_a_while_recovers_by_itself(control: MockControl, mocks: RunningMocks, seed: Seed) -> None:
    control.refuse("enterprise", for_ms=1)
    deadline = time.monotonic() + 5
    while not control.state("enterprise")["listening"]:  # bounded polling of a server starting
        assert time.monotonic() < deadline, "mock did not come back"
        time.sleep(0.01)
    assert enterprise(mocks, seed).status_code == 200


def test_recover_clears_every_fault(control: MockControl, mocks: RunningMocks, seed: Seed) -> None:
    control.set_faults("enterprise", latency_ms=10, error_rate=1, malformed="schema")
    state = control.recover("enterprise")
    assert state["faults"] == {"latency_ms": 0, "error_rate": 0.0, "error": "http_5xx", "error_status": 503,
                               "malformed": None, "fail_next": 0}
    assert enterprise(mocks, seed).status_code == 200


def test_null_restores_one_switch_and_omitted_switches_stay(control: MockControl) -> None:
    control.set_faults("tax", latency_ms=10, malformed="schema")
    faults = control.set_faults("tax", malformed=None)["faults"]
    assert faults["malformed"] is None
    assert faults["latency_ms"] == 10


def test_reset_counts_zeroes_the_counters(control: MockControl, mocks: RunningMocks, seed: Seed) -> None:
    enterprise(mocks, seed)
    assert control.requests("enterprise") == 1
    control.reset_counts("enterprise")
    assert control.requests("enterprise") == 0


def test_control_plane_lists_every_mock_and_rejects_unknown_names(control: MockControl) -> None:
    summary = HTTP.get(control.mocks.control_url).json()["mocks"]
    assert set(summary) == {spec.name for spec in SPECS}
    assert {"population", "enterprise", "tax", "organisation", "alipay"} <= set(summary)
    assert control.http.get("/nonesuch").status_code == 404
