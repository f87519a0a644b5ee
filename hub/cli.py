"""The `hub` command: run, seed, demo and operate the hub."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from hub import logs
from hub.bootstrap.cli import bootstrap_command
from hub.cli_options import JsonOpt
from hub.clock import SystemClock
from hub.db import make_engine, make_process_engine, make_session_factory, unit_of_work
from hub.deliveries.cli import deliveries_app
from hub.errors import HubError
from hub.exchange.cli import dlq_app, exchange_app, partners_app
from hub.keys import AUDIT_KEY, KeyRefused, Policy, resolve_keys
from hub.mocks_cli import start_for_up
from hub.payments.cli import payments_app
from hub.settings import SecretFileRefused, Settings, get_settings
from hub.supervision.cli import alerts_app
from hub.verification.cli import registries_app


class HubCli(typer.Typer):
    """The root command: an operator's mistake (unknown id, bad file, missing key, unreachable database) is
    answered with a clear message and exit code 1, not a traceback."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self._run(*args, **kwargs)
        except SystemExit:
            raise
        except Exception as exc:
            if not logs.json_configured():
                raise
            # A process logging JSON (api, worker, db upgrade under compose): its crash is one JSON line with
            # the error, then exit 1 — no box-drawn traceback over hundreds of log lines (issue 13).
            log.critical("hub %s crashed: %s: %s", " ".join(sys.argv[1:2]) or "command", type(exc).__name__,
                         _first_line(exc), extra={"error": f"{type(exc).__name__}: {_first_line(exc)}"})
            sys.exit(1)

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except (KeyRefused, SecretFileRefused) as exc:
            _fail(f"refused: {exc}")
        except HubError as exc:
            _fail(_describe(exc))
        except DBAPIError as exc:
            url = make_url(get_settings().resolved_database_url()).render_as_string(hide_password=True)
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            _fail(f"database error on {url}: {reason}\n(is it reachable, and migrated with `hub db upgrade`?)")


def _describe(exc: HubError) -> str:
    lines = [f"{exc.title}: {exc.detail}"]
    lines += [f"  {e.field}: {e.message} ({e.rule})" for e in exc.errors if e.message not in exc.detail]
    return "\n".join(lines)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else ""


def _fail(message: str) -> NoReturn:
    if logs.json_configured():  # a JSON-logging process: the refusal is one JSON line like every other
        log.error("hub: %s", message.replace("\n", " "))
    else:
        Console(stderr=True).print(f"[red]hub:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(1)


app = HubCli(help="省级网上审批平台数据交换中心 — provincial approval exchange hub", no_args_is_help=True)
audit_app = typer.Typer(help="审计：事件密钥哈希链校验、检查点与重新封存")
calendar_app = typer.Typer(help="工作日历：国务院节假日安排")
db_app = typer.Typer(help="数据库迁移与初始数据")
app.add_typer(audit_app, name="audit")
app.add_typer(calendar_app, name="calendar")
app.add_typer(db_app, name="db")
app.add_typer(registries_app, name="registries")
app.add_typer(dlq_app, name="dlq")
app.add_typer(partners_app, name="partners")
app.add_typer(exchange_app, name="exchange")
app.add_typer(deliveries_app, name="deliveries")
app.add_typer(alerts_app, name="alerts")
app.add_typer(payments_app, name="payments")
app.command("bootstrap")(bootstrap_command)  # issue 13, part boot: hub/bootstrap/
console = Console(soft_wrap=True)  # an address or a path is never broken across lines (logs, pipes)
log = logging.getLogger("hub.cli")

if TYPE_CHECKING:
    from hub.audit.service import Finding
    from hub.worker import Worker

HostOpt = Annotated[str, typer.Option(help="address to listen on")]
PortOpt = Annotated[int, typer.Option(help="port to listen on")]


def _print_json(document: object) -> None:
    """Plain JSON on stdout (no colours, no wrapping), for `jq` and scripts."""
    typer.echo(json.dumps(document, ensure_ascii=False, indent=2, default=str))


MigrateOpt = Annotated[bool | None, typer.Option(
    "--migrate/--no-migrate", help="migrate the database on start (default: HUB_MIGRATE_ON_START, true); "
                                   "--no-migrate when a `hub db upgrade` job migrates once for every process")]


def _prepare(seed: bool, *, migrate: bool = True) -> None:
    from hub.migrate import upgrade  # alembic: only the commands that migrate load it

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url())
    if not migrate:
        engine.dispose()
        return
    upgrade(engine)  # under PostgreSQL's advisory lock: concurrent starts migrate one at a time
    if seed:
        from hub import progress
        from hub.seed.service import seed_demo, seed_steps

        with (progress.task(console, "seeding the demo province", seed_steps()) as advance,
              unit_of_work(make_session_factory(engine)) as session):
            report = seed_demo(session, now=SystemClock().now(), progress=advance)
        console.print(
            f"[green]seeded[/] {report.regions} regions, {report.departments} departments, "
            f"{report.items} items, {report.officers} officers, {report.partners} partners"
        )
    engine.dispose()


VerboseOpt = Annotated[bool, typer.Option(
    "--verbose", "-v", help="also the libraries' log lines (migrations, uvicorn, pika) at HUB_LOG_LEVEL")]


@app.command()
def up(host: HostOpt = "127.0.0.1", port: PortOpt = 8000, verbose: VerboseOpt = False) -> None:
    """Everything for a newcomer: migrate a SQLite file, seed the demo province, serve the API."""
    import uvicorn

    from hub.app import create_app
    from hub.heap import prepare_heap_for_serving
    from hub.seed.service import demo_accounts

    settings = get_settings()
    logs.configure(settings.log_level, settings.log_json, verbose=verbose)
    # Without keys in the environment, this data folder's own random keys (generated on the first start).
    for key in resolve_keys(settings, Policy.NEWCOMER):
        console.print(f"{key.spec.env}: {key.source}", highlight=False)
    _prepare(seed=True)
    start_for_up(settings, hub_url=f"http://{host}:{port}", console=console)  # when no registry is configured
    worker = _build_worker(settings)
    _print_welcome(host, port, demo_accounts())  # first: nothing the worker logs lands inside the banner
    worker.start()
    try:
        served = create_app(settings)
        prepare_heap_for_serving()  # the collector at a server's pace (hub/heap.py)
        uvicorn.run(served, host=host, port=port, log_config=None, access_log=False)
    finally:
        worker.stop()


def _build_worker(settings: Settings) -> Worker:
    from adapters.amqp import ExchangeTypeMissing
    from hub.worker import Worker

    factory = make_session_factory(make_process_engine(settings))  # HUB_DB_POOL_SIZE / HUB_DB_MAX_OVERFLOW
    try:
        return Worker(settings=settings, factory=factory, clock=SystemClock())
    except ExchangeTypeMissing as exc:  # the broker lacks the consistent-hash plugin: no point retrying
        _fail(exc.message)


@app.command()
def worker(check: Annotated[bool, typer.Option(
               help="check keys, database (schema at head; never migrates) and broker, then exit")] = False,
           alive: Annotated[bool, typer.Option(
               help="the running worker's health check: exit 0 when every thread of the worker on this host is "
                    "alive (its heartbeat file, HUB_WORKER_HEARTBEAT_FILE), else 1; touches nothing else")] = False,
           migrate: MigrateOpt = None, verbose: VerboseOpt = False) -> None:
    """AMQP consumers (inbound records, dead letters), the outbox relay and the periodic jobs."""
    from hub.worker import StopSignals, run_forever

    settings = get_settings()
    logs.configure(settings.log_level, settings.log_json, verbose=verbose)
    if alive:
        _worker_alive(settings)
        return
    signals = StopSignals() if not check else None  # a stop during start-up ends it cleanly (exit 0)
    resolve_keys(settings, Policy.PRODUCTION)  # before anything runs: never on the published defaults
    if check or not (settings.migrate_on_start if migrate is None else migrate):
        _require_schema_at_head(settings)  # a health check or a --no-migrate start never migrates
    else:
        _prepare(seed=False)
    built = _build_worker(settings)
    if check:
        built.stop()
        bus = "broker reachable" if settings.amqp_url else "in-process bus (HUB_AMQP_URL is not set)"
        console.print(f"[green]worker check passed[/]: database at head, keys set, {bus}")
        return
    from hub.heap import prepare_heap_for_serving

    prepare_heap_for_serving()  # the collector at a server's pace, as in `hub api` (hub/heap.py)
    raise typer.Exit(run_forever(built, signals))


def _require_schema_at_head(settings: Settings) -> None:
    from hub.migrate import schema_behind

    behind = schema_behind(settings.resolved_database_url())
    if behind is not None:
        _fail(behind)


def _worker_alive(settings: Settings) -> None:
    from hub.worker import read_heartbeat

    verdict = read_heartbeat(settings.resolved_heartbeat_file, now=SystemClock().now().timestamp())
    if not verdict.alive:
        _fail(f"worker not alive: {verdict.reason}")
    console.print(f"worker alive: {verdict.reason}", highlight=False, soft_wrap=True)


def _print_welcome(host: str, port: int, accounts: list[dict[str, object]]) -> None:
    from hub.seed.service import demo_partner_secret

    base = f"http://{host}:{port}"
    database = make_url(get_settings().resolved_database_url()).render_as_string(hide_password=True)
    lines = [
        f"\n[bold]审批交换中心已启动[/] — database: {database}",
        f"  API docs      {base}/docs   (ReDoc {base}/redoc; served offline)",
        f"  OpenAPI       {base}/openapi.json",
        f"  catalogue     {base}/api/v1/items",
        f"  disclosure    {base}/api/v1/transparency/cases",
        f"  health        {base}/health   ready {base}/ready   metrics {base}/metrics",
        f"  demo          hub demo --base-url {base}   (in another terminal)\n",
    ]
    for line in lines:  # soft-wrapped: an address is never broken in two in a narrow terminal or a log file
        console.print(line, highlight=False, soft_wrap=True)
    table = Table(title="演示账号 demo officers (password for all: see below)")
    for column in ("username", "name", "region", "department", "roles"):
        table.add_column(column)
    for account in accounts:
        table.add_row(str(account["username"]), str(account["name"]), str(account["region"]),
                      str(account["department"]), ",".join(account["roles"]))  # type: ignore[arg-type]
    console.print(table)
    passwords = sorted({str(a["password"]) for a in accounts})
    console.print(f"password: {', '.join(passwords)}\n")
    # Partner lifecycle (issue 11): the demo partners' published secret (hub/seed/data/partners.json).
    console.print(f"exchange partners (shenyang, dalian, …) secret: {demo_partner_secret()}   "
                  "(`hub partners add CODE …` gives a partner its own)\n", highlight=False)


@app.command()
def mocks(
    host: HostOpt = "127.0.0.1",
    base_port: Annotated[int, typer.Option(help="first port; the mocks take it and the next eight")] = 8100,
    hub_url: Annotated[str | None, typer.Option(envvar="HUB_MOCKS_HUB_URL",
                                                help="a hub for the legacy department mock to work against")] = None,
    seed: Annotated[int, typer.Option(help="seed of the generated people and organisations")] = 2026,
    legacy_decides: Annotated[bool, typer.Option(
        envvar="HUB_MOCKS_LEGACY_DECIDES",
        help="let the legacy department mock decide cases through --hub-url as demo officers (off: it only "
             "receives pushes; never against a real hub)")] = False,
) -> None:
    """Every mock counterpart on its own port (registries, national system, legacy department)."""
    from hub.mocks_cli import serve_forever

    serve_forever(host, base_port, hub_url, seed, console, legacy_decides=legacy_decides)


@app.command()
def api(
    host: HostOpt = "127.0.0.1", port: PortOpt = 8000,
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes, each with its own app, "
                                                      "connection pool and listening socket (SO_REUSEPORT)")] = 1,
    migrate: MigrateOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Serve the FastAPI app under uvicorn (migrates first unless --no-migrate; does not seed). SIGTERM and
    SIGINT stop it cleanly: uvicorn stops accepting, finishes the requests in flight, exits 0."""
    from hub.serving import serve

    settings = get_settings()
    logs.configure(settings.log_level, settings.log_json, verbose=verbose)
    resolve_keys(settings, Policy.PRODUCTION)  # before serving: never on the published defaults
    # --no-migrate: /ready answers 503 (ready.schema) until the migrate job has brought the schema to head.
    _prepare(seed=False, migrate=settings.migrate_on_start if migrate is None else migrate)
    # uvicorn's own start-up lines are library INFO lines (--verbose shows them): say where it serves.
    serving = f"hub api: serving http://{host}:{port}/ ({workers} worker process(es)); docs at /docs"
    if settings.log_json:
        log.info(serving)  # every line a JSON line when the process logs JSON
    else:
        console.print(serving, highlight=False, soft_wrap=True)
    # An import string, not an app: with workers > 1 each worker process imports hub.asgi and builds its own
    # app (engine, pool, registries) from the same environment; nothing is shared but the database.
    # The supervisor's health-check timeout: hub/serving.py.
    stopped_by = _note_stop_signals()
    # Several workers: one scrape of /metrics must see them all (prometheus multi-process mode, docs/metrics.md).
    from hub.metrics import multiprocess

    shared_metrics = multiprocess.prepare(settings.data_dir, workers)
    if shared_metrics is not None:
        shared_metrics.start_reaper()
    try:
        # Several workers: each accepts on a socket of its own, or one worker takes a client's every connection.
        serve("hub.asgi:app", host=host, port=port, workers=workers, log_config=None, access_log=False)
    finally:
        if shared_metrics is not None:
            shared_metrics.close()
    log.info("hub api stopped%s", f" on {stopped_by[0]}" if stopped_by else "", extra={"status": "stopped"})


def _note_stop_signals() -> list[str]:
    """uvicorn stops gracefully on SIGTERM/SIGINT, then restores the handlers it found and raises the signal
    again: with Python's defaults a `docker stop` ended as "killed by SIGTERM" (exit 143), not exit 0. These
    handlers, found and restored by uvicorn, only note the signal it already acted on."""
    import signal

    noted: list[str] = []
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda sig, _frame: noted.append(signal.Signals(sig).name))
    return noted



@app.command()
def demo(
    base_url: Annotated[str, typer.Option(help="a running hub")] = "http://127.0.0.1:8000",
) -> None:
    """Drive one complete case through the HTTP API and print its timeline."""
    from hub.demo import run_demo

    raise typer.Exit(run_demo(base_url, console))


@db_app.command("upgrade")
def db_upgrade(verbose: VerboseOpt = False) -> None:
    """Apply Alembic migrations to HUB_DATABASE_URL. Safe to run from several processes at once on PostgreSQL
    (an advisory lock: one migrates, the others wait and find the schema at head) — the compose `migrate` job."""
    settings = get_settings()
    logs.configure(settings.log_level, settings.log_json, verbose=verbose)
    _prepare(seed=False)
    if logs.json_configured():  # the compose migrate job: its one line JSON like every other (issue 13, shape)
        log.info("database at head", extra={"status": "done"})
    else:
        console.print("[green]database at head[/]")


@db_app.command("seed")
def db_seed() -> None:
    """Migrate, then load the demo province (idempotent)."""
    _prepare(seed=True)


@audit_app.command("verify")
def audit_verify(
    tracking_no: Annotated[str | None, typer.Option(help="only this case")] = None,
    checkpoint: Annotated[Path | None, typer.Option(
        help="a saved audit.checkpoint.v1 message: also name every case whose head changed since")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Recompute every case's keyed event chain and its seal of the case row; exit 1 and list what was
    edited, deleted or recomputed (and, with --checkpoint, what changed since that checkpoint)."""
    from hub.audit import checkpoints
    from hub.audit.service import verify

    settings = get_settings()
    try:
        resolve_keys(settings, Policy.OPERATOR, keys=[AUDIT_KEY])  # the key the running hub chains with
    except KeyRefused:
        if checkpoint is None and not _has_case_events(settings):
            if as_json:
                _print_json({"intact": True, "events_checked": 0, "checkpoint_at": None, "findings": []})
                return
            console.print("[green]审计通过[/] 0 events verified: no case events yet, so no key is needed")
            return
        raise
    saved = checkpoints.load(json.loads(checkpoint.read_text(encoding="utf-8"))) if checkpoint else None
    engine = make_engine(settings.resolved_database_url())
    with make_session_factory(engine)() as session:
        checked, findings = verify(session, key=settings.audit_key, tracking_no=tracking_no)
        if saved is not None:
            findings += [f for f in checkpoints.compare(session, checkpoint=saved, key=settings.audit_key)
                         if tracking_no in (None, f.tracking_no) or f.tracking_no == "-"]
    if as_json:
        _print_json({"intact": not findings, "events_checked": checked,
                     "checkpoint_at": saved["checkpoint_at"] if saved else None,
                     "findings": [{"tracking_no": f.tracking_no, "seq": f.seq, "problem": f.problem,
                                   "detail": f.detail} for f in findings]})
        if findings:
            raise typer.Exit(1)
        return
    if not findings:
        against = f", matching checkpoint {saved['checkpoint_at']}" if saved else ""
        console.print(f"[green]审计通过[/] {checked} events verified, chains intact{against}")
        return
    _print_findings(findings, f"审计发现 {len(findings)} 处问题 ({checked} events checked)")
    raise typer.Exit(1)


def _has_case_events(settings: Settings) -> bool:
    """Whether the database holds any chain to check (a fresh one, migrated or not, holds none)."""
    from sqlalchemy import inspect, text

    engine = make_engine(settings.resolved_database_url())
    try:
        if not inspect(engine).has_table("case_events"):
            return False
        with engine.connect() as connection:
            return connection.execute(text("SELECT 1 FROM case_events LIMIT 1")).first() is not None
    finally:
        engine.dispose()


def _print_findings(findings: list[Finding], title: str) -> None:
    table = Table(title=title)
    for column in ("case", "event", "problem", "detail"):
        table.add_column(column, overflow="fold")
    for f in findings:
        table.add_row(f.tracking_no, str(f.seq or "-"), f.problem, f.detail)
    console.print(table)


@audit_app.command("checkpoint")
def audit_checkpoint(
    save: Annotated[Path | None, typer.Option(help="also write the checkpoint message to this file")] = None,
) -> None:
    """Publish an audit.checkpoint.v1 of every chain head now (through the outbox, on hub.events)."""
    from hub.audit import checkpoints
    from hub.outbox.relay import envelope_of

    settings = get_settings()
    resolve_keys(settings, Policy.OPERATOR, keys=[AUDIT_KEY])  # a checkpoint MACed with the hub's own key
    engine = make_engine(settings.resolved_database_url())
    with unit_of_work(make_session_factory(engine)) as session:
        message = checkpoints.emit(session, key=settings.audit_key, now=SystemClock().now())
        session.flush()
        document = envelope_of(message)
    if save is not None:
        save.write_text(json.dumps(document, ensure_ascii=False, indent=1), encoding="utf-8")
    console.print(f"[green]检查点已写入发件箱[/] {document['payload']['case_count']} cases, "
                  f"message {document['message_id']}; the worker publishes it as {checkpoints.EVENT_TYPE}")


@audit_app.command("reseal")
def audit_reseal(
    tracking_no: Annotated[str | None, typer.Option(help="only this case")] = None,
) -> None:
    """Once after upgrading past migration 0007: seal chains written before the key, with HUB_AUDIT_KEY."""
    from hub.audit.service import reseal

    settings = get_settings()
    resolve_keys(settings, Policy.OPERATOR, keys=[AUDIT_KEY])  # resealing with any other key breaks every chain
    engine = make_engine(settings.resolved_database_url())
    with unit_of_work(make_session_factory(engine)) as session:
        report = reseal(session, key=settings.audit_key, tracking_no=tracking_no)
    console.print(f"[green]已重新封存[/] {report.cases} cases, {report.events} events")
    if report.refused:
        _print_findings(report.refused, f"{len(report.refused)} 个办件未封存 (refused: verify them first)")
        raise typer.Exit(1)


@calendar_app.command("load")
def calendar_load(notice: Annotated[Path, typer.Argument(help="holiday notice JSON file", exists=True,
                                                         dir_okay=False, readable=True)]) -> None:
    """Load a year's State Council holiday notice into the working-day calendar."""
    from hub.calendar.service import load_notice

    try:
        data = json.loads(notice.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        _fail(f"{notice} is not a UTF-8 JSON document: {exc}")
    settings = get_settings()
    engine = make_engine(settings.resolved_database_url())
    with unit_of_work(make_session_factory(engine)) as session:
        loaded = load_notice(session, notice=data, now=SystemClock().now(), audit_key=settings.audit_key)
    console.print(f"[green]loaded[/] {loaded.days} days for {data.get('year')}; "
                  f"deadlines recomputed on {len(loaded.recomputed)} open cases")


@calendar_app.command("show")
def calendar_show(year: int, as_json: JsonOpt = False) -> None:
    """Show a year's coverage, working-day count and loaded overrides (JSON; --json: plain, uncoloured)."""
    from hub.calendar.service import year_overview

    engine = make_engine(get_settings().resolved_database_url())
    with make_session_factory(engine)() as session:
        overview = year_overview(session, year)
    if as_json:
        _print_json(overview)
        return
    console.print_json(json.dumps(overview, ensure_ascii=False))


if __name__ == "__main__":
    app()
