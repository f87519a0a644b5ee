"""``hub deliveries ...``: inspect, retry and send outbound deliveries (national results, legacy pushes).

Register in hub/cli.py with ``app.add_typer(deliveries_app, name="deliveries")``.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from hub.cli_options import JsonOpt
from hub.clock import SystemClock
from hub.db import make_engine, make_session_factory, unit_of_work
from hub.settings import get_settings

deliveries_app = typer.Typer(help="对外投递：国家系统办件结果上报、部门原系统新办件推送 (outbound deliveries)",
                             no_args_is_help=True)
console = Console()


def _factory() -> sessionmaker[Session]:
    return make_session_factory(make_engine(get_settings().resolved_database_url()))


@deliveries_app.command("status")
def status_command(
    as_json: JsonOpt = False,
    recent: Annotated[int, typer.Option(help="how many recent failures to list")] = 20,
) -> None:
    """Deliveries per partner, kind and status, and the most recent failures with their errors."""
    from hub.deliveries import service  # here, not at the top: it loads the SOAP stack every `hub` start paid for

    with _factory()() as session:
        report = service.status(session, recent=recent)
    if as_json:
        console.print_json(json.dumps(report.as_dict(), ensure_ascii=False))
        return
    counts = Table(title="投递状态 deliveries")
    for column in ("partner", "kind", "status", "count"):
        counts.add_column(column)
    for row in report.counts:
        style = {"failed": "red", "pending": "yellow", "sent": "green"}.get(row.status)
        counts.add_row(row.partner, row.kind, f"[{style}]{row.status}[/]", str(row.count))
    console.print(counts)
    if not report.failures:
        console.print("[green]no failed deliveries[/]")
        return
    failures = Table(title="最近失败 recent failures")
    for column in ("id", "partner", "kind", "case", "attempts", "next attempt", "error"):
        failures.add_column(column)
    for f in report.failures:
        nxt = f.next_attempt_at.isoformat(timespec="seconds") if f.next_attempt_at else "gave up — use retry"
        failures.add_row(str(f.id), f.partner, f.kind, f.tracking_no, str(f.attempts), nxt, f.last_error or "")
    console.print(failures)


@deliveries_app.command("retry")
def retry_command(
    ids: Annotated[list[int] | None, typer.Argument(help="delivery ids; omit with --all-failed")] = None,
    all_failed: Annotated[bool, typer.Option("--all-failed", help="every failed delivery")] = False,
) -> None:
    """Put failed deliveries back to pending; the next worker pass (or `hub deliveries run`) sends them."""
    if not ids and not all_failed:
        console.print("[red]name delivery ids, or pass --all-failed[/]")
        raise typer.Exit(2)
    from hub.deliveries import service

    with unit_of_work(_factory()) as session:
        count = service.retry(session, now=SystemClock().now(), ids=None if all_failed else ids)
    console.print(f"[green]{count} deliveries reset to pending[/]")


@deliveries_app.command("run")
def run_command(
    batch: Annotated[int, typer.Option(help="deliveries per transaction")] = 20,
) -> None:
    """Send every due delivery now (what the worker does on each tick)."""
    from hub import progress
    from hub.deliveries import service
    from hub.deliveries.clients import DeliveryClients

    factory, clock = _factory(), SystemClock()
    with factory() as session:
        due = service.due_count(session, now=clock.now())
    with progress.task(console, "delivering", due) as advance:
        report = service.drain(factory, clock=clock, clients=DeliveryClients(), batch=batch,
                               on_batch=lambda done: advance(done.total))
    console.print(f"sent {len(report.sent)}, failed {len(report.failed)}")
    if report.failed:
        raise typer.Exit(1)
