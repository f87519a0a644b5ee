"""Every command of README's "Commands" table, run as an operator runs it: a new process on a fresh database.

Per backend one fresh database — a new SQLite file in a new data folder (the default `HUB_DATA_DIR/hub.db`), or
a new PostgreSQL database created with the test role — shared by this module's tests in order, as an operator
would go: migrate and seed, look around, serve (`hub api`, `hub up` + `hub demo`), run the mocks, provision the
partners and run `hub worker` on RabbitMQ (a throwaway vhost) while the city platform simulator reports cases
and faulty messages, then work the dead letters. Each command's exit code and output are checked; the last
test checks that every documented command was run. No key is set unless a command needs one: `hub up` makes
the data folder's keys, and the later commands find them there.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx
import pytest
import typer

from hub.cli import app as hub_app
from tests.e2e.cli_support import (
    DEMO_PASSWORD,
    ROOT,
    Ran,
    Server,
    answers,
    count_rows,
    free_port,
    free_port_block,
    fresh_postgres_database,
    hub_executable,
    operator_env,
    port_open,
    required_env,
    run_process,
    started,
)
from tests.support import PROCESS_KEYS, citizen_id, example_form, person

SIMULATOR = "python -m mocks.city_platform"
ITEM = "physician-practice-registration"


# --- what the README documents ------------------------------------------------------------------------


def command_tree() -> dict[str, Any]:
    """'hub up', 'hub dlq list', … → the (click) command, groups expanded."""
    root = typer.main.get_command(hub_app)
    tree: dict[str, Any] = {}
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        if hasattr(command, "commands"):  # a group
            tree.update({f"hub {name} {sub}": c for sub, c in command.commands.items()})
        else:
            tree[f"hub {name}"] = command
    return tree


def documented_commands() -> dict[str, set[str]]:
    """The README's Commands table: command → the options it documents."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Commands", 1)[1].strip().split("\n\n", 1)[0]
    groups = {name.split()[1] for name in command_tree() if len(name.split()) == 3}
    documented: dict[str, set[str]] = {}
    for span in re.findall(r"`([^`]+)`", table):
        words = span.split()
        if span.startswith("python -m "):
            documented[" ".join(words[:3])] = set()
        if words[0] != "hub":
            continue
        if words[1] in groups:  # `hub dlq list [--all] / show ID / replay ID…`
            for part in span.split(None, 2)[2].split(" / "):
                documented[f"hub {words[1]} {part.split()[0]}"] = set(re.findall(r"--[a-z-]+", part))
        else:
            documented[f"hub {words[1]}"] = set(re.findall(r"--[a-z-]+", span))
    return documented


def test_readme_documents_exactly_the_commands_and_options_there_are() -> None:
    tree = command_tree()
    documented = documented_commands()
    assert set(documented) - {SIMULATOR} == set(tree)
    for name, options in documented.items():
        if name in tree:
            known = {o for p in tree[name].params for o in [*getattr(p, "opts", []), *getattr(p, "secondary_opts", [])]}
            assert options <= known, f"{name} documents {options - known}, which it does not take"


# --- the operator and a fresh database -------------------------------------------------------------------


@dataclass
class Operator:
    backend: str
    workdir: Path
    data_dir: Path
    database_url: str
    env: dict[str, str]
    ran: set[str] = field(default_factory=set)
    state: dict[str, Any] = field(default_factory=dict)

    def hub(self, *args: str, timeout_s: float = 120, **variables: str) -> Ran:
        self.ran.add(command_name(args))
        return run_process([*hub_executable(), *args], {**self.env, **variables}, cwd=self.workdir,
                           timeout_s=timeout_s)

    def hub_at_once(self, *commands: tuple[str, ...], **variables: str) -> list[Ran]:
        """Commands that do not depend on each other, each its own process, run side by side (answers in order)."""
        with ThreadPoolExecutor(max_workers=4) as pool:
            return list(pool.map(lambda args: self.hub(*args, **variables), commands))

    @contextmanager
    def serving(self, *args: str, log: str, **variables: str) -> Iterator[Server]:
        self.ran.add(command_name(args))
        with started([*hub_executable(), *args], {**self.env, **variables}, cwd=self.workdir,
                     log=self.workdir / log) as server:
            yield server

    def count(self, sql: str, **params: Any) -> int:
        return count_rows(self.database_url, sql, **params)

    def keys_from_data_folder(self) -> dict[str, str]:
        """What an operator moving from `hub up` to `hub api`/`hub worker` sets: the folder's own keys."""
        folder = self.data_dir / "secrets"
        return {"HUB_SECRET_KEY": (folder / "secret_key").read_text().strip(),
                "HUB_AUDIT_KEY": (folder / "audit_key").read_text().strip()}


def command_name(args: tuple[str, ...]) -> str:
    words = ["hub", *[a for a in args if not a.startswith("-")][:2]]
    tree = command_tree()
    return " ".join(words) if " ".join(words) in tree else " ".join(words[:2])


@pytest.fixture(scope="module")
def operator(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    workdir = tmp_path_factory.mktemp(f"operator-{backend}")
    data_dir = workdir / "var"
    env = operator_env(data_dir)
    if backend == "sqlite":  # the documented default: HUB_DATA_DIR/hub.db
        yield Operator(backend, workdir, data_dir, f"sqlite:///{data_dir / 'hub.db'}", env)
        return
    with fresh_postgres_database() as url:
        env["HUB_DATABASE_URL"] = url
        yield Operator(backend, workdir, data_dir, url, env)


@pytest.fixture
def own_operator(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    """An operator with a database of its own, migrated and seeded: for a test whose cases, sealed with the
    test's keys, must not reach the module's database (where `hub up` later verifies with its own key)."""
    workdir = tmp_path_factory.mktemp(f"own-operator-{backend}")
    data_dir = workdir / "var"
    env = operator_env(data_dir)
    with ExitStack() as stack:
        url = f"sqlite:///{data_dir / 'hub.db'}"
        if backend == "postgresql":
            url = stack.enter_context(fresh_postgres_database())
            env["HUB_DATABASE_URL"] = url
        own = Operator(backend, workdir, data_dir, url, env)
        for step in (("db", "upgrade"), ("db", "seed")):
            done = own.hub(*step)
            assert done.code == 0, done
        yield own


@dataclass(frozen=True)
class Vhost:
    amqp_url: str
    management_url: str
    name: str


@pytest.fixture(scope="module")
def vhost(backend: str) -> Iterator[Vhost]:
    """A throwaway vhost per backend (each backend's sync creates its partners' users anew); partner users that
    `hub partners sync` creates in it are deleted afterwards."""
    base = required_env("HUB_TEST_AMQP_URL")
    management_url = required_env("HUB_TEST_RABBITMQ_MANAGEMENT_URL").rstrip("/")
    parts = urlsplit(base)
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    name = f"hub_cli_{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=management_url, auth=(user, password), timeout=15, trust_env=False) as api:
        existing = {u["name"] for u in api.get("/api/users").raise_for_status().json()}
        api.put(f"/api/vhosts/{name}").raise_for_status()
        api.put(f"/api/permissions/{name}/{quote(user, safe='')}",
                json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
        try:
            yield Vhost(urlunsplit(parts._replace(path=f"/{name}")), management_url, name)
        finally:
            # Users are broker-wide: delete only those that are new *and* were given this vhost (by the sync).
            ours = {p["user"] for p in api.get(f"/api/vhosts/{name}/permissions").json()} - existing
            api.delete(f"/api/vhosts/{name}")
            for created in ours:
                api.delete(f"/api/users/{quote(created, safe='')}")


# --- the commands, in an operator's order ----------------------------------------------------------------


def test_db_upgrade_and_seed_on_a_fresh_database(operator: Operator) -> None:
    upgraded = operator.hub("db", "upgrade")
    assert upgraded.code == 0, upgraded
    assert "database at head" in upgraded.stdout
    seeded = operator.hub("db", "seed")
    assert seeded.code == 0, seeded
    assert "17 items, 65 officers, 16 partners" in seeded.stdout, seeded
    again = operator.hub("db", "seed")
    assert again.code == 0, again
    assert "0 items, 0 officers, 0 partners" in again.stdout, again  # idempotent


def test_bootstrap_adds_only_what_its_file_declares_and_only_once(operator: Operator) -> None:
    """On the seeded database: the catalogue and tree are there already, the administrator and partner are new
    (a fresh database with deploy/bootstrap.example.json: tests/bootstrap/test_cli.py)."""
    file = operator.workdir / "bootstrap.json"
    file.write_text(json.dumps({
        "regions": [], "departments": [], "catalogue": {"items": "builtin"},
        "administrator": {"username": "cli_admin", "name": "命令行管理员", "region": "210000", "department": "090"},
        "partners": [{"code": "cli-boot", "name": "引导测试平台", "kind": "city_platform", "region": "210100"}],
    }, ensure_ascii=False), encoding="utf-8")
    password = operator.workdir / "admin-password"
    password.write_text("an-administrator-password-1\n", encoding="utf-8")
    password.chmod(0o600)
    credentials = operator.workdir / "credentials"
    first = operator.hub("bootstrap", "--file", str(file), "--admin-password-file", str(password),
                         "--credentials-dir", str(credentials), "--json")
    assert first.code == 0, first
    report = json.loads(first.stdout)
    assert report["items"] == {"created": 0, "updated": 0, "unchanged": 17}, report
    assert report["administrator"]["created"] == report["partners"]["created"] == 1, report
    assert (credentials / "cli-boot.secret").stat().st_mode & 0o077 == 0
    again = operator.hub("bootstrap", "--file", str(file), "--credentials-dir", str(credentials))
    assert again.code == 0 and "created 0, updated 0, unchanged 30" in again.stdout, again


NOTICE_2031 = {"year": 2031, "source": "国务院办公厅关于2031年部分节假日安排的通知",
               "holidays": [{"name": "国庆节", "from": "2031-10-01", "to": "2031-10-07"}],
               "workdays": [{"name": "国庆节调休", "date": "2031-09-28"}]}


def test_calendar_show_and_load(operator: Operator) -> None:
    before = operator.hub("calendar", "show", "2031")
    assert before.code == 0, before
    assert json.loads(before.stdout) == {"year": 2031, "coverage": "fallback", "working_days": 261, "overrides": []}

    notice = operator.workdir / "notice-2031.json"
    notice.write_text(json.dumps(NOTICE_2031, ensure_ascii=False), encoding="utf-8")
    loaded = operator.hub("calendar", "load", str(notice))
    assert loaded.code == 0, loaded
    assert "loaded 8 days for 2031" in loaded.stdout, loaded
    after = json.loads(operator.hub("calendar", "show", "2031").stdout)
    assert after["coverage"] != "fallback"
    assert after["working_days"] == 261 - 5 + 1  # a weekday-long holiday week, one Sunday made a workday
    assert [o["day"] for o in after["overrides"]][:2] == ["2031-09-28", "2031-10-01"]

    notice.write_text(json.dumps({**NOTICE_2031, "source": ""}), encoding="utf-8")
    refused = operator.hub("calendar", "load", str(notice))
    assert refused.code == 1, refused
    assert "source" in refused.stderr and "Traceback" not in refused.output, refused


def test_partners_list_and_endpoint(operator: Operator) -> None:
    wsdl = "http://127.0.0.1:9/national?wsdl"
    listed, pointed, unknown, no_broker = operator.hub_at_once(
        ("partners", "list"), ("partners", "endpoint", "national-results", wsdl),
        ("partners", "endpoint", "no-such-partner", wsdl), ("partners", "sync"))
    assert listed.code == 0, listed
    for code in ("shenyang", "dalian", "national-results", "legacy-sy-wj"):
        assert code in listed.stdout, listed
    assert pointed.code == 0, pointed
    assert f"national-results → {wsdl}" in pointed.stdout
    assert unknown.code == 1, unknown
    assert "unknown partner" in unknown.stderr and "Traceback" not in unknown.output, unknown
    assert no_broker.code == 1, no_broker
    assert "HUB_AMQP_URL is not set" in no_broker.output, no_broker

    # A partner's lifecycle without a broker (issue 11; the broker side: tests/exchange/test_provisioning.py).
    added = operator.hub("partners", "add", "cli-test", "--name", "命令行测试平台", "--region", "210100",
                         "--kind", "city_platform", "--json")
    assert added.code == 0, added
    rotated = operator.hub("partners", "rotate", "cli-test", "--json")
    assert rotated.code == 0, rotated
    assert json.loads(rotated.stdout)["secret"] != json.loads(added.stdout)["secret"]
    disabled = operator.hub("partners", "disable", "cli-test")
    assert disabled.code == 0 and "disabled partner cli-test" in disabled.stdout, disabled
    enabled = operator.hub("partners", "enable", "cli-test")
    assert enabled.code == 0 and "enabled partner cli-test" in enabled.stdout, enabled


def test_exchange_deliveries_and_audit_views_of_a_quiet_hub(operator: Operator) -> None:
    (status, letters, missing, deliveries, as_json, unnamed, retried, sent, unconfigured,
     no_key) = operator.hub_at_once(
        ("exchange", "status", "--json"), ("dlq", "list"), ("dlq", "show", "999"), ("deliveries", "status"),
        ("deliveries", "status", "--json"), ("deliveries", "retry"), ("deliveries", "retry", "--all-failed"),
        ("deliveries", "run"), ("registries", "reverify"), ("audit", "verify"))
    assert status.code == 0, status
    overview = json.loads(status.stdout)
    assert overview["dead_letters_waiting"] == 0 and overview["inbox"] == {}
    assert overview["outbox"]["unsent"] > 0  # the catalogue's events, waiting for a worker

    assert letters.code == 0, letters
    assert "dead letters (0)" in letters.stdout
    assert missing.code == 1 and "unknown dead letter" in missing.stderr, missing

    assert deliveries.code == 0 and "no failed deliveries" in deliveries.stdout, deliveries
    assert as_json.code == 0 and json.loads(as_json.stdout)["failures"] == [], as_json
    assert unnamed.code == 2 and "name delivery ids" in unnamed.stdout, unnamed
    assert retried.code == 0 and "0 deliveries reset to pending" in retried.stdout, retried
    assert sent.code == 0 and "sent 0, failed 0" in sent.stdout, sent

    assert unconfigured.code == 0 and "no registry is configured" in unconfigured.stdout, unconfigured
    # No hub has run on this data folder yet: no key, but no chain either, so there is nothing to check.
    assert no_key.code == 0 and "0 events verified: no case events yet" in no_key.stdout, no_key

    checked = operator.hub("worker", "--check", **PROCESS_KEYS)
    assert checked.code == 0, checked
    assert "worker check passed" in checked.stdout and "in-process bus" in checked.stdout


def test_alerts_commands_on_a_quiet_hub(operator: Operator) -> None:
    """No alert yet: the list is empty, and an unknown id is a clear refusal (exit 1), never a traceback."""
    signed_in = {"HUB_OFFICER_USERNAME": "sy_yshj_supervisor", "HUB_OFFICER_PASSWORD": DEMO_PASSWORD}
    listed, shown, explained, ruled = operator.hub_at_once(
        ("alerts", "list", "--json"), ("alerts", "show", "999"),
        ("alerts", "explain", "999", "--explanation", "说明", "--correction", "整改"),
        ("alerts", "rule", "999", "--ruling", "accepted"), **signed_in)
    assert listed.code == 0 and json.loads(listed.stdout)["total"] == 0, listed
    for refused in (shown, explained, ruled):
        assert refused.code == 1 and "预警 999 不存在" in refused.stderr, refused
        assert "Traceback" not in refused.output


def test_payments_commands_of_a_hub_without_gateways(operator: Operator) -> None:
    """No gateway configured: the views are empty and a reconciliation names the field and why, exit 1."""
    status, pending, reconciled, bad_date = operator.hub_at_once(
        ("payments", "status", "--json"), ("payments", "query-pending", "--json"),
        ("payments", "reconcile", "--gateway", "alipay", "--json"),
        ("payments", "reconcile", "--gateway", "unionpay", "--date", "2026-13-01"))
    assert status.code == 0, status
    assert json.loads(status.stdout) == {"gateways": [], "open_orders": [], "pending_refunds": [],
                                         "last_reconciliation": {}}
    assert pending.code == 0 and json.loads(pending.stdout)["queried"] == [], pending
    assert reconciled.code == 1 and "gateway" in reconciled.stderr and "未开通" in reconciled.stderr, reconciled
    assert bad_date.code == 1 and "date" in bad_date.stderr, bad_date
    for ran in (reconciled, bad_date):
        assert "Traceback" not in ran.output


def test_api_serves_the_migrated_database(operator: Operator) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with operator.serving("api", "--port", str(port), log="api.log", **PROCESS_KEYS) as api:
        api.wait_until(lambda: answers(f"{base}/health"), "hub api answering /health")
        assert answers(f"{base}/ready")
        items = httpx.get(f"{base}/api/v1/items", timeout=60, trust_env=False)
        assert items.status_code == 200 and items.json()["items"], items.text
        assert api.stop() == 0, api.output()[-3000:]
    assert not port_open(port)


def worker_processes(pid: int) -> list[int]:
    """uvicorn's live worker processes under ``pid`` (`hub api --workers N`): its children started by
    multiprocessing's spawn, not the resource tracker it starts beside them."""
    workers = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                command = (entry / "cmdline").read_bytes()
            except (OSError, IndexError):
                continue  # gone since the listing
            if int(fields[1]) == pid and fields[0] != "Z" and b"spawn_main" in command:
                workers.append(int(entry.name))
    return workers


def test_api_with_two_workers_serves_concurrent_submissions_from_two_processes(own_operator: Operator) -> None:
    operator = own_operator
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with operator.serving("api", "--port", str(port), "--workers", "2", log="api-2.log", **PROCESS_KEYS) as api:
        api.wait_until(lambda: answers(f"{base}/health") and len(worker_processes(api.process.pid)) == 2,
                       "hub api --workers 2 answering /health with two worker processes")
        workers = worker_processes(api.process.pid)
        items = httpx.get(f"{base}/api/v1/items", params={"q": ITEM}, timeout=60, trust_env=False).json()["items"]
        code = next(i["code"] for i in items if i["key"] == ITEM)

        def submit(seq: int) -> httpx.Response:
            body = {"item_code": code, "applicant": person(id_number=citizen_id(seq=seq)), "form": example_form(ITEM)}
            # One connection per request: the two processes accept from the same socket.
            return httpx.post(f"{base}/api/v1/applications", json=body, timeout=60, trust_env=False)

        with ThreadPoolExecutor(max_workers=8) as pool:
            responses = list(pool.map(submit, range(1, 33)))
        assert [r.status_code for r in responses] == [201] * 32, [r.text for r in responses if r.status_code != 201]
        numbers = {r.json()["tracking_no"] for r in responses}
        assert len(numbers) == 32  # one sequence for both processes: no tracking number given twice
        assert operator.count("SELECT count(*) FROM cases") >= 32
        assert sorted(worker_processes(api.process.pid)) == sorted(workers)  # neither worker died or restarted
        assert api.stop() == 0, api.output()[-3000:]
    assert "Traceback" not in api.output(), api.output()[-3000:]
    assert not port_open(port)
    left = {pid: Path(f"/proc/{pid}/stat").read_text() for pid in workers if Path(f"/proc/{pid}").exists()}
    assert not left, f"a worker outlived `hub api`: {left}"


def test_up_serves_the_demo_and_operators_check_it(operator: Operator) -> None:
    port, mocks_base = free_port(), free_port_block(9)
    base = f"http://127.0.0.1:{port}"
    with operator.serving("up", "--port", str(port), log="up.log",
                          HUB_MOCK_REGISTRIES_BASE_PORT=str(mocks_base)) as up:
        up.wait_until(lambda: answers(f"{base}/health"), "hub up answering /health")
        welcome = up.output()
        assert "HUB_SECRET_KEY: generated" in welcome and "HUB_AUDIT_KEY: generated" in welcome, welcome
        assert "sy_wj_intake" in welcome and DEMO_PASSWORD in welcome and f"{base}/docs" in welcome, welcome

        demo = operator.hub("demo", "--base-url", base)
        assert demo.code == 0, demo
        assert "→ 已办结" in demo.stdout, demo
        assert re.search(r"公示：申请人 \S\*+，证件 \d{6}\*{8}\d{3}[\dX]，结果 准予许可", demo.stdout), demo
        number = re.search(r"办件编号 (\S+)，", demo.stdout)
        assert number, demo
        operator.state["tracking_no"] = number.group(1)

        login = ("--base-url", base, "--username", "ln_admin", "--password")
        breakers, wrong, verified, one, delivered = operator.hub_at_once(
            ("registries", "status", *login, DEMO_PASSWORD), ("registries", "status", *login, "wrong-password"),
            ("audit", "verify"), ("audit", "verify", "--tracking-no", operator.state["tracking_no"]),
            ("deliveries", "run"))
        assert breakers.code == 0, breakers
        assert "population" in breakers.stdout and "closed" in breakers.stdout, breakers
        assert wrong.code == 1 and "sign-in failed" in wrong.stdout, wrong
        # A fresh process finds the key this hub chains with in the data folder, unasked.
        assert verified.code == 0, verified
        assert re.search(r"审计通过 [1-9]\d* events verified", verified.stdout), verified
        assert one.code == 0 and "审计通过" in one.stdout, one
        # Due deliveries go to the mocks `hub up` started (its own worker may have sent them already).
        assert delivered.code == 0 and "failed 0" in delivered.stdout, delivered

        # A checkpoint saved now still matches the chains (the running hub may only add to them).
        saved = operator.workdir / "checkpoint.json"
        emitted = operator.hub("audit", "checkpoint", "--save", str(saved))
        assert emitted.code == 0 and "检查点已写入发件箱" in emitted.stdout, emitted
        assert json.loads(saved.read_text(encoding="utf-8"))["type"] == "audit.checkpoint", saved
        against = operator.hub("audit", "verify", "--checkpoint", str(saved))
        assert against.code == 0 and "matching checkpoint" in against.stdout, against
        resealed = operator.hub("audit", "reseal")  # every chain was keyed from the start: nothing to do
        assert resealed.code == 0 and "已重新封存 0 cases" in resealed.stdout, resealed
        assert up.stop() == 0, up.output()[-3000:]
    assert not port_open(port)


def test_mocks_serve_and_reverify_uses_them(operator: Operator) -> None:
    base_port = free_port_block(9)
    with operator.serving("mocks", "--base-port", str(base_port), log="mocks.log") as mocks:
        mocks.wait_until(lambda: "national results" in mocks.output() and port_open(base_port + 8),
                         "hub mocks listening and describing themselves")
        printed = mocks.output()
        population = re.search(r"population\s+SOAP\s+WSDL (\S+)", printed)
        enterprise = re.search(r"enterprise\s+REST\s+GET\s+(\S+)/\{code\}", printed)
        tax = re.search(r"tax\s+SOAP\s+WSDL (\S+)", printed)
        organisation = re.search(r"organisation\s+REST\s+GET\s+(\S+)/\{code\}", printed)
        assert population and enterprise and tax and organisation, printed
        assert answers(population.group(1))

        reverified = operator.hub("registries", "reverify", HUB_POPULATION_WSDL=population.group(1),
                                  HUB_ENTERPRISE_URL=enterprise.group(1), HUB_TAX_WSDL=tax.group(1),
                                  HUB_ORGANISATION_URL=organisation.group(1))
        assert reverified.code == 0, reverified
        assert re.search(r"\d+ checks settled; \d+ cases still pending", reverified.stdout), reverified
        assert mocks.stop() == 0, mocks.output()[-3000:]


def test_worker_applies_partner_records_and_operators_work_the_dead_letters(
        operator: Operator, vhost: Vhost) -> None:
    broker = {"HUB_AMQP_URL": vhost.amqp_url, "HUB_RABBITMQ_MANAGEMENT_URL": vhost.management_url}
    synced = operator.hub("partners", "sync", **broker)
    assert synced.code == 0, synced
    # Every seeded partner's own user, created from its stored hash and named under this vhost (issue 11).
    assert "partner(s) checked" in synced.stdout, synced
    assert re.search(rf"created\s+shenyang\s+{vhost.name}\.shenyang\s", synced.stdout), synced
    for code in ("national-results", "legacy-sy-wj"):  # `hub up`'s mocks are gone: stop calling them
        stopped = operator.hub("partners", "endpoint", code, "-")
        assert stopped.code == 0 and f"{code} → -" in stopped.stdout, stopped

    with operator.serving("worker", log="worker.log", HUB_LOG_LEVEL="INFO", **broker,
                          **operator.keys_from_data_folder()) as worker:
        # Started means the topology is declared: what the simulator publishes waits in the queue.
        worker.wait_until(lambda: "worker started" in worker.output(), "hub worker started")
        parts = urlsplit(vhost.amqp_url)
        partner_url = urlunsplit(parts._replace(netloc=f"{parts.hostname}:{parts.port or 5672}"))
        report_path = operator.workdir / "city-run.json"
        operator.ran.add(SIMULATOR)
        simulated = run_process(
            [sys.executable, "-m", "mocks.city_platform", "--partner", "shenyang", "--count", "12",
             "--fault", "schema=2", "--seed", "7", "--amqp-url", partner_url, "--no-events",
             "--json", str(report_path), "--list-expected"],
            operator.env, cwd=operator.workdir)
        assert simulated.code == 0, simulated
        assert "city platform shenyang" in simulated.stdout, simulated
        report = json.loads(report_path.read_text(encoding="utf-8"))
        applied, dead = len(set(report["expected_apply"])), len(report["expected_dead"])
        assert dead == 2 and applied == 10, report

        worker.wait_until(
            lambda: operator.count("SELECT count(*) FROM inbox WHERE partner_code = 'shenyang'") == applied
            and operator.count("SELECT count(*) FROM dead_letters") == dead,
            "the worker applying the records and dead-lettering the faulty ones")

        status, listed = operator.hub_at_once(("exchange", "status", "--json"), ("dlq", "list"))
        assert json.loads(status.stdout)["inbox"] == {"applied": applied}, status
        assert json.loads(status.stdout)["dead_letters_waiting"] == dead, status
        assert json.loads(status.stdout)["dead_letters_by_partner"] == {"shenyang": dead}, status
        assert listed.code == 0 and "dead letters (2)" in listed.stdout and "schema" in listed.stdout, listed
        letter = re.search(r"│\s*(\d+)\s*│", listed.stdout)
        assert letter, listed
        shown = operator.hub("dlq", "show", letter.group(1))
        assert shown.code == 0, shown
        assert f"#{letter.group(1)}" in shown.stdout and "from shenyang" in shown.stdout, shown
        assert "schema" in shown.stdout, shown

        replayed = operator.hub("dlq", "replay", letter.group(1), **broker)
        assert replayed.code == 0 and "replayed 1" in replayed.stdout, replayed
        # Still malformed: the worker dead-letters it again, with its reason, and the replay is recorded.
        worker.wait_until(lambda: operator.count("SELECT count(*) FROM dead_letters") == dead + 1,
                          "the replayed (still faulty) message dead-lettered again")
        waiting, everything = operator.hub_at_once(("dlq", "list"), ("dlq", "list", "--all"))
        assert "dead letters (2)" in waiting.stdout, waiting
        assert "dead letters (3)" in everything.stdout, everything
        assert worker.stop(signal.SIGTERM) == 0, worker.output()[-3000:]  # as `docker stop` stops it

    cases = operator.count("SELECT count(*) FROM cases WHERE external_id IS NOT NULL")
    assert cases > 0
    verified = operator.hub("audit", "verify")  # the worker chained with the data folder's key too
    assert verified.code == 0 and "审计通过" in verified.stdout, verified


def test_every_documented_command_was_run(operator: Operator) -> None:
    assert set(documented_commands()) <= operator.ran, set(documented_commands()) - operator.ran
