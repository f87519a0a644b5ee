"""`hub alerts` as an operator runs it: new processes on a fresh database (per backend), signed in as officers.

The department lists and explains its alert, the supervisor records accountability (责任追究), `show` prints
every step; refusals (an unmigrated database, a wrong password, another department, bad input) are clear
messages naming the field and the rule, with exit code 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from hub.app import create_app
from hub.cases.models import Case
from hub.clock import FixedClock
from hub.db import make_engine, make_session_factory, unit_of_work
from hub.settings import Settings
from hub.supervision.findings import Finding
from hub.supervision.service import raise_findings
from tests.conftest import START
from tests.e2e.cli_support import DEMO_PASSWORD, Ran, hub_executable, operator_env, run_process
from tests.e2e.test_cli_commands import fresh_postgres_database
from tests.support import submit

ITEM = "physician-practice-registration"  # 沈阳市卫生健康委员会 (210100-007)


@dataclass
class Terminal:
    workdir: Path
    env: dict[str, str]
    database_url: str

    def hub(self, *args: str, username: str | None = None, password: str = DEMO_PASSWORD) -> Ran:
        signed_in = {} if username is None else {"HUB_OFFICER_USERNAME": username, "HUB_OFFICER_PASSWORD": password}
        return run_process([*hub_executable(), *args], {**self.env, **signed_in}, cwd=self.workdir)


@pytest.fixture(scope="module")
def terminal(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Terminal]:
    workdir = tmp_path_factory.mktemp(f"alerts-{backend}")
    env = operator_env(workdir / "var")
    if backend == "sqlite":
        yield Terminal(workdir, env, f"sqlite:///{workdir / 'var' / 'hub.db'}")
        return
    with fresh_postgres_database() as url:
        env["HUB_DATABASE_URL"] = url
        yield Terminal(workdir, env, url)


def raise_alert(terminal: Terminal) -> tuple[str, int]:
    """A submitted case with a red time alert, as the scanner would leave it."""
    engine = make_engine(terminal.database_url)
    try:
        settings = Settings(data_dir=terminal.workdir / "var", database_url=terminal.database_url, log_json=False)
        with TestClient(create_app(settings, clock=FixedClock(START), engine=engine)) as client:
            tracking_no = submit(client, ITEM)["tracking_no"]
        with unit_of_work(make_session_factory(engine)) as session:
            case = session.scalars(select(Case).where(Case.tracking_no == tracking_no)).one()
            finding = Finding(rule="time.case_overdue", kind="time", level="red",
                              message="办件已超期，请说明原因并整改")
            alert_id = raise_findings(session, case=case, findings=[finding], now=START)[0].id
        return tracking_no, alert_id
    finally:
        engine.dispose()


def test_an_unmigrated_database_is_a_clear_refusal(terminal: Terminal) -> None:
    ran = terminal.hub("alerts", "list", username="sy_yshj_supervisor")
    assert ran.code == 1 and "hub db upgrade" in ran.stderr, ran
    assert "Traceback" not in ran.output


def test_the_department_explains_and_the_supervisor_records_accountability(terminal: Terminal) -> None:
    for step in (("db", "upgrade"), ("db", "seed")):
        done = terminal.hub(*step)
        assert done.code == 0, done
    tracking_no, alert_id = raise_alert(terminal)

    listed = terminal.hub("alerts", "list", "--case", tracking_no, username="sy_wj_intake")
    assert listed.code == 0, listed
    assert str(alert_id) in listed.stdout and tracking_no in listed.stdout and "待说明" in listed.stdout
    as_json = terminal.hub("alerts", "list", "--level", "red", "--json", username="sy_yshj_supervisor")
    assert as_json.code == 0, as_json
    assert alert_id in {a["id"] for a in json.loads(as_json.stdout)["alerts"]}

    explained = terminal.hub("alerts", "explain", str(alert_id), "--explanation", "专家评审未及时安排",
                             "--correction", "已建立评审排期台账", username="sy_wj_reviewer")
    assert explained.code == 0 and "explained" in explained.stdout, explained
    ruled = terminal.hub("alerts", "rule", str(alert_id), "--ruling", "accountability", "--measure", "诫勉谈话",
                         "--person", "李建国", "--date", "2026-03-12", "--opinion", "超期办理",
                         username="sy_yshj_supervisor")
    assert ruled.code == 0 and "accountability" in ruled.stdout, ruled

    shown = terminal.hub("alerts", "show", str(alert_id), "--json", username="ln_yshj_supervisor")
    assert shown.code == 0, shown
    view = json.loads(shown.stdout)
    assert (view["status"], view["explained_by"], view["ruled_by"]) == (
        "accountability", "sy_wj_reviewer", "sy_yshj_supervisor")
    assert view["accountability"] == {"measure": "诫勉谈话", "person": "李建国", "date": "2026-03-12"}
    assert [step["action"] for step in view["history"]] == ["raised", "explained", "ruled"]
    printed = terminal.hub("alerts", "show", str(alert_id), username="sy_wj_intake")
    assert printed.code == 0 and "诫勉谈话" in printed.stdout and "explained" in printed.stdout, printed


def test_refusals_name_the_reason_and_exit_1(terminal: Terminal) -> None:
    _, alert_id = raise_alert(terminal)
    cases = {
        "wrong password": (("alerts", "list"), "sy_wj_intake", "wrong", "用户名或密码错误"),
        "no account": (("alerts", "list"), None, DEMO_PASSWORD, "username"),
        "another department": (("alerts", "show", str(alert_id)), "sy_scjg_intake", DEMO_PASSWORD, "不存在"),
        "supervisor explains": (("alerts", "explain", str(alert_id), "--explanation", "x", "--correction", "y"),
                                "sy_yshj_supervisor", DEMO_PASSWORD, "责任部门"),
        "bad filter": (("alerts", "list", "--status", "done"), "sy_wj_intake", DEMO_PASSWORD, "status"),
        "measure missing": (("alerts", "rule", str(alert_id), "--ruling", "accountability", "--person", "李建国",
                             "--date", "2026-03-12"), "sy_yshj_supervisor", DEMO_PASSWORD, "accountability.measure"),
        "bad date": (("alerts", "rule", str(alert_id), "--ruling", "accountability", "--measure", "通报批评",
                      "--person", "李建国", "--date", "12/03/2026"), "sy_yshj_supervisor", DEMO_PASSWORD,
                     "date_format"),
        "blank explanation": (("alerts", "explain", str(alert_id), "--explanation", " ", "--correction", "y"),
                              "sy_wj_intake", DEMO_PASSWORD, "explanation"),
    }
    for name, (args, username, password, expected) in cases.items():
        ran = terminal.hub(*args, username=username, password=password)
        assert ran.code == 1, (name, ran)
        assert expected in ran.stderr, (name, ran)
        assert "Traceback" not in ran.output, (name, ran)
