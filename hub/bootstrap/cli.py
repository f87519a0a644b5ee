"""`hub bootstrap --file PATH`: the command around hub/bootstrap/service.py (exit 0 done, 2 bad file, 1 other)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from hub import logs
from hub.cli_options import JsonOpt
from hub.clock import SystemClock
from hub.db import make_engine, make_session_factory, unit_of_work
from hub.settings import SecretFileRefused, Settings, get_settings, read_secret_file

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
log = logging.getLogger("hub.bootstrap")
CREDENTIALS_DIR = "credentials"
EXIT_BAD_FILE = 2


def bootstrap_command(
    file: Annotated[Path, typer.Option("--file", help="the bootstrap file (schemas/bootstrap.v1.json; "
                                                      "deploy/bootstrap.example.json)")],
    admin_password_file: Annotated[Path | None, typer.Option(
        help="a file holding the first administrator's password (default: HUB_BOOTSTRAP_ADMIN_PASSWORD_FILE); "
             "needed only while the administrator does not exist")] = None,
    credentials_dir: Annotated[Path | None, typer.Option(
        help="where generated partner secrets are written, one <code>.secret (0600) each "
             "(default: $HUB_DATA_DIR/credentials)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Production bootstrap without demo data: regions and departments, item types, the catalogue, the first
    administrator and the partners with their endpoints and own secrets. Idempotent: a second run changes
    nothing (a changed name or endpoint is updated). Exit 0 done, 2 bad file, 1 any other failure."""
    from hub.bootstrap.service import BootstrapFileError, BootstrapRefused, bootstrap, check_admin_password, read_plan
    from hub.exchange.provisioning import PartnerCommandError, broker_of
    from hub.migrate import schema_behind  # alembic: loaded only by the commands that need it

    settings = get_settings()
    logs.configure(settings.log_level, settings.log_json)
    try:
        plan = read_plan(file=file)
        password = _admin_password(settings, admin_password_file)
        if password is not None:
            check_admin_password(password=password, source=_password_source(admin_password_file))
        behind = schema_behind(settings.resolved_database_url())
        if behind:
            raise BootstrapRefused(behind)
        engine = make_engine(settings.resolved_database_url())
        try:
            with unit_of_work(make_session_factory(engine)) as session:
                report = bootstrap(session, plan=plan, admin_password=password,
                                   credentials_dir=credentials_dir or settings.data_dir / CREDENTIALS_DIR,
                                   broker=broker_of(settings), now=SystemClock().now())
        finally:
            engine.dispose()
    except BootstrapFileError as exc:
        if as_json:
            typer.echo(json.dumps({"error": "bad_file", "problems": [p.as_dict() for p in exc.problems]},
                                  ensure_ascii=False, indent=2))
        for problem in exc.problems:
            _say(f"hub bootstrap: {problem}", error=True)
        raise typer.Exit(EXIT_BAD_FILE) from None
    except (BootstrapRefused, PartnerCommandError, SecretFileRefused) as exc:
        _refuse(str(exc), as_json)
    if as_json:
        typer.echo(json.dumps({"file": str(file), **report.as_dict()}, ensure_ascii=False, indent=2))
        return
    totals = report.totals()
    _say(f"bootstrapped {file}: created {totals['created']}, updated {totals['updated']}, "
         f"unchanged {totals['unchanged']}")
    for kind, counts in report.outcomes.items():
        _say(f"  {kind:<14} created {counts['created']}, updated {counts['updated']}, "
             f"unchanged {counts['unchanged']}")
    for done in report.credentials:  # where each new partner's secret is, never the secret
        _say(f"  partner {done['code']}: secret from {done['how']} {done['file']}")


def _say(line: str, *, error: bool = False) -> None:
    """A line for the operator: with HUB_LOG_JSON (the compose job) one JSON log line like every other process's
    (issue 13, part shape: docs/operations.md "Logs"), else plain text."""
    if logs.json_configured():
        log.log(logging.ERROR if error else logging.INFO, line.strip())
    else:
        (err if error else out).print(line, highlight=False, markup=False)


def _admin_password(settings: Settings, option: Path | None) -> str | None:
    path = option or settings.bootstrap_admin_password_file
    if path is None:
        return None
    return read_secret_file(path, variable=_password_source(option))


def _password_source(option: Path | None) -> str:
    return "--admin-password-file" if option is not None else "HUB_BOOTSTRAP_ADMIN_PASSWORD_FILE"


def _refuse(message: str, as_json: bool) -> NoReturn:
    if as_json:
        typer.echo(json.dumps({"error": "refused", "message": message}, ensure_ascii=False))
    _say(f"hub bootstrap: refused: {message}", error=True)
    raise typer.Exit(1)
