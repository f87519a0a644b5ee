"""``hub payments reconcile / query-pending / status``: the operator's side of payments (issue 12, part
reconcile), on the database directly with the gateways configured in the settings (``HUB_PAYMENTS_*``).

Register in hub/cli.py with ``app.add_typer(payments_app, name="payments")``.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from hub.cli_options import JsonOpt
from hub.clock import SystemClock, business_date
from hub.db import make_engine, make_session_factory, unit_of_work
from hub.errors import FieldError, ValidationFailed
from hub.settings import get_settings

payments_app = typer.Typer(help="缴费：对账、查询未决订单、状态 (payments: reconcile, query-pending, status)",
                           no_args_is_help=True)
console = Console(soft_wrap=True)


def _factory() -> sessionmaker[Session]:
    return make_session_factory(make_engine(get_settings().resolved_database_url()))


def _gateways() -> Any:
    from hub.payments.gateways import Gateways

    return Gateways.from_settings(get_settings())


def _print_json(document: object) -> None:
    typer.echo(json.dumps(document, ensure_ascii=False, indent=2, default=str))


def _day(value: str | None) -> date:
    if value is None:
        return business_date(SystemClock().now()) - timedelta(days=1)
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed([FieldError("date", "date_format", "日期格式应为 YYYY-MM-DD (--date)")]) from None


@payments_app.command("reconcile")
def reconcile_command(
    gateway: Annotated[str, typer.Option(help="alipay or unionpay")],
    on: Annotated[str | None, typer.Option("--date", help="the business day, YYYY-MM-DD (default: yesterday)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Reconcile one gateway's business day with its statement now (replacing that day's report) and show
    every difference. Exit 0 when matched, 2 when differences were found, 1 when the statement was unavailable."""
    from hub.payments import reconciliation

    day = _day(on)
    gateways = _gateways()
    with unit_of_work(_factory()) as session:
        report = reconciliation.reconcile(session, gateway=gateway, day=day, gateways=gateways,
                                          now=SystemClock().now())
        view = reconciliation.report_view(report)
    if as_json:
        _print_json(view)
    else:
        _print_report(view)
    raise typer.Exit({"matched": 0, "differences": 2}.get(view["status"], 1))


def _print_report(view: dict[str, Any]) -> None:
    colour = {"matched": "green", "differences": "yellow"}.get(view["status"], "red")
    console.print(f"对账 {view['gateway']} {view['business_date']}: [{colour}]{view['status']}[/]", highlight=False)
    summary = view["summary"]
    if "error" in summary:
        console.print(f"[red]statement unavailable:[/] {summary['error']}", highlight=False)
        return
    console.print(f"hub: {summary['hub_payments']} payments {summary['hub_paid_fen']} fen, "
                  f"{summary['hub_refunds']} refunds {summary['hub_refunded_fen']} fen; gateway: "
                  f"{summary['gateway_payments']} payments {summary['gateway_paid_fen']} fen, "
                  f"{summary['gateway_refunds']} refunds {summary['gateway_refunded_fen']} fen", highlight=False)
    if not view["differences"]:
        return
    table = Table(title="差异 differences")
    for column in ("kind", "order", "refund", "hub fen", "gateway fen", "hub state", "corrected", "note"):
        table.add_column(column)
    for d in view["differences"]:
        table.add_row(d["kind"], d["order_no"], d["refund_no"] or "", str(d["hub_amount_fen"]),
                      str(d["gateway_amount_fen"]), d["hub_state"] or "", "yes" if d["corrected"] else "",
                      d["note"] or "")
    console.print(table)


@payments_app.command("query-pending")
def query_pending_command(as_json: JsonOpt = False) -> None:
    """Ask the gateways now about every open order due for a query (what the worker's payments-query job does)."""
    from hub.payments import reconciliation

    report = reconciliation.QueryReport()
    reconciliation.query_pending(_factory(), gateways=_gateways(), settings=get_settings(),
                                 now=SystemClock().now(), report=report)
    if as_json:
        _print_json(report.as_dict())
        return
    console.print(f"queried {len(report.queried)}, changed {len(report.changed)}, closed {len(report.closed)}, "
                  f"no answer {len(report.unanswered)}", highlight=False)
    for name in ("changed", "closed", "unanswered"):
        for order_no in getattr(report, name):
            console.print(f"  {name}: {order_no}", highlight=False)


@payments_app.command("status")
def status_command(as_json: JsonOpt = False) -> None:
    """Open orders per gateway and state, the refunds not settled yet, and each gateway's last reconciliation."""
    from hub.payments import reconciliation, refunds
    from hub.payments.models import PaymentOrder

    with _factory()() as session:
        counts = session.execute(
            select(PaymentOrder.gateway, PaymentOrder.state, func.count())
            .where(PaymentOrder.state.in_(("created", "pending", "refunding")))
            .group_by(PaymentOrder.gateway, PaymentOrder.state).order_by(PaymentOrder.gateway, PaymentOrder.state))
        open_orders = [{"gateway": g, "state": s, "count": n} for g, s, n in counts]
        pending = [refunds.refund_view(refund, order) for refund, order in refunds.pending(session)]
        latest = {gateway: reconciliation.report_view(report)
                  for gateway, report in reconciliation.latest_per_gateway(session).items()}
    document = {"gateways": _gateways().names(), "open_orders": open_orders, "pending_refunds": pending,
                "last_reconciliation": latest}
    if as_json:
        _print_json(document)
        return
    console.print(f"gateways configured: {', '.join(document['gateways']) or 'none'}", highlight=False)
    table = Table(title="未结订单 open orders")
    for column in ("gateway", "state", "count"):
        table.add_column(column)
    for row in open_orders:
        table.add_row(row["gateway"], row["state"], str(row["count"]))
    console.print(table)
    refunds_table = Table(title="待处理退款 pending refunds")
    for column in ("refund", "order", "gateway", "fen", "state", "attempts", "next attempt", "error"):
        refunds_table.add_column(column)
    for r in pending:
        refunds_table.add_row(r["refund_no"], r["order_no"], r["gateway"], str(r["amount_fen"]), r["state"],
                              str(r["attempts"]), str(r["next_attempt_at"] or ""), r["last_error"] or "")
    console.print(refunds_table)
    for gateway, view in latest.items():
        console.print(f"last reconciliation {gateway}: {view['business_date']} {view['status']} "
                      f"({len(view['differences'])} differences)", highlight=False)
