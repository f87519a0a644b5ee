"""The applicant's HTML pages of a payment (Chinese): the page that sends the browser to the gateway's cashier,
and the page a browser returns to, which shows the order's stored state and never changes it."""

from __future__ import annotations

from html import escape
from typing import Any

from hub.payments.models import PaymentOrder

STATE_LABELS = {
    "created": "待支付", "pending": "支付中", "paid": "已支付", "failed": "支付失败", "closed": "已关闭",
    "refunding": "退款中", "refunded": "已退款",
}
GATEWAY_LABELS = {"alipay": "支付宝", "unionpay": "银联"}


def _page(title: str, body: str, *, onload: str = "") -> str:
    return (f'<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'</head><body{onload}><h1>{escape(title)}</h1>\n{body}\n</body></html>\n')


def yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def _summary(order: PaymentOrder) -> str:
    return (f"<dl><dt>订单号</dt><dd id=\"order_no\">{escape(order.order_no)}</dd>"
            f"<dt>缴费事项</dt><dd>{escape(order.subject)}</dd>"
            f"<dt>金额</dt><dd id=\"amount\">{yuan(order.amount_fen)} 元</dd>"
            f"<dt>支付渠道</dt><dd>{GATEWAY_LABELS.get(order.gateway, escape(order.gateway))}</dd>"
            f"<dt>状态</dt><dd id=\"state\" data-state=\"{escape(order.state)}\">"
            f"{STATE_LABELS.get(order.state, escape(order.state))}</dd></dl>")


def checkout_form(order: PaymentOrder, checkout: dict[str, Any]) -> str:
    """A POST checkout: an auto-submitting form to the gateway (a button when scripts are off)."""
    fields = "".join(f'<input type="hidden" name="{escape(str(k))}" value="{escape(str(v))}">'
                     for k, v in (checkout.get("fields") or {}).items())
    form = (f'<form id="checkout" method="post" action="{escape(str(checkout["url"]))}">{fields}'
            '<button type="submit">前往支付</button></form>')
    return _page("正在前往支付机构收银台", _summary(order) + form,
                 onload=' onload="document.getElementById(\'checkout\').submit()"')


def not_payable(order: PaymentOrder, *, expired: bool) -> str:
    reason = "订单已过期，请重新发起缴费。" if expired else "该订单当前不可支付。"
    return _page("缴费订单", _summary(order) + f"<p>{reason}</p>")


def returned(order: PaymentOrder | None) -> str:
    """The browser's way back from the cashier: the stored state only."""
    note = "<p id=\"note\">支付结果以支付机构通知为准。如已付款，状态将在收到支付机构通知后更新，请稍后刷新查看。</p>"
    if order is None:
        return _page("支付结果", "<p>未找到该订单。</p>" + note)
    return _page("支付结果", _summary(order) + note)
