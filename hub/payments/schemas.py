"""The payment endpoints' bodies (hub/payments/router.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ORDER_NO = r"^[0-9A-Za-z]{8,32}$"


class PaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tracking_no: str = Field(pattern=r"^\d{20}[0-9X]$", description="办件编号")
    query_code: str = Field(min_length=4, max_length=16, description="查询码")
    gateway: Literal["alipay", "unionpay"] = Field(description="支付渠道")


class HistoryEntry(BaseModel):
    from_state: str | None
    to_state: str
    source: str
    occurred_at: datetime


class PaymentOut(BaseModel):
    order_no: str
    tracking_no: str
    gateway: str
    amount_fen: int
    refunded_fen: int = 0
    state: Literal["created", "pending", "paid", "failed", "closed", "refunding", "refunded"]
    pay_url: str = Field(description="the hub's own page that sends the browser to the gateway's cashier")
    expires_at: datetime
    created_at: datetime
    paid_at: datetime | None = None


class PaymentDetail(PaymentOut):
    history: list[HistoryEntry]
