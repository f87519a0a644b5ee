"""The Alipay-style mock over real sockets: the cashier, notifications resent until ``success`` (duplicated, out of
order, lost on request), the merchant's signature checked on every call, signed answers, the daily statement."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from adapters.payments.alipay import (
    CST,
    notification_sign_content,
    parse_statement,
    yuan_to_fen,
)
from adapters.payments.signing import generate_key_pair, load_private_key, load_public_key, verify
from mocks.payments.common import DEV_SCHEDULE_S
from mocks.runner import RunningMocks
from tests.e2e.cli_support import ROOT, free_port_block, hub_executable, operator_env, started
from tests.mocks.alipay_support import AlipayMockHandle, alipay_mock, query_params, wait_until

FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def mock() -> Iterator[AlipayMockHandle]:
    with alipay_mock() as handle:
        yield handle


@pytest.fixture(autouse=True)
def no_faults(mock: AlipayMockHandle) -> Iterator[None]:
    mock.http.delete("/_control/payment-faults")
    yield
    mock.http.delete("/_control/payment-faults")
    mock.receiver.script.clear()


# --- keys, registration ------------------------------------------------------------------------------------------


def test_keys_are_generated_at_start_and_shown_for_dev(mock: AlipayMockHandle) -> None:
    keys = mock.keys
    assert keys["app_id"] and keys["seller_id"].startswith("2088")
    private = load_private_key(keys["merchant_private_key"].encode())
    assert private.public_key().public_numbers() == load_public_key(
        keys["merchant_public_key"].encode()).public_numbers()
    assert load_public_key(keys["merchant_certificate"].encode()).public_numbers() == private.public_key(
    ).public_numbers()
    assert load_public_key(keys["gateway_public_key"].encode()).public_numbers() == load_public_key(
        keys["gateway_certificate"].encode()).public_numbers()
    with alipay_mock() as other:  # every start makes new keys: none is fixed in the code
        assert other.keys["gateway_public_key"] != keys["gateway_public_key"]


def test_the_runner_serves_alipay_at_offset_five_with_its_keys(mocks: RunningMocks) -> None:
    endpoint = mocks.endpoint("alipay")
    assert endpoint.service_url == endpoint.url + "/gateway.do"
    assert httpx.get(f"{endpoint.url}/_keys", trust_env=False).json()["app_id"]
    assert any(line.startswith("alipay") and "/_keys" in line for line in mocks.describe())


# --- the gateway's own checks ------------------------------------------------------------------------------------


def test_a_call_with_a_bad_signature_gets_alipays_error_shape(mock: AlipayMockHandle) -> None:
    def tamper(params: dict[str, str]) -> None:
        params["biz_content"] = params["biz_content"].replace("P", "Q")

    answer = mock.answer(mock.raw_call("alipay.trade.query", {"out_trade_no": "P20261130000000000001"}, tamper=tamper),
                     "alipay.trade.query")
    assert answer == {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature",
                      "sub_msg": "验签出错"}


def test_a_call_signed_by_another_merchant_key_is_refused(mock: AlipayMockHandle) -> None:
    stranger = generate_key_pair("stranger").private_pem.decode()
    answer = mock.answer(mock.raw_call("alipay.trade.query", {"out_trade_no": "P1"}, private_key_pem=stranger),
                     "alipay.trade.query")
    assert answer["sub_code"] == "isv.invalid-signature"


@pytest.mark.parametrize(("tamper", "code", "sub_code"), [
    (lambda p: p.pop("sign"), "40001", "isv.missing-signature"),
    (lambda p: p.update(app_id="2021000000000000"), "40002", "isv.invalid-app-id"),
    (lambda p: p.update(method="alipay.trade.nonesuch"), "40002", "isv.invalid-signature"),
])
def test_missing_or_foreign_common_parameters_are_refused(mock: AlipayMockHandle, tamper: object, code: str,
                                                          sub_code: str) -> None:
    response = mock.raw_call("alipay.trade.query", {"out_trade_no": "P1"}, tamper=tamper)  # type: ignore[arg-type]
    method = json.loads(response.text)
    inner = next(v for k, v in method.items() if k.endswith("_response"))
    assert (inner["code"], inner["sub_code"]) == (code, sub_code)


def test_an_unknown_method_signed_properly_is_an_invalid_method(mock: AlipayMockHandle) -> None:
    answer = mock.answer(mock.raw_call("alipay.trade.nonesuch", {}), "alipay.trade.nonesuch")
    assert answer["sub_code"] == "isv.invalid-method"


def test_page_pay_with_a_changed_amount_shows_an_error_page_not_the_cashier(mock: AlipayMockHandle) -> None:
    order_no = mock.order_no()
    params = query_params(mock.order(order_no, 2000).url)
    params["biz_content"] = params["biz_content"].replace('"20.00"', '"0.01"')
    page = httpx.get(f"{mock.url}/gateway.do", params=params, trust_env=False)
    assert page.status_code == 400 and "isv.invalid-signature" in page.text and "收银台" not in page.text


def test_answers_are_signed_by_the_gateway_beside_the_response_object(mock: AlipayMockHandle) -> None:
    response = mock.raw_call("alipay.trade.query", {"out_trade_no": mock.order_no()})
    document = json.loads(response.text)
    assert set(document) == {"alipay_trade_query_response", "sign"}
    assert mock.answer(response, "alipay.trade.query")["sub_code"] == "ACQ.TRADE_NOT_EXIST"


def test_the_down_switch_answers_503_on_the_gateway_and_the_cashier(mock: AlipayMockHandle) -> None:
    order_no = mock.order_no()
    checkout = mock.order(order_no)
    cashier = mock.open_cashier(checkout)
    mock.set_faults(down=True)
    assert mock.raw_call("alipay.trade.query", {"out_trade_no": order_no}).status_code == 503
    assert mock.click(cashier, "pay").status_code == 503
    assert mock.http.get("/_control/payment-faults").json()["down"] is True
    mock.set_faults(down=None)
    assert mock.click(cashier, "pay").status_code == 303


def test_unknown_fault_switches_are_refused(mock: AlipayMockHandle) -> None:
    assert mock.http.post("/_control/payment-faults", json={"explode": True}).status_code == 422


# --- cashier and notifications ---------------------------------------------------------------------------------


def test_cashier_shows_item_amount_in_yuan_and_order_number(mock: AlipayMockHandle) -> None:
    order_no = mock.order_no()
    page = mock.open_cashier(mock.order(order_no, 2000))
    assert page.headers["content-type"].startswith("text/html")
    for text in ("收银台", "居民身份证换领工本费", "¥20.00 元", order_no, '<form id="pay" method="post"',
                 '<form id="cancel" method="post"'):
        assert text in page.text


def test_paying_redirects_the_browser_with_signed_return_parameters(mock: AlipayMockHandle) -> None:
    order_no = mock.order_no()
    cashier = mock.open_cashier(mock.order(order_no, 2000))
    redirect = mock.click(cashier, "pay")
    assert redirect.status_code == 303
    location = redirect.headers["location"]
    assert location.startswith("http://127.0.0.1:9/api/v1/payments/return/alipay?")
    params = query_params(location)
    assert params["out_trade_no"] == order_no and params["total_amount"] == "20.00"
    assert mock.gateway().verify_return(params)
    assert not mock.gateway().verify_return({**params, "total_amount": "0.01"})


def test_a_notification_is_resent_with_the_same_id_until_the_answer_is_success(mock: AlipayMockHandle) -> None:
    mock.receiver.script.extend(["failure", "SUCCESS", "success "])  # only exactly "success" acknowledges
    order_no = mock.paid_order(2000)
    record = mock.settled(order_no)
    assert len(record) == 1 and record[0]["acknowledged"]
    assert [a["acknowledged"] for a in record[0]["attempts"]] == [False, False, False, True]
    posts = mock.receiver.posts(order_no)
    assert len(posts) == 4 and len({p.form["notify_id"] for p in posts}) == 1
    assert {p.body for p in posts} == {posts[0].body}  # byte for byte the same notification
    assert all(p.content_type.startswith(FORM) for p in posts)
    form = posts[0].form
    assert form["trade_status"] == "TRADE_SUCCESS" and yuan_to_fen(form["total_amount"]) == 2000
    assert verify(load_public_key(mock.keys["gateway_public_key"].encode()), notification_sign_content(form),
                  form["sign"])


@pytest.fixture
def quick_resends(mock: AlipayMockHandle) -> Iterator[None]:
    """The dev schedule's number of attempts at 10 ms intervals (its ≈19 s of waiting add nothing here)."""
    notifier = mock.server.app.state.payment.notifier
    notifier.schedule = (0.01,) * len(DEV_SCHEDULE_S)
    yield
    notifier.schedule = DEV_SCHEDULE_S


def test_resending_gives_up_after_the_schedule(mock: AlipayMockHandle, quick_resends: None) -> None:
    assert len(DEV_SCHEDULE_S) + 1 == 8 and sum(DEV_SCHEDULE_S) < 30  # ≈8 attempts, short in dev and tests
    mock.receiver.script.extend(["failure"] * (len(DEV_SCHEDULE_S) + 1))
    order_no = mock.paid_order()
    record = wait_until(lambda: [r for r in mock.notifications(order_no) if r["finished"]],
                        what="the resending to give up")[0]
    assert not record["acknowledged"] and len(record["attempts"]) == len(DEV_SCHEDULE_S) + 1
    # The buyer paid all the same: the query says so (the hub's query job finds it).
    answer = mock.answer(mock.raw_call("alipay.trade.query", {"out_trade_no": order_no}), "alipay.trade.query")
    assert answer["trade_status"] == "TRADE_SUCCESS"


def test_duplicate_sends_every_notification_twice_at_once_with_one_id(mock: AlipayMockHandle) -> None:
    mock.set_faults(duplicate=True)
    order_no = mock.paid_order()
    records = mock.settled(order_no)
    assert sorted(r["label"] for r in records) == ["duplicate", "normal"]
    assert len({r["notify_id"] for r in records}) == 1 and all(r["acknowledged"] for r in records)
    posts = mock.receiver.posts(order_no)
    assert len(posts) == 2 and posts[0].body == posts[1].body


def test_out_of_order_sends_an_older_waiting_notification_after_the_paid_one(mock: AlipayMockHandle) -> None:
    mock.set_faults(out_of_order=True)
    order_no = mock.paid_order()
    mock.settled(order_no)
    posts = mock.receiver.posts(order_no)
    assert [p.form["trade_status"] for p in posts] == ["TRADE_SUCCESS", "WAIT_BUYER_PAY"]
    paid, stale = posts[0].form, posts[1].form
    assert paid["notify_id"] != stale["notify_id"]
    assert stale["notify_time"] <= paid["notify_time"] and "gmt_payment" not in stale
    assert all(p.rule is None for p in posts)  # both genuine: it is the hub's job to ignore the stale one


def test_lost_notifications_are_never_sent_and_the_query_still_knows(mock: AlipayMockHandle) -> None:
    mock.set_faults(lose_notifications=True)
    order_no = mock.paid_order()
    records = mock.settled(order_no)
    assert all(r["lost"] and not r["attempts"] for r in records)
    assert mock.receiver.posts(order_no) == []
    answer = mock.answer(mock.raw_call("alipay.trade.query", {"out_trade_no": order_no}), "alipay.trade.query")
    assert answer["trade_status"] == "TRADE_SUCCESS" and answer["total_amount"] == "20.00"


@pytest.mark.parametrize(("switch", "field", "value"), [
    ("wrong_merchant", "seller_id", "2088109999999999"),
    ("wrong_app", "app_id", "2021000199999999"),
    ("wrong_amount", "total_amount", "20.01"),
])
def test_faulty_notifications_are_genuinely_signed_but_say_the_wrong_thing(mock: AlipayMockHandle, switch: str,
                                                                           field: str, value: str) -> None:
    mock.set_faults(**{switch: True})
    order_no = mock.paid_order(2000)
    form = wait_until(lambda: mock.notifications(order_no), what="the notification")[0]["form"]
    assert form[field] == value
    assert verify(load_public_key(mock.keys["gateway_public_key"].encode()), notification_sign_content(form),
                  form["sign"])


def test_forge_signature_signs_with_a_key_the_merchant_does_not_know(mock: AlipayMockHandle) -> None:
    mock.set_faults(forge_signature=True)
    order_no = mock.paid_order()
    form = wait_until(lambda: mock.notifications(order_no), what="the notification")[0]["form"]
    assert not verify(load_public_key(mock.keys["gateway_public_key"].encode()), notification_sign_content(form),
                      form["sign"])
    posts = wait_until(lambda: mock.receiver.posts(order_no), what="the forged notification to arrive")
    assert posts[0].rule == "signature_invalid" and posts[0].answer == "failure"


def test_cancelling_closes_the_trade_and_notifies_it_closed(mock: AlipayMockHandle) -> None:
    order_no = mock.order_no()
    cashier = mock.open_cashier(mock.order(order_no))
    redirect = mock.click(cashier, "cancel")
    assert redirect.status_code == 303 and redirect.headers["location"].endswith("/return/alipay")
    mock.settled(order_no)
    assert [p.form["trade_status"] for p in mock.receiver.posts(order_no)] == ["TRADE_CLOSED"]
    assert mock.click(cashier, "pay").status_code == 409
    answer = mock.answer(mock.raw_call("alipay.trade.query", {"out_trade_no": order_no}), "alipay.trade.query")
    assert answer["trade_status"] == "TRADE_CLOSED"


def test_control_pay_pays_without_the_browser_and_notifies(mock: AlipayMockHandle) -> None:
    order_no = mock.order_no()
    mock.open_cashier(mock.order(order_no, 1500))
    paid = mock.http.post(f"/_control/trades/{order_no}/pay")
    assert paid.status_code == 200 and paid.json()["status"] == "paid"
    mock.settled(order_no)
    assert [p.form["trade_status"] for p in mock.receiver.posts(order_no)] == ["TRADE_SUCCESS"]
    assert mock.http.post("/_control/trades/P00000000unknown/pay").status_code == 404


def test_an_expired_trade_closes_and_cannot_be_paid(mock: AlipayMockHandle) -> None:
    order_no = mock.order_no()
    checkout = mock.order(order_no)
    params = query_params(checkout.url)
    biz = json.loads(params["biz_content"])
    past = (datetime.now(UTC) - timedelta(minutes=1)).astimezone(CST)
    biz["time_expire"] = f"{past:%Y-%m-%d %H:%M:%S}"
    response = mock.raw_call("alipay.trade.page.pay", biz)  # re-signed by hand with the past expiry
    assert response.status_code == 400 and "ACQ.TRADE_HAS_CLOSE" in response.text


# --- refunds and the statement ---------------------------------------------------------------------------------


def test_refunds_are_keyed_by_request_number_and_bounded_by_the_balance(mock: AlipayMockHandle) -> None:
    order_no = mock.paid_order(2000)
    biz = {"out_trade_no": order_no, "refund_amount": "5.00", "out_request_no": f"R{order_no[1:]}"}
    first = mock.answer(mock.raw_call("alipay.trade.refund", biz), "alipay.trade.refund")
    again = mock.answer(mock.raw_call("alipay.trade.refund", biz), "alipay.trade.refund")
    assert (first["fund_change"], again["fund_change"]) == ("Y", "N")
    assert first["refund_fee"] == again["refund_fee"] == "5.00"
    too_much = {**biz, "refund_amount": "15.01", "out_request_no": f"R{order_no[1:]}2"}
    assert mock.answer(mock.raw_call("alipay.trade.refund", too_much),
                   "alipay.trade.refund")["sub_code"] == "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"
    rest = {**too_much, "refund_amount": "15.00"}
    assert mock.answer(mock.raw_call("alipay.trade.refund", rest), "alipay.trade.refund")["refund_fee"] == "20.00"


def test_statement_lists_the_days_payments_and_refunds(mock: AlipayMockHandle) -> None:
    paid, refunded = mock.paid_order(2000), mock.paid_order(999)
    cancelled = mock.order_no()
    mock.click(mock.open_cashier(mock.order(cancelled)), "cancel")
    mock.answer(mock.raw_call("alipay.trade.refund", {"out_trade_no": refunded, "refund_amount": "3.33",
                                                  "out_request_no": f"R{refunded[1:]}"}), "alipay.trade.refund")
    # Paid "yesterday" through the control API: listed on yesterday's statement, not today's.
    earlier = mock.order_no()
    mock.open_cashier(mock.order(earlier, 4200))
    yesterday = datetime.now(UTC).astimezone(CST) - timedelta(days=1)
    assert mock.http.post(f"/_control/trades/{earlier}/pay", json={"paid_at": yesterday.isoformat()}).is_success
    today = datetime.now(UTC).astimezone(CST).date()

    def statement(day: object) -> str:
        answer = mock.answer(mock.raw_call("alipay.data.dataservice.bill.downloadurl.query",
                                       {"bill_type": "trade", "bill_date": str(day)}),
                         "alipay.data.dataservice.bill.downloadurl.query")
        download = httpx.get(str(answer["bill_download_url"]), trust_env=False)
        assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
        return download.text

    text = statement(today)
    assert text.startswith("#支付宝业务明细查询") and "#交易合计" in text
    lines = {(x.order_no, x.kind): x.amount_fen for x in parse_statement(text)}
    assert lines[(paid, "payment")] == 2000 and lines[(refunded, "payment")] == 999
    assert lines[(refunded, "refund")] == 333
    assert not any(order in (cancelled, earlier) for order, _ in lines)
    assert {x.order_no for x in parse_statement(statement(yesterday.date()))} >= {earlier}
    future = mock.answer(mock.raw_call("alipay.data.dataservice.bill.downloadurl.query",
                                   {"bill_type": "trade", "bill_date": str(today + timedelta(days=2))}),
                     "alipay.data.dataservice.bill.downloadurl.query")
    assert future["sub_code"] == "isp.bill_not_exist"


def test_a_statement_url_is_only_good_for_the_token_it_gave(mock: AlipayMockHandle) -> None:
    assert mock.http.get("/downloadBillFile.resource", params={"token": "guessed"}).status_code == 404


def test_notification_bodies_are_forms_the_adapter_reads_back(mock: AlipayMockHandle) -> None:
    order_no = mock.paid_order(2000)
    form = wait_until(lambda: mock.notifications(order_no), what="the notification")[0]["form"]
    parsed = mock.gateway().parse_notification(body=urlencode(form).encode(), content_type=FORM)
    assert parsed.trade.order_no == order_no and parsed.trade.status == "paid"


def test_hub_mocks_serves_and_shows_the_alipay_gateway(tmp_path: Path) -> None:
    base = free_port_block(9)
    env = operator_env(tmp_path / "var")
    with started([*hub_executable(), "mocks", "--base-port", str(base)], env, cwd=ROOT,
                 log=tmp_path / "mocks.log") as mocks:
        mocks.wait_until(lambda: "Point the hub at them" in mocks.output(), "`hub mocks` printing its addresses")
        line = next(x for x in mocks.output().splitlines() if x.strip().startswith("alipay"))
        assert f"http://127.0.0.1:{base + 5}/gateway.do" in line and "/_keys" in line
        keys = httpx.get(f"http://127.0.0.1:{base + 5}/_keys", trust_env=False).json()
        assert "BEGIN PRIVATE KEY" in keys["merchant_private_key"]
        assert mocks.stop() == 0
