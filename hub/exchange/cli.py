"""`hub dlq …`, `hub partners …` and `hub exchange status`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import InterfaceError, OperationalError

from hub import progress
from hub.cli_options import JsonOpt
from hub.clock import SystemClock
from hub.db import make_engine, make_session_factory, unit_of_work
from hub.settings import get_settings

if TYPE_CHECKING:
    from hub.exchange.models import DeadLetter

dlq_app = typer.Typer(help="死信队列：查看与重放 (dead letters: list, show, replay)")
partners_app = typer.Typer(help="交换伙伴 (exchange partners)")
exchange_app = typer.Typer(help="数据交换状态 (exchange status)")
console = Console()
err_console = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)  # the partner commands: a secret or a message is never broken across lines


def _factory():  # type: ignore[no-untyped-def]
    return make_session_factory(make_engine(get_settings().resolved_database_url()))




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


def _partner_command(as_json: bool, run: Callable[[], Any], show: Callable[[Any], None]) -> None:
    """Run a partner command in one unit of work; a refusal exits 1 with its bilingual message (and, with
    --json, {"error", "message"} on stdout), never a traceback."""
    from hub.exchange.provisioning import PartnerCommandError

    try:
        result = run()
    except PartnerCommandError as exc:
        if as_json:
            print(json.dumps(exc.as_dict(), ensure_ascii=False))
        err_console.print(f"[red]失败 failed:[/] {exc.message}", highlight=False)
        raise typer.Exit(1) from None
    except (OperationalError, InterfaceError) as exc:
        detail = str(getattr(exc, "orig", None) or type(exc).__name__).splitlines()[0][:200]
        message = f"数据库无法访问 (database_unreachable: {detail})"
        if as_json:
            print(json.dumps({"error": "database_unreachable", "message": message}, ensure_ascii=False))
        err_console.print(f"[red]失败 failed:[/] {message}", highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        print(json.dumps(result, ensure_ascii=False, default=str))
    else:
        show(result)


def _broker():  # type: ignore[no-untyped-def]
    from hub.exchange.provisioning import broker_of

    return broker_of(get_settings())


def _show_credentials(verb: str) -> Callable[[dict[str, Any]], None]:
    def show(done: dict[str, Any]) -> None:
        out.print(f"[green]{verb}[/] partner {done['code']}", highlight=False)
        out.print(f"  secret (shown once; REST and AMQP)  {done['secret']}", highlight=False)
        if done["vhost"] is None:
            out.print("  RabbitMQ user                       none: HUB_AMQP_URL is not set (REST only; "
                          "`hub partners sync` once the hub has a broker)", highlight=False)
        else:
            out.print(f"  RabbitMQ user                       {done['amqp_username']} in vhost "
                          f"{done['vhost']}", highlight=False)
        out.print(f"  publishes to hub.inbound with       {done['publish_routing_keys']}", highlight=False)
        out.print(f"  its queues on hub.events named      {done['events_queue_prefix']}<anything>",
                      highlight=False, soft_wrap=True)
    return show


@partners_app.command("add")
def partners_add(
    code: Annotated[str, typer.Argument(help="the partner's code: a-z, 0-9, '-', '_' (its routing-key word)")],
    name: Annotated[str, typer.Option(help="its name, e.g. 沈阳市网上审批平台")],
    region: Annotated[str, typer.Option(help="the GB/T 2260 region it answers for, e.g. 210100")],
    kind: Annotated[str, typer.Option(help="city_platform | legacy_department | national")],
    department: Annotated[str | None, typer.Option(help="department code in that region "
                                                        "(legacy_department)")] = None,
    record_types: Annotated[str | None, typer.Option(help="comma-separated, e.g. case-record.v1,case-event.v1 "
                                                          "(default for a city platform: both)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register a partner with its own secret (shown once) and, with a broker, its own RabbitMQ user."""
    from hub.exchange.provisioning import add_partner

    def run() -> dict[str, Any]:
        types = None if record_types is None else [t.strip() for t in record_types.split(",") if t.strip()]
        with unit_of_work(_factory()) as session:
            return add_partner(session, code=code, name=name, region=region, kind=kind, department=department,
                               record_types=types, broker=_broker(), now=SystemClock().now()).as_dict()

    _partner_command(as_json, run, _show_credentials("added"))


@partners_app.command("rotate")
def partners_rotate(
    code: str, as_json: JsonOpt = False,
    close_connections: Annotated[bool, typer.Option(
        help="also close the partner's open AMQP connections now (RabbitMQ checks a password at login "
             "only)")] = False,
) -> None:
    """A new secret for the partner (REST and RabbitMQ); the old one stops working for every new login."""
    from hub.exchange.provisioning import rotate_secret

    def run() -> dict[str, Any]:
        with unit_of_work(_factory()) as session:
            return rotate_secret(session, code=code, broker=_broker(), now=SystemClock().now(),
                                 close_connections=close_connections).as_dict()

    _partner_command(as_json, run, _show_credentials("rotated"))


@partners_app.command("disable")
def partners_disable(code: str, as_json: JsonOpt = False) -> None:
    """Refuse the partner over REST and delete its RabbitMQ user (its open connections close)."""
    from hub.exchange.provisioning import disable_partner

    def run() -> dict[str, Any]:
        with unit_of_work(_factory()) as session:
            return disable_partner(session, code=code, broker=_broker(), now=SystemClock().now())

    def show(done: dict[str, Any]) -> None:
        user = ("RabbitMQ user deleted" if done["amqp_user_deleted"] else "no RabbitMQ user to delete")
        out.print(f"[yellow]disabled[/] partner {code}: REST refused, {user}", highlight=False)

    _partner_command(as_json, run, show)


@partners_app.command("enable")
def partners_enable(code: str, as_json: JsonOpt = False) -> None:
    """Undo `disable`: the same secret works again; the RabbitMQ user is re-created from its stored hash."""
    from hub.exchange.provisioning import enable_partner

    def run() -> dict[str, Any]:
        with unit_of_work(_factory()) as session:
            return enable_partner(session, code=code, broker=_broker())

    def show(done: dict[str, Any]) -> None:
        user = (f"RabbitMQ user {done['amqp_username']} re-created" if done["amqp_user_created"]
                else "no RabbitMQ user (no broker, or no stored hash: `hub partners rotate` gives it one)")
        out.print(f"[green]enabled[/] partner {code}: REST accepted, {user}", highlight=False)

    _partner_command(as_json, run, show)


@partners_app.command("list")
def partners_list(as_json: JsonOpt = False) -> None:
    """Every partner: kind, region, record types, RabbitMQ user, whether active (never a secret)."""
    from hub.exchange.partners import list_partners
    from hub.exchange.provisioning import partner_row

    def run() -> list[dict[str, Any]]:
        with _factory()() as session:
            return [partner_row(p) for p in list_partners(session)]

    def show(rows: list[dict[str, Any]]) -> None:
        table = Table(title="交换伙伴 partners")
        for column in ("code", "name", "kind", "region", "record types", "RabbitMQ user", "active"):
            table.add_column(column)
        for p in rows:
            table.add_row(p["code"], p["name"], p["kind"], p["region"], ", ".join(p["record_types"]),
                          p["amqp_username"] or "-", str(p["active"]))
        out.print(table)

    _partner_command(as_json, run, show)


@partners_app.command("endpoint")
def partners_endpoint(
    code: str, url: Annotated[str, typer.Argument(help="the partner's WSDL URL, or '-' for none")]
) -> None:
    """Set where the hub calls a national or legacy-department partner."""
    from hub.exchange.partners import set_endpoint

    with unit_of_work(_factory()) as session:
        set_endpoint(session, code=code, endpoint=None if url == "-" else url)
    out.print(f"[green]{code}[/] → {url}")


@partners_app.command("sync")
def partners_sync(as_json: JsonOpt = False) -> None:
    """Create missing partner users on RabbitMQ from their stored password hashes, set their permissions
    again, remove disabled partners' users; never changes an existing user's password. Reports per partner."""
    from hub.exchange.provisioning import sync_partners

    results: list[dict[str, Any]] = []

    def run() -> list[dict[str, Any]]:
        with unit_of_work(_factory()) as session:
            results.extend(r.as_dict() for r in sync_partners(session, broker=_broker()))
        return results

    def show(rows: list[dict[str, Any]]) -> None:
        for row in rows:
            colour = {"error": "red", "password_differs": "yellow", "skipped": "yellow"}.get(row["status"], "green")
            out.print(f"[{colour}]{row['status']:<17}[/] {row['code']:<20} {row['amqp_username']:<32} "
                          f"{row['detail']}", highlight=False)
        out.print(f"{len(rows)} partner(s) checked", highlight=False)

    _partner_command(as_json, run, show)
    # An error for one partner does not stop the others, but the command must not look successful.
    if any(row["status"] == "error" for row in results):
        raise typer.Exit(1)


def _cell(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
    return str(value)


@exchange_app.command("status")
def exchange_status(as_json: JsonOpt = False) -> None:
    """Outbox backlog, dead letters waiting, inbox counts; with HUB_INGEST_SHARDS, who holds each case shard."""
    from hub.exchange.status import exchange_overview

    with _factory()() as session:
        settings = get_settings()  # case shards only with a broker: the in-process bus has one queue
        overview = exchange_overview(session, shards=settings.ingest_shards if settings.amqp_url else 0)
    if as_json:
        _print_json(overview)
        return
    table = Table(title="数据交换状态 exchange status", show_header=False)
    table.add_column("what")
    table.add_column("value", overflow="fold")
    for key, value in overview.items():
        table.add_row(key.replace("_", " "), _cell(value))
    console.print(table)
