"""`hub dlq …`, `hub partners …` and `hub exchange status`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from hub import progress
from hub.clock import SystemClock
from hub.db import make_engine, make_session_factory, unit_of_work
from hub.settings import get_settings

if TYPE_CHECKING:
    from hub.exchange.models import DeadLetter

dlq_app = typer.Typer(help="死信队列：查看与重放 (dead letters: list, show, replay)")
partners_app = typer.Typer(help="交换伙伴 (exchange partners)")
exchange_app = typer.Typer(help="数据交换状态 (exchange status)")
console = Console()


def _factory():  # type: ignore[no-untyped-def]
    return make_session_factory(make_engine(get_settings().resolved_database_url()))


JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON (for scripts) instead of tables")]


def _print_json(document: object) -> None:
    """Plain JSON on stdout (no colours, no wrapping), one document, for `jq` and scripts."""
    typer.echo(json.dumps(document, ensure_ascii=False, indent=2, default=str))


def _letter_summary(letter: DeadLetter) -> dict[str, object]:
    return {"id": letter.id, "message_id": letter.message_id, "received_at": letter.received_at.isoformat(),
            "source": letter.source, "routing_key": letter.routing_key, "reason": letter.reason,
            "replayed_at": letter.replayed_at.isoformat() if letter.replayed_at else None}


@dlq_app.command("list")
def dlq_list(all_letters: Annotated[bool, typer.Option("--all", help="include replayed ones")] = False,
             limit: int = 50, as_json: JsonOpt = False) -> None:
    """Dead letters, newest first, with their reasons."""
    from hub.exchange.dlq import list_letters

    with _factory()() as session:
        letters = list_letters(session, pending_only=not all_letters, limit=limit)
        if as_json:
            _print_json([_letter_summary(letter) for letter in letters])
            return
        table = Table(title=f"死信 dead letters ({len(letters)})")
        for column in ("id", "received", "source", "routing key", "reason", "replayed"):
            table.add_column(column)
        for letter in letters:
            table.add_row(str(letter.id), letter.received_at.isoformat(timespec="seconds"), letter.source or "-",
                          letter.routing_key, letter.reason[:80],
                          letter.replayed_at.isoformat(timespec="seconds") if letter.replayed_at else "")
    console.print(table)


@dlq_app.command("show")
def dlq_show(letter_id: int, as_json: JsonOpt = False) -> None:
    """One dead letter: reason, headers and body."""
    from hub.exchange.dlq import get_letter

    with _factory()() as session:
        letter = get_letter(session, letter_id)
        if as_json:
            _print_json({**_letter_summary(letter), "headers": letter.headers, "body": letter.body})
            return
        console.print(f"[bold]#{letter.id}[/] {letter.routing_key} from {letter.source} — {letter.reason}")
        console.print_json(json.dumps(letter.headers, ensure_ascii=False, default=str))
        console.print(letter.body[:20000])


@dlq_app.command("replay")
def dlq_replay(letter_ids: Annotated[list[int], typer.Argument(help="dead letter ids")]) -> None:
    """Publish dead letters back to hub.inbound (after fixing their cause)."""
    from hub.exchange.dlq import replay
    from hub.exchange.replay import republisher

    settings = get_settings()
    if not settings.amqp_url:  # applied here, not by a worker: its case events need the hub's keys
        from hub.keys import Policy, resolve_keys

        resolve_keys(settings, Policy.OPERATOR)
    count = 0
    with (unit_of_work(_factory()) as session, republisher(settings, session) as republish,
          progress.task(console, "replaying dead letters", len(letter_ids)) as advance):
        now = SystemClock().now()
        for letter_id in letter_ids:  # one by one, for the progress; still one transaction
            count += replay(session, letter_ids=[letter_id], republish=republish, now=now)
            advance(1)
    console.print(f"[green]replayed[/] {count} dead letter(s)")


@partners_app.command("list")
def partners_list() -> None:
    from hub.exchange.partners import list_partners

    with _factory()() as session:
        table = Table(title="交换伙伴 partners")
        for column in ("code", "name", "kind", "region", "record types", "active"):
            table.add_column(column)
        for p in list_partners(session):
            table.add_row(p.code, p.name, p.kind, p.region_code, ", ".join(p.record_types), str(p.active))
    console.print(table)


@partners_app.command("endpoint")
def partners_endpoint(
    code: str, url: Annotated[str, typer.Argument(help="the partner's WSDL URL, or '-' for none")]
) -> None:
    """Set where the hub calls a national or legacy-department partner."""
    from hub.exchange.partners import set_endpoint

    with unit_of_work(_factory()) as session:
        set_endpoint(session, code=code, endpoint=None if url == "-" else url)
    console.print(f"[green]{code}[/] → {url}")


@partners_app.command("sync")
def partners_sync(
    management_url: Annotated[str, typer.Option(envvar="HUB_RABBITMQ_MANAGEMENT_URL")] = "http://127.0.0.1:15672",
    secret: Annotated[str, typer.Option(envvar="HUB_PARTNER_DEMO_SECRET",
                                        help="password to set for every partner (demo)")] = "demo-Partner-1",
) -> None:
    """Provision one RabbitMQ user per partner, allowed to publish only its own routing keys."""
    from hub.exchange.provisioning import sync_partners

    settings = get_settings()
    with _factory()() as session:
        done = sync_partners(session, settings=settings, management_url=management_url, secret_for=lambda _: secret)
    console.print(f"[green]provisioned[/] {len(done)} partner user(s): {', '.join(done)}")


def _cell(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
    return str(value)


@exchange_app.command("status")
def exchange_status(as_json: JsonOpt = False) -> None:
    """Outbox backlog, dead letters waiting, inbox counts."""
    from hub.exchange.status import exchange_overview

    with _factory()() as session:
        overview = exchange_overview(session)
    if as_json:
        _print_json(overview)
        return
    table = Table(title="数据交换状态 exchange status", show_header=False)
    table.add_column("what")
    table.add_column("value", overflow="fold")
    for key, value in overview.items():
        table.add_row(key.replace("_", " "), _cell(value))
    console.print(table)
