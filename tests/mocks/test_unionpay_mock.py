"""The UnionPay-style mock gateway over real sockets, driven with raw forms as a merchant's system and a browser
would (requests signed by the test itself, not by the hub's adapter)."""

from __future__ import annotations

import base64
import io
import secrets
import zipfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from mocks.payments.common import CST, now_utc
from mocks.payments.unionpay import UnionPayMock
from mocks.runner import RunningMocks
from mocks.server import MockServer
from tests.mocks.unionpay_support import (
    Browser,
    Merchant,
    fresh,
    gateway_signature_ok,
    merchant_endpoint,
    merchant_signed,
    parse_answer,
    unionpay_mock,
    wait_until,
)

HTTP = httpx.Client(timeout=60, trust_env=False)
FRONT, BACK, QUERY, FILE = (f"/gateway/api/{name}.do" for name in
                            ("frontTransReq", "backTransReq", "queryTrans", "fileTransfer"))


@pytest.fixture(scope="module")
def running() -> Iterator[tuple[MockServer, UnionPayMock]]:
    with unionpay_mock() as pair:
        yield pair


@pytest.fixture(scope="module")
def site() -> Iterator[Merchant]:
    with merchant_endpoint() as merchant:
        yield merchant


@pytest.fixture(scope="module")
def keys(running: tuple[MockServer, UnionPayMock]) -> dict[str, str]:
    return dict(HTTP.get(f"{running[0].url}/_keys").json())


@pytest.fixture
def gateway(running: tuple[MockServer, UnionPayMock], site: Merchant) -> Iterator[MockServer]:
    server, mock = running
    fresh(server, mock)
    site.reset()
    yield server
    fresh(server, mock)


def cst(moment: datetime) -> str:
    return moment.astimezone(CST).strftime("%Y%m%d%H%M%S")


def common(keys: dict[str, str], txn_type: str, sub: str, biz: str) -> dict[str, str]:
    return {"version": "5.1.0", "encoding": "UTF-8", "signMethod": "01", "txnType": txn_type, "txnSubType": sub,
            "bizType": biz, "accessType": "0", "merId": keys["mer_id"]}


def consume(keys: dict[str, str], site: Merchant, *, amount: int = 2000, at: datetime | None = None,
            ttl: timedelta = timedelta(minutes=30)) -> dict[str, str]:
    created = at or datetime.now(UTC)
    order = "P" + created.astimezone(CST).strftime("%Y%m%d") + "".join(secrets.choice("0123456789")
                                                                       for _ in range(12))
    return merchant_signed(keys, {
        **common(keys, "01", "01", "000201"), "channelType": "07", "orderId": order, "txnTime": cst(created),
        "txnAmt": str(amount), "currencyCode": "156", "backUrl": site.notify_url, "frontUrl": site.return_url,
        "payTimeout": cst(created + ttl), "orderDesc": "居民身份证换领工本费"})


def cashier(gateway: MockServer, fields: dict[str, str]) -> httpx.Response:
    page = HTTP.post(gateway.url + FRONT, data=fields)
    assert page.status_code == 200, page.text
    return page


def press(page: httpx.Response, name: str) -> httpx.Response:
    browser = Browser()
    try:
        return browser.press(page, name)
    finally:
        browser.close()


def query(gateway: MockServer, keys: dict[str, str], order: str, txn_time: str) -> dict[str, Any]:
    fields = merchant_signed(keys, {**common(keys, "00", "00", "000000"), "orderId": order, "txnTime": txn_time})
    answer = parse_answer(HTTP.post(gateway.url + QUERY, data=fields))
    assert gateway_signature_ok(keys, answer)
    return answer


def refund(gateway: MockServer, keys: dict[str, str], *, refund_no: str, query_id: str, amount: int,
           txn_time: str | None = None) -> dict[str, Any]:
    fields = merchant_signed(keys, {
        **common(keys, "04", "00", "000201"), "channelType": "07", "orderId": refund_no, "origQryId": query_id,
        "txnTime": txn_time or cst(datetime.now(UTC)), "txnAmt": str(amount), "currencyCode": "156"})
    answer = parse_answer(HTTP.post(gateway.url + BACK, data=fields))
    assert gateway_signature_ok(keys, answer)
    return answer


def paid(gateway: MockServer, keys: dict[str, str], site: Merchant, amount: int = 2000) -> dict[str, str]:
    order = consume(keys, site, amount=amount)
    assert press(cashier(gateway, order), "pay").status_code == 303
    return order


def test_the_cashier_page_is_chinese_with_the_item_the_amount_in_yuan_and_two_forms(
        gateway: MockServer, keys: dict[str, str], site: Merchant) -> None:
    order = consume(keys, site, amount=2050)
    page = cashier(gateway, order)
    assert page.headers["content-type"].startswith("text/html")
    text = page.text
    assert "收银台" in text and "居民身份证换领工本费" in text and "20.50 元" in text and order["orderId"] in text
    assert '<form id="pay" method="post"' in text and '<form id="cancel" method="post"' in text


def test_every_endpoint_refuses_a_bad_merchant_signature_with_resp_code_11(
        gateway: MockServer, keys: dict[str, str], site: Merchant) -> None:
    order = consume(keys, site)
    tampered = {**order, "txnAmt": "1"}
    page = HTTP.post(gateway.url + FRONT, data=tampered)
    assert page.status_code == 400 and "验证签名失败" in page.text
    for path, txn in ((QUERY, ("00", "00", "000000")), (BACK, ("04", "00", "000201")),
                      (FILE, ("76", "01", "000000"))):
        fields = merchant_signed(keys, {**common(keys, *txn), "orderId": order["orderId"], "txnTime": order[
            "txnTime"], "origQryId": "1" * 21, "txnAmt": "1", "settleDate": "1130", "fileType": "00"})
        fields["orderId"] = "P99999999999999999999"  # changed after signing
        answer = parse_answer(HTTP.post(gateway.url + path, data=fields))
        assert (answer["respCode"], answer["respMsg"]) == ("11", "验证签名失败"), path
        assert gateway_signature_ok(keys, answer)
    unsigned = {k: v for k, v in order.items() if k != "signature"}
    assert HTTP.post(gateway.url + FRONT, data=unsigned).status_code == 400


def test_paying_notifies_back_url_until_http_200_with_the_same_fields_and_returns_the_browser(
        gateway: MockServer, keys: dict[str, str], site: Merchant) -> None:
    site.answer_with(500, 503)  # the merchant fails twice, then acknowledges
    order = consume(keys, site)
    back = press(cashier(gateway, order), "pay")
    assert back.status_code == 303
    location = httpx.URL(back.headers["location"])
    assert str(location).startswith(site.return_url)
    front_fields = dict(location.params)
    assert (front_fields["orderId"], front_fields["respCode"]) == (order["orderId"], "00")
    assert gateway_signature_ok(keys, front_fields)  # signed, but display only
    received = site.wait_for(3, order_no=order["orderId"])
    assert len({r.body for r in received}) == 1  # every resend is the same notification
    note = received[0].fields
    assert gateway_signature_ok(keys, note)
    assert (note["txnType"], note["respCode"], note["txnAmt"], note["merId"]) == ("01", "00", "2000", keys["mer_id"])
    assert note["queryId"].isdigit() and len(note["queryId"]) == 21

    def acknowledged() -> list[dict[str, Any]]:
        sent = HTTP.get(f"{gateway.url}/_control/notifications", params={"order_no": order["orderId"]}).json()
        record = sent["notifications"][0]
        return list(record["attempts"]) if record["finished"] else []

    attempts = wait_until(acknowledged, what="the acknowledged attempt to be recorded")
    assert [a["status_code"] for a in attempts] == [500, 503, 200] and attempts[-1]["acknowledged"]


def test_a_lost_notification_is_never_sent_and_the_query_still_answers_paid(
        gateway: MockServer, keys: dict[str, str], site: Merchant) -> None:
    HTTP.post(f"{gateway.url}/_control/payment-faults", json={"lose_notifications": True}).raise_for_status()
    order = consume(keys, site)
    cashier(gateway, order)
    assert HTTP.post(f"{gateway.url}/_control/trades/{order['orderId']}/pay").status_code == 200
    records = HTTP.get(f"{gateway.url}/_control/notifications", params={"order_no": order["orderId"]}).json()
    assert [(r["lost"], r["attempts"]) for r in records["notifications"]] == [(True, [])]
    answer = query(gateway, keys, order["orderId"], order["txnTime"])
    assert (answer["respCode"], answer["origRespCode"], answer["txnAmt"]) == ("00", "00", "2000")
    assert not [r for r in site.received if r.fields.get("orderId") == order["orderId"]]


def test_query_answers_34_before_payment_and_for_another_txn_time_and_closes_after_pay_timeout(
        gateway: MockServer, keys: dict[str, str], site: Merchant) -> None:
    order = consume(keys, site, ttl=timedelta(minutes=10))
    cashier(gateway, order)
    assert query(gateway, keys, order["orderId"], order["txnTime"])["respCode"] == "34"
    assert query(gateway, keys, "P20991231000000000000", order["txnTime"])["respCode"] == "34"
    mock: UnionPayMock = gateway.app.state.unionpay
    mock.state.clock = lambda: datetime.now(UTC) + timedelta(minutes=20)  # past payTimeout
    try:
        assert query(gateway, keys, order["orderId"], order["txnTime"])["respCode"] == "34"
    finally:
        mock.state.clock = now_utc
    trade = HTTP.get(f"{gateway.url}/_control/trades/{order['orderId']}").json()
    assert trade["status"] == "closed"
    refused = press(cashier(gateway, order), "pay")  # the cashier no longer takes the money
    assert refused.status_code == 409


def test_cancel_returns_the_browser_and_the_order_was_never_a_transaction(
        gateway: MockServer, keys: dict[str, str], site: Merchant) -> None:
    order = consume(keys, site)
    back = press(cashier(gateway, order), "cancel")
    assert back.status_code == 303 and back.headers["location"].startswith(site.return_url)
    assert query(gateway, keys, order["orderId"], order["txnTime"])["respCode"] == "34"
    assert HTTP.get(f"{gateway.url}/_control/trades/{order['orderId']}").json()["status"] == "closed"


@pytest.mark.parametrize("switch,code", [("query_resp_code", "03"), ("orig_resp_code", "05"),
                                         ("orig_resp_code", "04")])
def test_switches_make_queries_answer_not_final_codes(gateway: MockServer, keys: dict[str, str], site: Merchant,
                                                      switch: str, code: str) -> None:
    order = paid(gateway, keys, site)
    HTTP.post(f"{gateway.url}/_control/unionpay-faults", json={switch: code}).raise_for_status()
    answer = query(gateway, keys, order["orderId"], order["txnTime"])
    assert answer["respCode" if switch == "query_resp_code" else "origRespCode"] == code
    assert HTTP.get(f"{gateway.url}/_control/unionpay-faults").json()[switch] == code
    HTTP.delete(f"{gateway.url}/_control/unionpay-faults").raise_for_status()
    assert query(gateway, keys, order["orderId"], order["txnTime"])["origRespCode"] == "00"


def test_refunds_are_keyed_by_their_own_order_id_and_a_retry_refunds_once(
        gateway: MockServer, keys: dict[str, str], site: Merchant) -> None:
    order = paid(gateway, keys, site)
    query_id = query(gateway, keys, order["orderId"], order["txnTime"])["queryId"]
    refund_no = "R" + order["orderId"][1:]
    first = refund(gateway, keys, refund_no=refund_no, query_id=query_id, amount=800)
    assert (first["respCode"], first["orderId"], first["origQryId"], first["txnAmt"]) == (
        "00", refund_no, query_id, "800")
    retry = refund(gateway, keys, refund_no=refund_no, query_id=query_id, amount=800,
                   txn_time=cst(datetime.now(UTC) + timedelta(seconds=5)))
    assert (retry["respCode"], retry["queryId"], retry["txnTime"]) == ("00", first["queryId"], first["txnTime"])
    conflicting = refund(gateway, keys, refund_no=refund_no, query_id=query_id, amount=900)
    assert conflicting["respCode"] == "12"
    too_much = refund(gateway, keys, refund_no=refund_no[:-1] + "x", query_id=query_id, amount=1300)
    assert too_much["respCode"] == "36"
    unknown = refund(gateway, keys, refund_no=refund_no[:-1] + "y", query_id="9" * 21, amount=1)
    assert unknown["respCode"] == "35"
    trade = HTTP.get(f"{gateway.url}/_control/trades/{order['orderId']}").json()
    assert trade["refunded_fen"] == 800 and len(trade["refunds"]) == 1
    confirmed = query(gateway, keys, refund_no, first["txnTime"])
    assert (confirmed["origRespCode"], confirmed["txnAmt"], confirmed["origQryId"]) == ("00", "800", query_id)
    notes = [r.fields for r in site.wait_for(2, order_no=order["orderId"]) if r.fields["txnType"] == "04"]
    assert [(n["orderId"], n["txnAmt"], n["reqReserved"]) for n in notes] == [(refund_no, "800", order["orderId"])]


def test_the_statement_file_holds_the_days_payments_and_refunds(
        gateway: MockServer, keys: dict[str, str], site: Merchant) -> None:
    order = paid(gateway, keys, site, amount=3000)
    query_id = query(gateway, keys, order["orderId"], order["txnTime"])["queryId"]
    refund_no = "R" + order["orderId"][1:]
    refund(gateway, keys, refund_no=refund_no, query_id=query_id, amount=1000)
    today = datetime.now(CST)
    fields = merchant_signed(keys, {**common(keys, "76", "01", "000000"), "settleDate": today.strftime("%m%d"),
                                    "txnTime": cst(today), "fileType": "00"})
    answer = parse_answer(HTTP.post(gateway.url + FILE, data=fields))
    assert answer["respCode"] == "00" and gateway_signature_ok(keys, answer)
    assert answer["fileName"] == f"INN{today:%y%m%d}88ZM_{keys['mer_id']}.zip"
    archive = zipfile.ZipFile(io.BytesIO(zlib.decompress(base64.b64decode(answer["fileContent"]))))
    text = archive.read(archive.namelist()[0]).decode()
    mine = [line for line in text.splitlines() if order["orderId"] in line or refund_no in line]
    assert [line[:3] for line in mine] == ["S22", "S30"]
    assert "000000003000" in mine[0] and query_id in mine[0]
    assert "000000001000" in mine[1] and query_id in mine[1] and order["orderId"] in mine[1]


def test_down_answers_503_and_the_keys_are_served(gateway: MockServer, keys: dict[str, str]) -> None:
    assert set(keys) >= {"merchant_private_key", "merchant_public_key", "merchant_certificate",
                         "gateway_public_key", "gateway_certificate", "mer_id"}
    assert "BEGIN CERTIFICATE" in keys["gateway_certificate"]
    HTTP.post(f"{gateway.url}/_control/payment-faults", json={"down": True}).raise_for_status()
    assert HTTP.post(gateway.url + QUERY, data={"x": "1"}).status_code == 503


def test_the_runner_starts_the_unionpay_mock_at_its_offset(mocks: RunningMocks) -> None:
    endpoint = mocks.endpoint("unionpay")
    assert endpoint.service_url == f"{endpoint.url}/gateway/api"
    assert HTTP.get(f"{endpoint.url}/_keys").json()["mer_id"]
    assert any(line.startswith("unionpay") for line in mocks.describe())


def test_concurrent_retries_of_one_refund_make_one_refund(
        gateway: MockServer, keys: dict[str, str], site: Merchant) -> None:
    order = paid(gateway, keys, site)
    query_id = query(gateway, keys, order["orderId"], order["txnTime"])["queryId"]
    refund_no = "R" + order["orderId"][1:]
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: refund(gateway, keys, refund_no=refund_no, query_id=query_id, amount=500),
                                range(4)))
    assert {(a["respCode"], a["queryId"], a["txnTime"]) for a in answers} == {
        ("00", answers[0]["queryId"], answers[0]["txnTime"])}
    trade = HTTP.get(f"{gateway.url}/_control/trades/{order['orderId']}").json()
    assert (trade["refunded_fen"], len(trade["refunds"])) == (500, 1)


def test_a_payment_made_at_a_given_time_is_on_that_days_statement(
        gateway: MockServer, keys: dict[str, str], site: Merchant) -> None:
    # What reconciliation tests do: the hub on a test clock, the payment placed on a day of its own.
    order = consume(keys, site, at=datetime(2026, 3, 11, 2, 0, tzinfo=UTC))
    cashier(gateway, order)
    paid_at = datetime(2025, 12, 31, 23, 30, tzinfo=CST)
    HTTP.post(f"{gateway.url}/_control/trades/{order['orderId']}/pay",
              json={"paid_at": paid_at.isoformat()}).raise_for_status()
    fields = merchant_signed(keys, {**common(keys, "76", "01", "000000"), "settleDate": "1231",
                                    "txnTime": cst(datetime.now(UTC)), "fileType": "00"})
    answer = parse_answer(HTTP.post(gateway.url + FILE, data=fields))
    assert answer["fileName"].startswith("INN251231")
    archive = zipfile.ZipFile(io.BytesIO(zlib.decompress(base64.b64decode(answer["fileContent"]))))
    text = archive.read(archive.namelist()[0]).decode()
    assert [line[:3] for line in text.splitlines() if order["orderId"] in line] == ["S22"]
    assert "1231233000" in text  # MMDDhhmmss, China time
