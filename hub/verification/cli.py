"""`hub registries …` and `hub mocks`, and the mock registries that `hub up` starts for a newcomer."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from hub.cli_options import JsonOpt
from hub.settings import get_settings

if TYPE_CHECKING:
    pass

registries_app = typer.Typer(help="信息库：熔断状态、重新核验 (population, enterprise, tax, organisation registries)",
                             no_args_is_help=True)
console = Console()
_err = Console(stderr=True)


@registries_app.command("status")
def status(
    base_url: Annotated[str, typer.Option(help="a running hub (its API process answers for itself)")] =
    "http://127.0.0.1:8000",
    username: Annotated[str, typer.Option(envvar="HUB_OPS_USERNAME", help="an admin or supervisor account")] = "",
    password: Annotated[str, typer.Option(envvar="HUB_OPS_PASSWORD", help="its password")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Each registry's circuit breaker, recent latency and error rate, as the running hub sees them."""
    # Never a prompt: a status command runs from scripts, cron and monitoring, where a prompt hangs or aborts.
    missing = [name for name, value in (("--username / HUB_OPS_USERNAME", username),
                                        ("--password / HUB_OPS_PASSWORD", password)) if not value]
    if missing:
        _err.print(f"[red]hub:[/] registries status signs in to the running hub as an admin or supervisor: "
                   f"set {' and '.join(missing)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    try:
        with httpx.Client(base_url=base_url, timeout=10.0, trust_env=False) as client:
            token = client.post("/api/v1/auth/token", data={"username": username, "password": password})
            if token.status_code != 200:
                console.print(f"[red]sign-in failed[/] ({token.status_code}): {_detail(token)}")
                raise typer.Exit(1)
            answer = client.get("/api/v1/admin/registries",
                                headers={"Authorization": f"Bearer {token.json()['access_token']}"})
    except httpx.TransportError as exc:
        console.print(f"[red]cannot reach the hub at {base_url}[/]: {exc}. Start it with `hub up` or `hub api`.")
        raise typer.Exit(1) from None
    if answer.status_code != 200:
        console.print(f"[red]{answer.status_code}[/]: {_detail(answer)}")
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(answer.json(), ensure_ascii=False, indent=2))
        return
    print_status(answer.json())


def print_status(data: dict[str, Any]) -> None:
    table = Table(title="信息库状态 registries (this API process)")
    for column in ("registry", "", "breaker", "p50 ms", "p95 ms", "error rate", "calls", "failures",
                   "fast fails", "cache hits"):
        table.add_column(column, justify="left" if column in ("registry", "", "breaker") else "right")
    colours = {"closed": "green", "half_open": "yellow", "open": "red", "not_configured": "dim"}
    for r in data["registries"]:
        breaker = str(r["breaker"])
        table.add_row(
            r["name"], r["label"], f"[{colours.get(breaker, 'white')}]{breaker}[/]", _num(r.get("latency_p50_ms")),
            _num(r.get("latency_p95_ms")),
            "-" if r.get("error_rate") is None else f"{100 * float(r['error_rate']):.1f}%",
            _num(r.get("calls")), _num(r.get("failures")), _num(r.get("fast_failures")), _num(r.get("cache_hits")),
        )
    console.print(table)
    console.print(f"cases waiting for re-verification: {data['pending_cases']}   "
                  f"open cases with a failed check: {data['failed_cases']}")
    if not data["configured"]:
        console.print("[yellow]no registry is configured[/]: set HUB_POPULATION_WSDL, HUB_ENTERPRISE_URL, "
                      "HUB_TAX_WSDL, HUB_ORGANISATION_URL (docs/registries.md)")


def _num(value: Any) -> str:
    return "-" if value is None else str(value)


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text[:300]))
    except ValueError:
        return response.text[:300]


@registries_app.command("reverify")
def reverify(
    limit: Annotated[int | None, typer.Option(help="cases in this round (default HUB_REVERIFY_BATCH)")] = None,
) -> None:
    """Re-verify cases whose registry checks are pending, once (the worker does this in a loop)."""
    from hub.clock import SystemClock
    from hub.db import make_engine, make_session_factory
    from hub.verification.jobs import ReverifyJob
    from hub.verification.ops import pending_count

    settings = get_settings()
    if limit:
        settings = settings.model_copy(update={"reverify_batch": limit})
    engine = make_engine(settings.resolved_database_url())
    factory = make_session_factory(engine)
    job = ReverifyJob.from_settings(settings, factory, SystemClock())
    if job is None:
        engine.dispose()
        console.print("[yellow]no registry is configured[/]; nothing to verify against (docs/registries.md)")
        return
    from hub.keys import Policy, resolve_keys

    try:  # the access log's subject hashes and the case events must use the running hub's keys
        resolve_keys(settings, Policy.OPERATOR)
    except BaseException:
        job.close()
        engine.dispose()
        raise
    try:
        settled = job()
        with factory() as session:
            left = pending_count(session)
    finally:
        job.close()
        engine.dispose()
    console.print(f"[green]{settled}[/] checks settled; {left} cases still pending")
