"""The Alipay-style gateway adapter (支付宝开放平台 style): RSA2 over the sorted parameter string.

Wire facts this module speaks (and the mock in mocks/payments/alipay.py answers):

* Every call is ``gateway.do`` with the common parameters ``app_id, method, format=JSON, charset=utf-8,
  sign_type=RSA2, timestamp (yyyy-MM-dd HH:mm:ss, China Standard Time), version=1.0, biz_content`` (JSON) and
  ``sign``: SHA256withRSA by the merchant's key over the sorted ``k=v&…`` string of every non-empty parameter but
  ``sign``.
* An answer is ``{"<method with _>_response": {...}, "sign": "..."}``; ``sign`` is the gateway's signature over
  the exact text of the ``*_response`` value as sent. ``code`` 10000 is success, 20000 the gateway's own trouble,
  40004 a business refusal with ``sub_code`` (ACQ.TRADE_NOT_EXIST …), 40001/40002 a request the gateway rejects.
* Page pay (alipay.trade.page.pay) is the browser going to ``gateway.do?<signed parameters>``.
* A notification is a form POST (``notify_id, notify_time, trade_status, out_trade_no, trade_no, total_amount,
  seller_id, app_id, gmt_payment, buyer_logon_id …``); its signature excludes ``sign`` and ``sign_type``. The
  merchant answers exactly ``success``, else it is resent.
* Amounts are yuan with two decimals ("20.00"), converted to and from fen exactly — never through a float.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone

from adapters.payments.signing import sorted_string

CST = timezone(timedelta(hours=8), "CST")
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
SUCCESS_CODE = "10000"

_YUAN = re.compile(r"^(0|[1-9][0-9]{0,11})(?:\.([0-9]{1,2}))?$")


def fen_to_yuan(fen: int) -> str:
    """2000 → "20.00" (integer arithmetic; negative amounts keep their sign)."""
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def yuan_to_fen(text: str) -> int:
    """"20.00" → 2000, "0.5" → 50, "-5.00" → -500 (statements); anything else (floats' exponents, three decimals,
    spaces, commas) raises ValueError."""
    negative = text.startswith("-")
    match = _YUAN.match(text[1:] if negative else text)
    if match is None:
        raise ValueError(f"not a yuan amount with at most two decimals: {text!r}")
    fen = int(match.group(1)) * 100 + int((match.group(2) or "0").ljust(2, "0"))
    return -fen if negative else fen


def cst_timestamp(at: datetime) -> str:
    return at.astimezone(CST).strftime(TIMESTAMP_FORMAT)


def parse_cst_timestamp(text: str) -> datetime:
    return datetime.strptime(text, TIMESTAMP_FORMAT).replace(tzinfo=CST)


def request_sign_content(params: Mapping[str, str]) -> str:
    """What the merchant signs: every non-empty parameter but ``sign`` (``sign_type`` included), sorted."""
    return sorted_string(params, exclude=frozenset({"sign"}))


def notification_sign_content(params: Mapping[str, str]) -> str:
    """What the gateway signs in a notification or a browser return: without ``sign`` and ``sign_type``."""
    return sorted_string(params, exclude=frozenset({"sign", "sign_type"}))


def response_key(method: str) -> str:
    return method.replace(".", "_") + "_response"


def response_sign_content(body: str, key: str) -> tuple[str, str | None] | None:
    """The exact text of ``"<key>": {...}``'s value as sent, and the ``sign`` beside it (None when absent); None
    when the body has no such object. The signature covers those characters, not a re-serialisation."""
    marker = f'"{key}"'
    start = body.find(marker)
    if start < 0:
        return None
    colon = body.find(":", start + len(marker))
    if colon < 0:
        return None
    value_start = colon + 1
    while value_start < len(body) and body[value_start] in " \t\r\n":
        value_start += 1
    try:
        _, value_end = json.JSONDecoder().raw_decode(body, value_start)
    except json.JSONDecodeError:
        return None
    try:
        document = json.loads(body)
    except json.JSONDecodeError:
        return None
    signature = document.get("sign") if isinstance(document, dict) else None
    return body[value_start:value_end], signature if isinstance(signature, str) else None
