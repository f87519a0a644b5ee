"""The UnionPay-style adapter: signing base pinned, notifications verified with the configured gateway
certificate only, and (over real sockets, against the mock gateway) query, refund and statement."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from adapters.payments import signing
from adapters.payments.base import NotificationRejected, OrderRequest
from adapters.payments.unionpay import UnionPayGateway

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
    assert trade.paid_at == CREATED
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
