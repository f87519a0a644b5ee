"""The Alipay-style adapter against the Alipay-style mock over real sockets: signing, notifications (verified or
rejected with the right rule), exact amounts, query, idempotent refunds, statement, an unavailable gateway."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from adapters.payments.alipay import (
    CST,
    AlipayGateway,
    fen_to_yuan,
    notification_sign_content,
    parse_statement,
    request_sign_content,
    yuan_to_fen,
)
from adapters.payments.base import (
    GatewayRefused,
    GatewayUnavailable,
    NotificationRejected,
    OrderRequest,
    PaymentGateway,
    RefundRequest,
)
from adapters.payments.signing import generate_key_pair, load_private_key, load_public_key, sign, verify
from tests.mocks.alipay_support import AlipayMockHandle, alipay_mock, query_params, wait_until

FORM = "application/x-www-form-urlencoded; charset=utf-8"
# The example of Alipay's signing guide (common parameters of a request), and the string it signs.
DOC_PARAMS = {
    "method": "alipay.mobile.public.menu.add",
    "charset": "GBK",
    "sign_type": "RSA2",
    "timestamp": "2014-07-24 03:07:50",
    "biz_content": '{"button":[{"actionParam":"ZFB_HFCZ","actionType":"out","name":"话费充值"}]}',
    "sign": "anything",
    "app_id": "2014072300007148",
    "version": "1.0",
    "notify_url": "",
}
DOC_BASE_STRING = ('app_id=2014072300007148&biz_content={"button":[{"actionParam":"ZFB_HFCZ","actionType":"out",'
                   '"name":"话费充值"}]}&charset=GBK&method=alipay.mobile.public.menu.add&sign_type=RSA2'
                   "&timestamp=2014-07-24 03:07:50&version=1.0")


@pytest.fixture(scope="module")
def mock() -> Iterator[AlipayMockHandle]:
    with alipay_mock() as handle:
        yield handle


@pytest.fixture
def gateway(mock: AlipayMockHandle) -> Iterator[AlipayGateway]:
    mock.http.delete("/_control/payment-faults")
    yield mock.gateway()
    mock.http.delete("/_control/payment-faults")


def _notification_form(mock: AlipayMockHandle, order_no: str) -> dict[str, str]:
    """The payment notification the mock sent for the order, as it was POSTed."""
    sent = wait_until(lambda: [n for n in mock.notifications(order_no) if n["label"] == "normal" and n["attempts"]],
                      what="the first notification")
    return dict(sent[0]["form"])


def _refund_no(order_no: str, n: int) -> str:
    return f"R{order_no[1:]}{n}"


# --- signing ---------------------------------------------------------------------------------------------------


def test_request_base_string_is_the_sorted_non_empty_parameters_without_sign() -> None:
    assert request_sign_content(DOC_PARAMS) == DOC_BASE_STRING


def test_notification_base_string_also_leaves_out_sign_type() -> None:
    params = {"b": "2", "a": "1", "sign": "x", "sign_type": "RSA2", "empty": ""}
    assert notification_sign_content(params) == "a=1&b=2"


def test_rsa2_signature_is_sha256_with_rsa_pkcs1_over_the_utf8_base_string() -> None:
    keys = generate_key_pair("test-merchant")
    signature = sign(keys.private_key, DOC_BASE_STRING)
    raw = base64.b64decode(signature, validate=True)
    assert len(raw) == 256  # one RSA-2048 block
    assert sign(keys.private_key, DOC_BASE_STRING) == signature  # PKCS#1 v1.5 is deterministic (PSS is not)
    # Verified with the primitive directly, not through the module under test: the right string passes, a
    # base string changed by one character does not.
    keys.public_key.verify(raw, DOC_BASE_STRING.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(InvalidSignature):
        keys.public_key.verify(raw, (DOC_BASE_STRING + "x").encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())


def test_adapter_satisfies_the_gateway_protocol(gateway: AlipayGateway) -> None:
    as_protocol: PaymentGateway = gateway
    assert as_protocol.name == "alipay"


# --- amounts ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("yuan", "fen"), [("20.00", 2000), ("0.01", 1), ("19.99", 1999), ("0.1", 10), ("20", 2000),
                                           ("100000000.00", 10_000_000_000), ("-5.00", -500)])
def test_yuan_strings_convert_to_fen_exactly(yuan: str, fen: int) -> None:
    assert yuan_to_fen(yuan) == fen


@pytest.mark.parametrize("bad", ["", "20.001", "1e3", "20,00", " 20.00", "20.", ".5", "NaN", "0x10", "020.00"])
def test_anything_but_a_two_decimal_yuan_amount_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        yuan_to_fen(bad)


def test_every_fen_amount_round_trips_through_yuan() -> None:
    assert fen_to_yuan(2000) == "20.00" and fen_to_yuan(1) == "0.01" and fen_to_yuan(-500) == "-5.00"
    assert all(yuan_to_fen(fen_to_yuan(fen)) == fen for fen in range(0, 100_001))


# --- create and query ------------------------------------------------------------------------------------------


def test_checkout_is_a_get_of_the_gateway_signed_by_the_merchant(mock: AlipayMockHandle,
                                                                gateway: AlipayGateway) -> None:
    order_no = mock.order_no()
    checkout = mock.order(order_no, 2000, gateway=gateway)
    assert checkout.method == "GET" and checkout.url.startswith(f"{mock.url}/gateway.do?")
    params = query_params(checkout.url)
    merchant_key = load_public_key(mock.keys["merchant_public_key"].encode())
    assert verify(merchant_key, request_sign_content(params), params["sign"])
    biz = json.loads(params["biz_content"])
    assert params["method"] == "alipay.trade.page.pay" and params["sign_type"] == "RSA2"
    assert biz["out_trade_no"] == order_no and biz["total_amount"] == "20.00"
    assert biz["product_code"] == "FAST_INSTANT_TRADE_PAY" and biz["time_expire"]
    cashier = mock.open_cashier(checkout)
    assert cashier.status_code == 200 and "收银台" in cashier.text and "¥20.00 元" in cashier.text


def test_query_before_the_buyer_acts_is_pending_then_paid_with_the_exact_amount(mock: AlipayMockHandle,
                                                                                 gateway: AlipayGateway) -> None:
    order_no = mock.order_no()
    created = datetime.now(UTC)
    checkout = mock.order(order_no, 2000, gateway=gateway)
    before = gateway.query(order_no=order_no, created_at=created)
    assert before.status == "pending" and before.code == "ACQ.TRADE_NOT_EXIST"
    cashier = mock.open_cashier(checkout)
    waiting = gateway.query(order_no=order_no, created_at=created)
    assert waiting.status == "pending" and waiting.code == "WAIT_BUYER_PAY" and waiting.amount_fen == 2000
    mock.click(cashier, "pay")
    paid = gateway.query(order_no=order_no, created_at=created)
    assert paid.status == "paid" and paid.amount_fen == 2000 and paid.paid_at is not None
    assert paid.gateway_trade_no and paid.merchant_id == mock.keys["seller_id"]


def test_query_of_a_cancelled_trade_is_closed(mock: AlipayMockHandle, gateway: AlipayGateway) -> None:
    order_no = mock.order_no()
    cashier = mock.open_cashier(mock.order(order_no, gateway=gateway))
    assert mock.click(cashier, "cancel").status_code == 303
    assert gateway.query(order_no=order_no, created_at=datetime.now(UTC)).status == "closed"


# --- notifications ---------------------------------------------------------------------------------------------


def test_a_genuine_notification_is_verified_with_exact_amount_and_masked_buyer(mock: AlipayMockHandle,
                                                                                gateway: AlipayGateway) -> None:
    order_no = mock.paid_order(2000)
    form = _notification_form(mock, order_no)
    assert form["total_amount"] == "20.00"
    notification = gateway.parse_notification(body=urlencode(form).encode(), content_type=FORM)
    assert notification.gateway == "alipay" and notification.kind == "payment"
    assert notification.notify_id == form["notify_id"]
    trade = notification.trade
    assert (trade.order_no, trade.status, trade.amount_fen) == (order_no, "paid", 2000)
    assert trade.merchant_id == mock.keys["seller_id"] and trade.app_id == mock.keys["app_id"]
    assert notification.params["buyer_logon_id"] != form["buyer_logon_id"]
    assert "****" in notification.params["buyer_logon_id"] and "*" in notification.params["buyer_id"]
    assert form["buyer_logon_id"] not in json.dumps(notification.params)


def test_a_forged_notification_is_rejected_as_signature_invalid(mock: AlipayMockHandle,
                                                                gateway: AlipayGateway) -> None:
    mock.set_faults(forge_signature=True)
    order_no = mock.paid_order()
    form = _notification_form(mock, order_no)
    with pytest.raises(NotificationRejected) as rejected:
        gateway.parse_notification(body=urlencode(form).encode(), content_type=FORM)
    assert rejected.value.rule == "signature_invalid"
    # The hub stand-in (verifying with the adapter) answered "failure": the mock will resend it.
    posts = wait_until(lambda: mock.receiver.posts(order_no), what="the forged notification to arrive")
    assert all(r.answer == "failure" and r.rule == "signature_invalid" for r in posts)


@pytest.mark.parametrize("field", ["total_amount", "out_trade_no", "trade_status", "seller_id", "notify_id"])
def test_a_tampered_notification_is_rejected_as_signature_invalid(mock: AlipayMockHandle, gateway: AlipayGateway,
                                                                  field: str) -> None:
    form = _notification_form(mock, mock.paid_order())
    form[field] = {"total_amount": "0.01", "trade_status": "TRADE_CLOSED"}.get(field, form[field] + "0")
    with pytest.raises(NotificationRejected) as rejected:
        gateway.parse_notification(body=urlencode(form).encode(), content_type=FORM)
    assert rejected.value.rule == "signature_invalid"


def test_a_notification_without_sign_is_rejected_as_signature_invalid(mock: AlipayMockHandle,
                                                                      gateway: AlipayGateway) -> None:
    form = _notification_form(mock, mock.paid_order())
    del form["sign"]
    with pytest.raises(NotificationRejected) as rejected:
        gateway.parse_notification(body=urlencode(form).encode(), content_type=FORM)
    assert rejected.value.rule == "signature_invalid"


def test_sign_type_is_outside_the_signed_string_but_must_be_rsa2(mock: AlipayMockHandle,
                                                                 gateway: AlipayGateway) -> None:
    form = _notification_form(mock, mock.paid_order())
    without = {k: v for k, v in form.items() if k != "sign_type"}
    assert gateway.parse_notification(body=urlencode(without).encode(), content_type=FORM).trade.status == "paid"
    with pytest.raises(NotificationRejected) as rejected:
        gateway.parse_notification(body=urlencode({**form, "sign_type": "RSA"}).encode(), content_type=FORM)
    assert rejected.value.rule == "signature_invalid"


@pytest.mark.parametrize(("switch", "rule"), [("wrong_merchant", "merchant_mismatch"), ("wrong_app", "app_mismatch")])
def test_a_notification_for_another_merchant_or_app_is_rejected(mock: AlipayMockHandle, gateway: AlipayGateway,
                                                                switch: str, rule: str) -> None:
    mock.set_faults(**{switch: True})
    form = _notification_form(mock, mock.paid_order())
    with pytest.raises(NotificationRejected) as rejected:
        gateway.parse_notification(body=urlencode(form).encode(), content_type=FORM)
    assert rejected.value.rule == rule


def test_a_wrong_amount_is_reported_as_signed_for_the_hub_to_compare(mock: AlipayMockHandle,
                                                                     gateway: AlipayGateway) -> None:
    mock.set_faults(wrong_amount=True)
    form = _notification_form(mock, mock.paid_order(2000))
    assert form["total_amount"] == "20.01"
    assert gateway.parse_notification(body=urlencode(form).encode(), content_type=FORM).trade.amount_fen == 2001


@pytest.mark.parametrize(("body", "content_type"), [
    (b'{"notify_id": "1"}', "application/json"),
    (b"notify_id=1&notify_id=2", FORM),
    (b"\xff\xfe=1", FORM),
])
def test_a_body_that_is_not_one_utf8_form_is_rejected_as_malformed(gateway: AlipayGateway, body: bytes,
                                                                   content_type: str) -> None:
    with pytest.raises(NotificationRejected) as rejected:
        gateway.parse_notification(body=body, content_type=content_type)
    assert rejected.value.rule == "malformed"


def test_acknowledgement_is_exactly_success_or_failure_as_plain_text(gateway: AlipayGateway) -> None:
    ok, no = gateway.acknowledgement(accepted=True), gateway.acknowledgement(accepted=False)
    assert (ok.status_code, ok.body, ok.media_type) == (200, "success", "text/plain")
    assert no.body == "failure"


def test_a_refund_notification_names_its_request_number_and_amount(mock: AlipayMockHandle,
                                                                   gateway: AlipayGateway) -> None:
    order_no = mock.paid_order(2000)
    gateway.refund(RefundRequest(order_no=order_no, refund_no="R" + order_no[1:], amount_fen=500,
                                 order_amount_fen=2000, reason="撤回申请"))
    sent = mock.settled(order_no)
    form = next(n["form"] for n in sent if n["kind"] == "refund")
    notification = gateway.parse_notification(body=urlencode(form).encode(), content_type=FORM)
    assert notification.kind == "refund" and notification.refund_no == "R" + order_no[1:]
    assert notification.refund_fen == 500 and notification.trade.status == "paid"


# --- refunds ---------------------------------------------------------------------------------------------------


def test_a_refund_retried_with_the_same_number_refunds_once(mock: AlipayMockHandle, gateway: AlipayGateway) -> None:
    order_no = mock.paid_order(2000)
    request = RefundRequest(order_no=order_no, refund_no="R" + order_no[1:], amount_fen=500, order_amount_fen=2000,
                            reason="申请人撤回")
    first, again = gateway.refund(request), gateway.refund(request)
    assert (first.status, first.refunded_fen) == ("succeeded", 500)
    assert (again.status, again.refunded_fen) == ("succeeded", 500)
    ledger = mock.http.get(f"/_control/trades/{order_no}").json()
    assert ledger["refunded_fen"] == 500 and len(ledger["refunds"]) == 1
    # A second, different partial refund is a new request number; more than the balance is refused.
    second = gateway.refund(RefundRequest(order_no=order_no, refund_no=_refund_no(order_no, 2), amount_fen=1500,
                                          order_amount_fen=2000, reason="余额"))
    assert second.status == "succeeded" and mock.http.get(f"/_control/trades/{order_no}").json()["refunded_fen"] == 2000
    with pytest.raises(GatewayRefused) as refused:
        gateway.refund(RefundRequest(order_no=order_no, refund_no=_refund_no(order_no, 3), amount_fen=1,
                                     order_amount_fen=2000, reason="超额"))
    assert refused.value.rule == "refund_exceeds_balance"
    # Fully refunded: the gateway shows TRADE_CLOSED, and it was still paid.
    assert gateway.query(order_no=order_no, created_at=datetime.now(UTC)).status == "paid"


def test_a_refund_whose_answer_was_lost_is_retried_and_refunds_once(mock: AlipayMockHandle,
                                                                    gateway: AlipayGateway) -> None:
    order_no = mock.paid_order(2000)
    request = RefundRequest(order_no=order_no, refund_no=_refund_no(order_no, 1), amount_fen=800,
                            order_amount_fen=2000, reason="撤回")
    mock.set_faults(slow_ms=1500)  # the gateway refunds, but only after the adapter stopped waiting
    with pytest.raises(GatewayUnavailable):
        gateway.refund(request)
    wait_until(lambda: mock.http.get(f"/_control/trades/{order_no}").json()["refunds"], what="the late refund")
    mock.set_faults(slow_ms=None)
    retried = gateway.refund(request)
    assert (retried.status, retried.refunded_fen) == ("succeeded", 800)
    ledger = mock.http.get(f"/_control/trades/{order_no}").json()
    assert ledger["refunded_fen"] == 800 and len(ledger["refunds"]) == 1


def test_the_subject_loses_the_characters_alipay_refuses(mock: AlipayMockHandle, gateway: AlipayGateway) -> None:
    now = datetime.now(UTC)
    checkout = gateway.create(OrderRequest(order_no=mock.order_no(), amount_fen=1, subject="工本费/补办=1&加急",
                                           created_at=now, expires_at=now, notify_url="http://h/n",
                                           return_url="http://h/r"))
    assert json.loads(query_params(checkout.url)["biz_content"])["subject"] == "工本费 补办 1 加急"


def test_a_reused_refund_number_with_another_amount_is_refused(mock: AlipayMockHandle,
                                                               gateway: AlipayGateway) -> None:
    order_no = mock.paid_order(2000)
    refund_no = "R" + order_no[1:]
    gateway.refund(RefundRequest(order_no=order_no, refund_no=refund_no, amount_fen=500, order_amount_fen=2000,
                                 reason="撤回"))
    with pytest.raises(GatewayRefused) as refused:
        gateway.refund(RefundRequest(order_no=order_no, refund_no=refund_no, amount_fen=700, order_amount_fen=2000,
                                     reason="撤回"))
    assert refused.value.rule == "refund_no_conflict"


def test_refunding_an_unpaid_order_is_refused(mock: AlipayMockHandle, gateway: AlipayGateway) -> None:
    order_no = mock.order_no()
    mock.open_cashier(mock.order(order_no, gateway=gateway))
    with pytest.raises(GatewayRefused) as refused:
        gateway.refund(RefundRequest(order_no=order_no, refund_no="R" + order_no[1:], amount_fen=100,
                                     order_amount_fen=2000, reason="x"))
    assert refused.value.rule == "trade_status_invalid"


# --- statement -------------------------------------------------------------------------------------------------


def test_statement_lists_the_days_payments_and_refunds(mock: AlipayMockHandle, gateway: AlipayGateway) -> None:
    paid, refunded = mock.paid_order(2000), mock.paid_order(3550)
    gateway.refund(RefundRequest(order_no=refunded, refund_no="R" + refunded[1:], amount_fen=1205,
                                 order_amount_fen=3550, reason="部分退款"))
    lines = gateway.statement(day=datetime.now(UTC).astimezone(CST).date())
    mine = {(line.order_no, line.kind): line for line in lines if line.order_no in (paid, refunded)}
    assert mine[(paid, "payment")].amount_fen == 2000
    assert mine[(refunded, "payment")].amount_fen == 3550
    refund = mine[(refunded, "refund")]
    assert refund.amount_fen == 1205 and refund.refund_no == "R" + refunded[1:]
    assert len(mine) == 3 and all(line.gateway_trade_no for line in mine.values())


def test_statement_columns_are_found_by_header_and_fields_trimmed() -> None:
    text = ("#支付宝业务明细查询\r\n"
            "备注,商户订单号,业务类型,完成时间,订单金额（元）,商家实收（元）,退款批次号/请求号,支付宝交易号\r\n"
            ",P1\t,交易\t,2026-11-30 10:00:00\t,20.00\t,20.00,,T1\r\n"
            ",P1,退款,2026-11-30 11:00:00,20.00,-5.00,R1\t,T1\r\n#导出时间：[x]\r\n")
    lines = parse_statement(text)
    assert [(x.order_no, x.kind, x.amount_fen, x.refund_no) for x in lines] == [
        ("P1", "payment", 2000, None), ("P1", "refund", 500, "R1")]
    assert lines[0].occurred_at == datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


# --- an unavailable or untrustworthy gateway -------------------------------------------------------------------


def test_a_gateway_that_is_down_is_unavailable_and_retryable(mock: AlipayMockHandle, gateway: AlipayGateway) -> None:
    mock.set_faults(down=True)
    with pytest.raises(GatewayUnavailable) as unavailable:
        gateway.query(order_no=mock.order_no(), created_at=datetime.now(UTC))
    assert unavailable.value.retryable and unavailable.value.gateway == "alipay"


def test_a_gateway_slower_than_the_timeout_is_unavailable(mock: AlipayMockHandle, gateway: AlipayGateway) -> None:
    mock.set_faults(slow_ms=2000)
    with pytest.raises(GatewayUnavailable):
        gateway.refund(RefundRequest(order_no=mock.order_no(), refund_no="R0000000001", amount_fen=1,
                                     order_amount_fen=1, reason="x"))


def test_a_gateway_refusing_connections_is_unavailable() -> None:
    with alipay_mock() as mock:
        gateway = mock.gateway()
        mock.server.refuse()
        with pytest.raises(GatewayUnavailable) as unavailable:
            gateway.statement(day=datetime.now(UTC).date())
        assert unavailable.value.rule == "gateway_unavailable"


def test_an_answer_signed_by_another_key_is_never_trusted(mock: AlipayMockHandle) -> None:
    impostor = generate_key_pair("not-the-gateway")
    gateway = mock.gateway(gateway_public_key_pem=impostor.public_pem)
    with pytest.raises(GatewayUnavailable) as unavailable:
        gateway.query(order_no=mock.order_no(), created_at=datetime.now(UTC))
    assert unavailable.value.rule == "signature_invalid"


def test_a_merchant_key_the_gateway_does_not_know_is_refused(mock: AlipayMockHandle) -> None:
    stranger = generate_key_pair("another-merchant")
    gateway = mock.gateway(private_key_pem=stranger.private_pem)
    with pytest.raises(GatewayRefused) as refused:
        gateway.query(order_no=mock.order_no(), created_at=datetime.now(UTC))
    assert "isv.invalid-signature" in str(refused.value)
    assert load_private_key(stranger.private_pem)  # the key itself is fine: only the gateway does not know it
