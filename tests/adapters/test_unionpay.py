"""The UnionPay-style adapter: signing base pinned, notifications verified with the configured gateway
certificate only, and (over real sockets, against the mock gateway) query, refund and statement."""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import given
from hypothesis import strategies as st

from adapters.payments import signing
from adapters.payments.base import (
    GatewayRefused,
    GatewayUnavailable,
    NotificationRejected,
    OrderRequest,
    RefundRequest,
)
from adapters.payments.unionpay import (
    CST,
    UnionPayGateway,
    _trade_status,
    parse_statement,
)
from adapters.resilience import ResiliencePolicy
from mocks.payments.unionpay import UnionPayMock, statement_line
from mocks.server import MockServer
from tests.mocks.unionpay_support import Browser, Merchant, fresh, merchant_endpoint, unionpay_mock

MER_ID = "777290058110097"
CREATED = datetime(2026, 11, 30, 2, 15, 30, tzinfo=UTC)  # 10:15:30 in China


@pytest.fixture(scope="module")
def merchant() -> signing.KeyPair:
    return signing.generate_key_pair("merchant")


@pytest.fixture(scope="module")
def gateway_keys() -> signing.KeyPair:
    return signing.generate_key_pair("unionpay gateway")


@pytest.fixture(scope="module")
def impostor() -> signing.KeyPair:
    return signing.generate_key_pair("unionpay gateway")  # same name, another key and certificate


@pytest.fixture
def adapter(merchant: signing.KeyPair, gateway_keys: signing.KeyPair) -> Iterator[UnionPayGateway]:
    gateway = UnionPayGateway(url="http://127.0.0.1:9", mer_id=MER_ID, private_key_pem=merchant.private_pem,
                              certificate_pem=merchant.certificate_pem,
                              gateway_certificate_pem=gateway_keys.certificate_pem, timeout_s=1)
    yield gateway
    gateway.close()


def expected_signature_base(fields: dict[str, str]) -> str:
    """Written out independently of the adapter: sorted k=v of non-empty fields but signature, SHA-256 hex."""
    text = "&".join(f"{k}={v}" for k, v in sorted(fields.items()) if k != "signature" and v != "")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def gateway_signed(fields: dict[str, str], keys: signing.KeyPair, *, carry_cert: bool = True) -> dict[str, str]:
    """Fields as the gateway sends them: its certificate in signPubKeyCert, signed with its key."""
    signed = dict(fields)
    if carry_cert:
        signed["signPubKeyCert"] = keys.certificate_pem.decode()
    digest = expected_signature_base(signed)
    raw = keys.private_key.sign(digest.encode(), padding.PKCS1v15(), hashes.SHA256())
    signed["signature"] = base64.b64encode(raw).decode()
    return signed


def consume_notification(**overrides: str) -> dict[str, str]:
    fields = {
        "version": "5.1.0", "encoding": "UTF-8", "signMethod": "01", "txnType": "01", "txnSubType": "01",
        "bizType": "000201", "accessType": "0", "merId": MER_ID, "orderId": "P20261130123456789012",
        "txnTime": "20261130101530", "txnAmt": "2000", "currencyCode": "156", "queryId": "782611301015300012345",
        "respCode": "00", "respMsg": "成功[0000000]", "accNo": "6216261000000000018", "settleDate": "1130",
        "traceNo": "123456", "traceTime": "1130101602",
    }
    fields.update(overrides)
    return fields


def form(fields: dict[str, str]) -> bytes:
    return urlencode(fields).encode()


FORM = "application/x-www-form-urlencoded"


# --- create: the signed front request ------------------------------------------------------------


def test_checkout_is_a_signed_front_form_post_whose_signature_base_is_pinned(
        adapter: UnionPayGateway, merchant: signing.KeyPair) -> None:
    checkout = adapter.create(OrderRequest(
        order_no="P20261130123456789012", amount_fen=2000, subject="居民身份证换领工本费", created_at=CREATED,
        expires_at=CREATED + timedelta(minutes=30), notify_url="http://hub.test/api/v1/payments/notify/unionpay",
        return_url="http://hub.test/api/v1/payments/return/unionpay"))
    assert checkout.method == "POST"
    assert checkout.url == "http://127.0.0.1:9/gateway/api/frontTransReq.do"
    fields = checkout.fields
    assert {k: fields[k] for k in ("version", "encoding", "signMethod", "txnType", "txnSubType", "bizType",
                                   "channelType", "accessType", "currencyCode")} == {
        "version": "5.1.0", "encoding": "UTF-8", "signMethod": "01", "txnType": "01", "txnSubType": "01",
        "bizType": "000201", "channelType": "07", "accessType": "0", "currencyCode": "156"}
    assert (fields["merId"], fields["orderId"], fields["txnAmt"]) == (MER_ID, "P20261130123456789012", "2000")
    assert fields["txnTime"] == "20261130101530"  # China Standard Time on the wire
    assert fields["payTimeout"] == "20261130104530"
    assert fields["certId"] == merchant.cert_id
    assert fields["backUrl"].endswith("/notify/unionpay") and fields["frontUrl"].endswith("/return/unionpay")
    # The base is the SHA-256 hex of the sorted string; the signature is SHA256withRSA over that hex.
    base = expected_signature_base(fields)
    merchant.public_key.verify(base64.b64decode(fields["signature"]), base.encode(), padding.PKCS1v15(),
                               hashes.SHA256())


def test_checkout_refuses_an_order_number_unionpay_would_not_take(adapter: UnionPayGateway) -> None:
    with pytest.raises(ValueError, match="orderId"):
        adapter.create(OrderRequest(order_no="P-1", amount_fen=1, subject="x", created_at=CREATED,
                                    expires_at=CREATED, notify_url="http://h/n", return_url="http://h/r"))


# --- notifications -------------------------------------------------------------------------------


def test_a_verified_success_notification_reads_as_paid_with_the_amount_in_fen(
        adapter: UnionPayGateway, gateway_keys: signing.KeyPair) -> None:
    note = adapter.parse_notification(body=form(gateway_signed(consume_notification(), gateway_keys)),
                                      content_type=FORM)
    assert (note.gateway, note.kind, note.notify_id) == ("unionpay", "payment", "782611301015300012345-00")
    trade = note.trade
    assert (trade.order_no, trade.status, trade.amount_fen, trade.merchant_id, trade.code) == (
        "P20261130123456789012", "paid", 2000, MER_ID, "00")
    assert trade.gateway_trade_no == "782611301015300012345"
    assert trade.paid_at == datetime(2026, 11, 30, 2, 16, 2, tzinfo=UTC)  # traceTime, when the money moved
    assert note.params["accNo"] == "621626*********0018"  # the card number masked before it is stored
    assert "signPubKeyCert" not in note.params


def test_a6_is_success_and_not_final_codes_read_as_unknown(
        adapter: UnionPayGateway, gateway_keys: signing.KeyPair) -> None:
    for code, status in (("A6", "paid"), ("03", "unknown"), ("04", "unknown"), ("05", "unknown"),
                         ("30", "failed")):
        body = form(gateway_signed(consume_notification(respCode=code), gateway_keys))
        assert adapter.parse_notification(body=body, content_type=FORM).trade.status == status, code


def test_a_notification_signed_with_the_configured_key_is_accepted_without_a_carried_certificate(
        adapter: UnionPayGateway, gateway_keys: signing.KeyPair) -> None:
    body = form(gateway_signed(consume_notification(), gateway_keys, carry_cert=False))
    assert adapter.parse_notification(body=body, content_type=FORM).trade.status == "paid"


def test_a_refund_notification_names_the_refund_and_the_order_it_belongs_to(
        adapter: UnionPayGateway, gateway_keys: signing.KeyPair) -> None:
    fields = consume_notification(txnType="04", txnSubType="00", orderId="R20261130000000000001", txnAmt="500",
                                  queryId="782611301100000000002", origQryId="782611301015300012345",
                                  reqReserved="P20261130123456789012")
    note = adapter.parse_notification(body=form(gateway_signed(fields, gateway_keys)), content_type=FORM)
    assert (note.kind, note.refund_no, note.refund_fen, note.trade.order_no) == (
        "refund", "R20261130000000000001", 500, "P20261130123456789012")


def rejected(adapter: UnionPayGateway, body: bytes, content_type: str = FORM) -> str:
    with pytest.raises(NotificationRejected) as caught:
        adapter.parse_notification(body=body, content_type=content_type)
    assert caught.value.gateway == "unionpay"
    return caught.value.rule


def test_a_forged_notification_signed_with_another_key_is_rejected(
        adapter: UnionPayGateway, impostor: signing.KeyPair) -> None:
    # The forger carries its own certificate: a certificate in the message is never trusted by itself.
    assert rejected(adapter, form(gateway_signed(consume_notification(), impostor))) == "signature_invalid"
    # …nor does leaving it out help.
    forged = gateway_signed(consume_notification(), impostor, carry_cert=False)
    assert rejected(adapter, form(forged)) == "signature_invalid"


def test_another_certificate_carried_with_a_valid_signature_is_rejected(
        adapter: UnionPayGateway, gateway_keys: signing.KeyPair, impostor: signing.KeyPair) -> None:
    fields = consume_notification()
    fields["signPubKeyCert"] = impostor.certificate_pem.decode()
    signed = gateway_signed(fields, gateway_keys, carry_cert=False)  # signed by the real key, wrong cert carried
    assert rejected(adapter, form(signed)) == "signature_invalid"


@pytest.mark.parametrize("field,value", [("txnAmt", "2001"), ("orderId", "P20261130123456789013"),
                                         ("respCode", "00 "), ("merId", "777290058110098")])
def test_a_tampered_notification_is_rejected(adapter: UnionPayGateway, gateway_keys: signing.KeyPair,
                                             field: str, value: str) -> None:
    signed = gateway_signed(consume_notification(respCode="05"), gateway_keys)
    signed[field] = value
    assert rejected(adapter, form(signed)) == "signature_invalid"


def test_missing_signature_is_rejected(adapter: UnionPayGateway, gateway_keys: signing.KeyPair) -> None:
    signed = gateway_signed(consume_notification(), gateway_keys)
    del signed["signature"]
    assert rejected(adapter, form(signed)) == "signature_invalid"


def test_another_merchants_notification_is_rejected_even_when_genuinely_signed(
        adapter: UnionPayGateway, gateway_keys: signing.KeyPair) -> None:
    signed = gateway_signed(consume_notification(merId="777290058110098"), gateway_keys)
    assert rejected(adapter, form(signed)) == "merchant_mismatch"


def test_malformed_notifications_are_rejected_naming_the_rule(
        adapter: UnionPayGateway, gateway_keys: signing.KeyPair) -> None:
    assert rejected(adapter, b"{}", "application/json") == "malformed"
    assert rejected(adapter, b"\xff\xfe=1", FORM) == "malformed"
    signed = gateway_signed(consume_notification(txnAmt="20.00"), gateway_keys)
    assert rejected(adapter, form(signed)) == "malformed"
    without_query_id = consume_notification()
    del without_query_id["queryId"]
    assert rejected(adapter, form(gateway_signed(without_query_id, gateway_keys))) == "malformed"


def test_acknowledgement_is_http_200_or_a_refusal(adapter: UnionPayGateway) -> None:
    assert adapter.acknowledgement(accepted=True).status_code == 200
    assert adapter.acknowledgement(accepted=False).status_code == 400



# --- pure rules ----------------------------------------------------------------------------------------------


@given(amount=st.integers(min_value=1, max_value=10**12 - 1),
       order=st.from_regex(r"[0-9A-Za-z]{8,32}", fullmatch=True),
       at=st.datetimes(min_value=datetime(2020, 1, 2), max_value=datetime(2030, 12, 30), timezones=st.just(UTC)))
def test_the_mocks_statement_lines_read_back_through_the_adapters_parser(amount: int, order: str, at: datetime) -> None:
    at = at.replace(microsecond=0)
    day = at.astimezone(CST).date()
    text = statement_line({"code": "S22", "traceNo": "000001", "traceTime": at.astimezone(CST).strftime(
        "%m%d%H%M%S"), "accNo": "6216****0018", "txnAmt": f"{amount:012d}", "queryId": "1" * 21, "orderId": order,
        "merId": MER_ID}) + "\r\n"
    [line] = parse_statement(text, day=day)
    assert (line.order_no, line.kind, line.amount_fen, line.occurred_at, line.gateway_trade_no) == (
        order, "payment", amount, at, "1" * 21)


@pytest.mark.parametrize("code,status", [("00", "paid"), ("A6", "paid"), ("03", "unknown"), ("04", "unknown"),
                                         ("05", "unknown"), ("34", "pending"), ("01", "failed"), ("30", "failed")])
def test_resp_codes_in_the_hubs_words(code: str, status: str) -> None:
    assert _trade_status(code) == status

# --- over real sockets, against the mock gateway -------------------------------------------------------------

# The production policy's shape with a short timeout and tiny backoff (what DESIGN §6 asks, made fast).
FAST_POLICY = ResiliencePolicy(timeout_s=0.5, attempts=3, backoff_initial_s=0.001, backoff_max_s=0.005,
                               breaker_failures=50, breaker_reset_s=30.0, max_concurrency=4)


@pytest.fixture(scope="module")
def gateway_mock() -> Iterator[tuple[MockServer, UnionPayMock]]:
    with unionpay_mock() as running:
        yield running


@pytest.fixture(scope="module")
def merchant_site() -> Iterator[Merchant]:
    with merchant_endpoint() as site:
        yield site


@pytest.fixture(scope="module")
def dev_keys(gateway_mock: tuple[MockServer, UnionPayMock]) -> dict[str, str]:
    server, _ = gateway_mock
    return dict(httpx.get(f"{server.url}/_keys", trust_env=False).json())  # as `hub up` configures the hub


@pytest.fixture
def live(gateway_mock: tuple[MockServer, UnionPayMock], merchant_site: Merchant,
         dev_keys: dict[str, str]) -> Iterator[UnionPayGateway]:
    server, mock = gateway_mock
    fresh(server, mock)
    merchant_site.reset()
    gateway = connect(server.url, dev_keys)
    yield gateway
    gateway.close()
    fresh(server, mock)


def connect(url: str, keys: dict[str, str], *, gateway_certificate: bytes | None = None,
            now: Callable[[], datetime] | None = None) -> UnionPayGateway:
    return UnionPayGateway(url=url, mer_id=keys["mer_id"], private_key_pem=keys["merchant_private_key"],
                           certificate_pem=keys["merchant_certificate"],
                           gateway_certificate_pem=gateway_certificate or keys["gateway_certificate"].encode(),
                           timeout_s=FAST_POLICY.timeout_s, policy=FAST_POLICY, sleep=lambda _: None, now=now)


def order_no() -> str:
    return "P" + datetime.now(CST).strftime("%Y%m%d") + "".join(secrets.choice("0123456789") for _ in range(12))


def open_order(gateway: UnionPayGateway, merchant: Merchant, *, amount_fen: int = 2000,
               at: datetime | None = None) -> tuple[OrderRequest, httpx.Response]:
    """Create the order and open the cashier as the browser does; returns the cashier page."""
    created = (at or datetime.now(UTC)).replace(microsecond=0)
    request = OrderRequest(order_no=order_no(), amount_fen=amount_fen, subject="居民身份证换领工本费",
                           created_at=created, expires_at=created + timedelta(minutes=30),
                           notify_url=merchant.notify_url, return_url=merchant.return_url)
    checkout = gateway.create(request)
    browser = Browser()
    try:
        page = browser.open_cashier(checkout.url, checkout.fields)
    finally:
        browser.close()
    assert page.status_code == 200, page.text
    return request, page


def pay(gateway: UnionPayGateway, merchant: Merchant, *, amount_fen: int = 2000) -> OrderRequest:
    request, page = open_order(gateway, merchant, amount_fen=amount_fen)
    browser = Browser()
    try:
        assert browser.press(page, "pay").status_code == 303
    finally:
        browser.close()
    return request


def trade_json(server: MockServer, order: str) -> dict[str, Any]:
    return dict(httpx.get(f"{server.url}/_control/trades/{order}", trust_env=False).json())


def test_paid_at_the_cashier_the_notification_verifies_and_the_query_confirms(
        live: UnionPayGateway, merchant_site: Merchant) -> None:
    request = pay(live, merchant_site)
    received = merchant_site.wait_for(1, order_no=request.order_no)[0]
    note = live.parse_notification(body=received.body, content_type=received.content_type)
    assert (note.kind, note.trade.status, note.trade.amount_fen, note.trade.order_no) == (
        "payment", "paid", 2000, request.order_no)
    confirmed = live.query(order_no=request.order_no, created_at=request.created_at)
    assert (confirmed.status, confirmed.amount_fen, confirmed.gateway_trade_no) == (
        "paid", 2000, note.trade.gateway_trade_no)
    assert confirmed.paid_at == note.trade.paid_at


def test_an_unpaid_order_reads_as_pending_and_its_expiry_is_left_to_the_hub(
        live: UnionPayGateway, merchant_site: Merchant) -> None:
    request, _ = open_order(live, merchant_site)
    unpaid = live.query(order_no=request.order_no, created_at=request.created_at)
    assert (unpaid.status, unpaid.code, unpaid.amount_fen) == ("pending", "34", None)


def test_an_order_made_on_a_test_clock_months_ago_is_still_payable_and_found_paid(
        live: UnionPayGateway, merchant_site: Merchant) -> None:
    # The hub's tests run on a fixed clock (tests/conftest.py START); the gateway mock runs on the real one.
    request, page = open_order(live, merchant_site, at=datetime(2026, 3, 11, 2, 0, tzinfo=UTC))
    assert live.query(order_no=request.order_no, created_at=request.created_at).status == "pending"
    browser = Browser()
    try:
        assert browser.press(page, "pay").status_code == 303
    finally:
        browser.close()
    found = live.query(order_no=request.order_no, created_at=request.created_at)
    assert (found.status, found.amount_fen) == ("paid", 2000)


def test_a_query_under_another_txn_time_finds_nothing(live: UnionPayGateway, merchant_site: Merchant) -> None:
    request = pay(live, merchant_site)
    other = live.query(order_no=request.order_no, created_at=request.created_at - timedelta(seconds=1))
    assert (other.status, other.code) == ("pending", "34")  # (merId, orderId, txnTime) identifies a trade


@pytest.mark.parametrize("switch", ["query_resp_code", "orig_resp_code"])
@pytest.mark.parametrize("code", ["03", "04", "05"])
def test_not_final_answers_read_as_unknown_never_as_a_decision(
        live: UnionPayGateway, merchant_site: Merchant, gateway_mock: tuple[MockServer, UnionPayMock],
        switch: str, code: str) -> None:
    request = pay(live, merchant_site)
    gateway_mock[1].update_faults({switch: code})
    state = live.query(order_no=request.order_no, created_at=request.created_at)
    assert (state.status, state.code) == ("unknown", code)
    gateway_mock[1].clear_faults()
    assert live.query(order_no=request.order_no, created_at=request.created_at).status == "paid"


def refund_request(request: OrderRequest, trade_no: str, refund_no: str, amount_fen: int) -> RefundRequest:
    return RefundRequest(order_no=request.order_no, refund_no=refund_no, amount_fen=amount_fen,
                         order_amount_fen=request.amount_fen, reason="申请已撤回", gateway_trade_no=trade_no,
                         order_created_at=request.created_at)


def test_a_refund_is_confirmed_by_query_and_announced_to_the_merchant(
        live: UnionPayGateway, merchant_site: Merchant, gateway_mock: tuple[MockServer, UnionPayMock]) -> None:
    request = pay(live, merchant_site)
    trade_no = live.query(order_no=request.order_no, created_at=request.created_at).gateway_trade_no
    assert trade_no
    refund_no = "R" + request.order_no[1:]
    result = live.refund(refund_request(request, trade_no, refund_no, 500))
    assert (result.refund_no, result.status, result.refunded_fen) == (refund_no, "succeeded", 500)
    notes = [n for n in merchant_site.wait_for(2, order_no=request.order_no) if n.fields["txnType"] == "04"]
    note = live.parse_notification(body=notes[0].body, content_type=notes[0].content_type)
    assert (note.kind, note.refund_no, note.refund_fen, note.trade.order_no) == (
        "refund", refund_no, 500, request.order_no)
    assert note.notify_id != live.parse_notification(
        body=merchant_site.wait_for(1, order_no=request.order_no)[0].body,
        content_type="application/x-www-form-urlencoded").notify_id


def test_a_retried_refund_refunds_once(live: UnionPayGateway, merchant_site: Merchant,
                                       gateway_mock: tuple[MockServer, UnionPayMock]) -> None:
    server, mock = gateway_mock
    request = pay(live, merchant_site)
    trade_no = str(live.query(order_no=request.order_no, created_at=request.created_at).gateway_trade_no)
    refund = refund_request(request, trade_no, "R" + request.order_no[1:], 2000)
    mock.update_faults({"refund_resp_code": "03"})  # made, but answered "communication timeout"
    assert live.refund(refund).status == "unknown"
    mock.clear_faults()
    again = live.refund(refund)  # the hub retries with the same refund number
    assert (again.status, again.refunded_fen) == ("succeeded", 2000)
    assert live.refund(refund).status == "succeeded"  # and once more
    trade = trade_json(server, request.order_no)
    assert [r["amount_fen"] for r in trade["refunds"]] == [2000]
    assert trade["refunded_fen"] == 2000


def test_a_refund_beyond_the_paid_amount_is_refused(live: UnionPayGateway, merchant_site: Merchant) -> None:
    request = pay(live, merchant_site, amount_fen=1000)
    trade_no = str(live.query(order_no=request.order_no, created_at=request.created_at).gateway_trade_no)
    assert live.refund(refund_request(request, trade_no, "R" + request.order_no[1:], 600)).status == "succeeded"
    with pytest.raises(GatewayRefused) as caught:
        live.refund(refund_request(request, trade_no, "R" + request.order_no[1:-1] + "x", 600))
    assert caught.value.rule == "refund_refused"


def test_the_statement_lists_the_days_payments_and_refunds(live: UnionPayGateway, merchant_site: Merchant) -> None:
    request = pay(live, merchant_site, amount_fen=2000)
    trade_no = str(live.query(order_no=request.order_no, created_at=request.created_at).gateway_trade_no)
    refund_no = "R" + request.order_no[1:]
    live.refund(refund_request(request, trade_no, refund_no, 700))
    lines = live.statement(day=datetime.now(CST).date())
    mine = [line for line in lines if line.order_no == request.order_no]
    assert [(line.kind, line.amount_fen, line.refund_no) for line in mine] == [
        ("payment", 2000, None), ("refund", 700, refund_no)]
    assert mine[0].gateway_trade_no == trade_no
    assert all(line.occurred_at.tzinfo is not None for line in mine)


def test_mock_down_is_gateway_unavailable_after_the_policys_retries(
        live: UnionPayGateway, gateway_mock: tuple[MockServer, UnionPayMock]) -> None:
    server, mock = gateway_mock
    mock.state.payment_faults.update({"down": True})
    server.faults.reset_counts()
    with pytest.raises(GatewayUnavailable) as caught:
        live.query(order_no="P20261130000000000001", created_at=CREATED)
    assert caught.value.retryable and caught.value.rule == "unavailable"
    assert server.faults.snapshot()["requests"]["by_operation"]["queryTrans"] == FAST_POLICY.attempts


def test_refused_connections_and_timeouts_are_gateway_unavailable(
        live: UnionPayGateway, gateway_mock: tuple[MockServer, UnionPayMock]) -> None:
    server, mock = gateway_mock
    mock.state.payment_faults.update({"slow_ms": 2000})
    with pytest.raises(GatewayUnavailable):
        live.statement(day=CREATED.date())
    mock.state.payment_faults.clear()
    server.refuse()
    with pytest.raises(GatewayUnavailable):
        live.query(order_no="P20261130000000000001", created_at=CREATED)


def test_an_answer_signed_by_another_certificate_is_never_trusted(
        merchant_site: Merchant, dev_keys: dict[str, str], impostor: signing.KeyPair,
        gateway_mock: tuple[MockServer, UnionPayMock]) -> None:
    # The adapter is configured with another gateway certificate: the mock's genuine answers must not verify.
    doubting = connect(gateway_mock[0].url, dev_keys, gateway_certificate=impostor.certificate_pem)
    try:
        with pytest.raises(GatewayUnavailable) as caught:
            doubting.query(order_no="P20261130000000000001", created_at=CREATED)
    finally:
        doubting.close()
    assert caught.value.rule == "signature_invalid"


def test_notification_fault_switches_are_caught_by_the_adapter(
        live: UnionPayGateway, merchant_site: Merchant, gateway_mock: tuple[MockServer, UnionPayMock]) -> None:
    faults = gateway_mock[1].state.payment_faults
    faults.update({"forge_signature": True})
    forged = merchant_site.wait_for(1, order_no=pay(live, merchant_site).order_no)[0]
    with pytest.raises(NotificationRejected) as caught:
        live.parse_notification(body=forged.body, content_type=forged.content_type)
    assert caught.value.rule == "signature_invalid"
    faults.clear()
    faults.update({"wrong_merchant": True})
    foreign = merchant_site.wait_for(1, order_no=pay(live, merchant_site).order_no)[0]
    with pytest.raises(NotificationRejected) as caught:
        live.parse_notification(body=foreign.body, content_type=foreign.content_type)
    assert caught.value.rule == "merchant_mismatch"
    faults.clear()
    faults.update({"wrong_amount": True})
    request = pay(live, merchant_site, amount_fen=2000)
    overstated = merchant_site.wait_for(1, order_no=request.order_no)[0]
    # Genuinely signed: the amount check is the hub's (apply_trade compares it with the order).
    assert live.parse_notification(body=overstated.body, content_type=FORM).trade.amount_fen == 2001


def test_duplicates_share_a_notify_id_and_an_out_of_order_one_has_its_own_and_decides_nothing(
        live: UnionPayGateway, merchant_site: Merchant, gateway_mock: tuple[MockServer, UnionPayMock]) -> None:
    faults = gateway_mock[1].state.payment_faults
    faults.update({"duplicate": True, "out_of_order": True})
    request = pay(live, merchant_site)
    received = merchant_site.wait_for(3, order_no=request.order_no)
    notes = [live.parse_notification(body=r.body, content_type=FORM) for r in received]
    paid = [n for n in notes if n.trade.status == "paid"]
    stale = [n for n in notes if n.trade.status != "paid"]
    assert len(paid) == 2 and paid[0].notify_id == paid[1].notify_id
    assert len(stale) == 1 and stale[0].notify_id != paid[0].notify_id
    assert stale[0].trade.status == "unknown"  # respCode 05: ask again, never decide on it


def test_a_4xx_answer_is_a_refusal_not_retried(gateway_mock: tuple[MockServer, UnionPayMock],
                                               dev_keys: dict[str, str]) -> None:
    server, _ = gateway_mock
    misconfigured = connect(f"{server.url}/wrong-base", dev_keys)  # every path answers 404
    try:
        with pytest.raises(GatewayRefused) as caught:
            misconfigured.query(order_no="P20261130000000000001", created_at=CREATED)
    finally:
        misconfigured.close()
    assert caught.value.rule == "rejected" and not caught.value.retryable
