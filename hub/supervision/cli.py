"""``hub alerts list / show / explain / rule``: warning and correction (预警纠错) from a terminal.

Each command signs in as an officer (``--username``/``--password`` or ``HUB_OFFICER_USERNAME`` /
``HUB_OFFICER_PASSWORD``; the password is asked for on a terminal) and works on the database directly with the
same checks as REST and SOAP (hub/supervision/oversight.py): the officer's scope, role and the alert's status.
Refusals (unknown id, wrong role, bad input) print the reason, naming the field and the rule, and exit 1.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from hub.cli_options import JsonOpt
from hub.errors import FieldError, ValidationFailed

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from hub.auth.models import Officer

alerts_app = typer.Typer(help="电子监察预警：查看、部门说明、监察裁定 (alerts: list, show, explain, rule)",
                         no_args_is_help=True)
console = Console()

Username = Annotated[str, typer.Option("--username", envvar="HUB_OFFICER_USERNAME",
                                       help="the officer acting (a supervisor, or an officer of the department)")]
Password = Annotated[str, typer.Option("--password", envvar="HUB_OFFICER_PASSWORD",
                                       help="the officer's password (asked for on a terminal when not given)")]


def _signed_in(session: Session, username: str, password: str) -> Officer:
    from hub.auth.service import authenticate

    if not username:
        _refuse("username", "required", "请用 --username 或 HUB_OFFICER_USERNAME 指定工作人员账号")
    if not password and sys.stdin.isatty():
        password = typer.prompt("password", hide_input=True)
    if not password:
        _refuse("password", "required", "请用 --password 或 HUB_OFFICER_PASSWORD 提供密码")
    return authenticate(session, username=username, password=password)


def _refusing(command: Callable[..., None]) -> Callable[..., None]:
    """Invalid input: every field with its rule on stderr, exit 1 (other refusals go to the root command's
    handler, which prints the reason the same way)."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            command(*args, **kwargs)
        except ValidationFailed as exc:
            _print_refusal(exc)
            raise typer.Exit(1) from None

    return run


def _print_refusal(exc: ValidationFailed) -> None:
    lines = [f"{exc.title}:"] + [f"  {e.field}: {e.message} ({e.rule})" for e in exc.errors]
    Console(stderr=True).print("[red]hub:[/] " + "\n".join(lines), highlight=False, soft_wrap=True)


def _refuse(field: str, rule: str, message: str) -> NoReturn:
    raise ValidationFailed([FieldError(field, rule, message)])


def _factory() -> Any:
    from hub.db import make_engine, make_session_factory
    from hub.settings import get_settings

    return make_session_factory(make_engine(get_settings().resolved_database_url()))


@alerts_app.command("list")
@_refusing
def list_command(
    username: Username = "", password: Password = "",
    status: Annotated[str | None, typer.Option(help="open, explained, accepted, accountability, closed")] = None,
    level: Annotated[str | None, typer.Option(help="yellow, red")] = None,
    kind: Annotated[str | None, typer.Option(help="time, procedure, anomaly")] = None,
    department: Annotated[str | None, typer.Option(help="department key: region code + 3 digits")] = None,
    region: Annotated[str | None, typer.Option(help="region code (its descendants included)")] = None,
    case: Annotated[str | None, typer.Option(help="tracking number")] = None,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The alerts the officer may see, newest first (a supervisor: his region and below; an officer: his
    department's)."""
    from hub.supervision import oversight

    filters = oversight.AlertFilters(status=status, level=level, kind=kind, department=department, region=region,
                                     case=case)
    with _factory()() as session:
        officer = _signed_in(session, username, password)
        page = oversight.list_alerts(session, officer=officer, filters=filters, offset=offset, limit=limit)
        rows = oversight.views(session, officer=officer, alerts=page.rows)
    if as_json:
        _print_json({"total": page.total, "offset": page.offset, "limit": page.limit, "alerts": rows})
        return
    table = Table(title=f"预警 alerts ({page.offset + 1 if rows else 0}–{page.offset + len(rows)} of {page.total})")
    for column in ("id", "level", "status", "kind", "rule", "case", "department", "raised on", "with", "message"):
        table.add_column(column)
    for row in rows:
        colour = "red" if row["level"] == "red" else "yellow"
        table.add_row(str(row["id"]), f"[{colour}]{row['level']}[/]", row["status_label"], row["kind"], row["rule"],
                      row["tracking_no"], row["department"], row["raised_on"].isoformat(),
                      row["supervisor_region_code"], row["message"])
    console.print(table)


@alerts_app.command("show")
@_refusing
def show_command(alert_id: Annotated[int, typer.Argument(min=1, help="the alert's id")],
                 username: Username = "", password: Password = "", as_json: JsonOpt = False) -> None:
    """One alert with its explanation, ruling and every step of its history."""
    from hub.supervision import oversight

    with _factory()() as session:
        officer = _signed_in(session, username, password)
        alert = oversight.get_alert(session, officer=officer, alert_id=alert_id)
        view = oversight.views(session, officer=officer, alerts=[alert])[0]
    if as_json:
        _print_json(view)
        return
    _print_alert(view)


@alerts_app.command("explain")
@_refusing
def explain_command(
    alert_id: Annotated[int, typer.Argument(min=1, help="the alert's id")],
    explanation: Annotated[str, typer.Option(help="情况说明: why the alert arose")],
    correction: Annotated[str, typer.Option(help="整改情况: the correction made")],
    username: Username = "", password: Password = "", as_json: JsonOpt = False,
) -> None:
    """The responsible department's explanation and correction (an officer of that department)."""
    from hub.clock import SystemClock
    from hub.db import unit_of_work
    from hub.supervision import oversight
    from hub.text_fields import checked_text

    explanation_text = checked_text(explanation, field="explanation", max_length=2000)
    correction_text = checked_text(correction, field="correction", max_length=2000)
    assert explanation_text is not None and correction_text is not None
    with unit_of_work(_factory()) as session:
        officer = _signed_in(session, username, password)
        alert = oversight.get_alert(session, officer=officer, alert_id=alert_id, for_update=True)
        oversight.explain(session, officer=officer, alert=alert, explanation=explanation_text,
                          correction=correction_text, now=SystemClock().now())
        view = oversight.views(session, officer=officer, alerts=[alert])[0]
    _done(view, as_json, "已提交说明 explained")


@alerts_app.command("rule")
@_refusing
def rule_command(
    alert_id: Annotated[int, typer.Argument(min=1, help="the alert's id")],
    ruling: Annotated[str, typer.Option(help="accepted (说明采纳) or accountability (责任追究)")],
    opinion: Annotated[str | None, typer.Option(help="the supervisor's opinion")] = None,
    measure: Annotated[str | None, typer.Option(help="accountability: the measure taken (e.g. 诫勉谈话)")] = None,
    person: Annotated[str | None, typer.Option(help="accountability: the person held responsible")] = None,
    on: Annotated[str | None, typer.Option("--date", help="accountability: the day, YYYY-MM-DD")] = None,
    username: Username = "", password: Password = "", as_json: JsonOpt = False,
) -> None:
    """A supervisor's ruling: accepted, or accountability with --measure, --person and --date."""
    from hub.clock import SystemClock
    from hub.db import unit_of_work
    from hub.supervision import oversight
    from hub.text_fields import checked_text

    opinion_text = checked_text(opinion, field="opinion", optional=True, max_length=2000)
    accountability = None
    if any(value is not None for value in (measure, person, on)):
        accountability = oversight.Accountability(
            measure=checked_text(measure, field="accountability.measure", max_length=200) or "",
            person=checked_text(person, field="accountability.person", name=True, max_length=64) or "",
            date=_day(on))
    with unit_of_work(_factory()) as session:
        officer = _signed_in(session, username, password)
        alert = oversight.get_alert(session, officer=officer, alert_id=alert_id, for_update=True)
        oversight.rule(session, officer=officer, alert=alert, ruling=ruling,  # type: ignore[arg-type]
                       opinion=opinion_text, accountability=accountability, now=SystemClock().now())
        view = oversight.views(session, officer=officer, alerts=[alert])[0]
    _done(view, as_json, "已裁定 ruled")


def _day(value: str | None) -> date:
    if value is None:
        _refuse("accountability.date", "required", "责任追究须填写日期 --date YYYY-MM-DD")
    try:
        return date.fromisoformat(value or "")
    except ValueError:
        _refuse("accountability.date", "date_format", "日期格式应为 YYYY-MM-DD")


def _done(view: dict[str, Any], as_json: bool, what: str) -> None:
    if as_json:
        _print_json(view)
        return
    console.print(f"[green]{what}[/]: alert {view['id']} is now {view['status']} ({view['status_label']})")


def _print_alert(view: dict[str, Any]) -> None:
    console.print(f"[bold]预警 {view['id']}[/]  {view['level']}  {view['status_label']} ({view['status']})")
    for label, key in (("case", "tracking_no"), ("rule", "rule"), ("kind", "kind"), ("department", "department"),
                       ("region", "region_code"), ("with supervisor of", "supervisor_region_code"),
                       ("escalations", "escalations"), ("message", "message"), ("raised at", "raised_at"),
                       ("explanation", "explanation"), ("correction", "correction"), ("ruling", "ruling"),
                       ("accountability", "accountability")):
        if view.get(key) not in (None, ""):
            console.print(f"  {label}: {view[key]}", highlight=False)
    console.print("  history:")
    for step in view["history"]:
        facts = {k: v for k, v in step.items() if k not in ("at", "action", "by")}
        console.print(f"    {step.get('at')}  {step.get('action')}  by {step.get('by')}  "
                      f"{json.dumps(facts, ensure_ascii=False) if facts else ''}", highlight=False)


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, default=str, indent=2))
