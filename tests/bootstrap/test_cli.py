"""`hub bootstrap` as an operator (and compose's `bootstrap` job) runs it: a new process on a fresh database.

Per backend one fresh, migrated database shared by this module's tests in order: files that are refused
first (exit 2 naming the JSON path and rule, nothing written), then deploy/bootstrap.example.json twice (the
second run changes nothing), a changed endpoint and name, and finally `hub api` started with every secret
from a file, where the administrator signs in with the file's password and a partner authenticates with the
secret bootstrap wrote for it.
"""

from __future__ import annotations

import json
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx
import pika
import pytest
from pika.exceptions import AMQPConnectionError
from sqlalchemy import text
from sqlalchemy.engine import make_url

from hub.db import make_engine
from tests.e2e.cli_support import (
    DEMO_PASSWORD,
    ROOT,
    Ran,
    answers,
    count_rows,
    free_port,
    fresh_postgres_database,
    hub_executable,
    operator_env,
    required_env,
    run_process,
    started,
)
from tests.support import PROCESS_KEYS

EXAMPLE = ROOT / "deploy" / "bootstrap.example.json"
ADMIN_PASSWORD = "correct-horse-battery-staple-7"
DEMO_PARTNER_SECRET = "demo-Partner-1"
PARTNERS = ("national-results", "legacy-sy-wj", "shenyang", "dalian")


@dataclass
class Hub:
    workdir: Path
    data_dir: Path
    database_url: str
    env: dict[str, str]

    def run(self, *args: str, **variables: str) -> Ran:
        return run_process([*hub_executable(), *args], {**self.env, **variables}, cwd=self.workdir, timeout_s=180)

    def bootstrap(self, file: Path, *args: str, **variables: str) -> Ran:
        return self.run("bootstrap", "--file", str(file), *args, **variables)

    def count(self, sql: str, **params: Any) -> int:
        return count_rows(self.database_url, sql, **params)

    def rows(self, sql: str) -> list[Any]:
        engine = make_engine(self.database_url)
        try:
            with engine.connect() as connection:
                return list(connection.execute(text(sql)))
        finally:
            engine.dispose()

    def secret_file(self, name: str, value: str) -> Path:
        path = self.workdir / name
        path.write_text(value + "\n", encoding="utf-8")
        path.chmod(0o600)
        return path

    def variant(self, name: str, change: Any) -> Path:
        """A copy of the example file, changed, next to the work folder's secret files."""
        document = json.loads(EXAMPLE.read_text(encoding="utf-8"))
        change(document)
        path = self.workdir / name
        path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
        return path


@pytest.fixture(scope="module")
def hub(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    workdir = tmp_path_factory.mktemp(f"bootstrap-{backend}")
    data_dir = workdir / "var"
    env = operator_env(data_dir)
    if backend == "sqlite":
        fresh = Hub(workdir, data_dir, f"sqlite:///{data_dir / 'hub.db'}", env)
        migrated = fresh.run("db", "upgrade")
        assert migrated.code == 0, migrated
        yield fresh
        return
    with fresh_postgres_database("hub_boot") as url:
        fresh = Hub(workdir, data_dir, url, {**env, "HUB_DATABASE_URL": url})
        migrated = fresh.run("db", "upgrade")
        assert migrated.code == 0, migrated
        yield fresh


def partner_count(hub: Hub) -> int:
    return hub.count("SELECT count(*) FROM partners")


# --- refused files: exit 2, the path and the rule named, nothing written -------------------------------------


def test_an_endpoint_that_is_no_url_is_refused_naming_its_path_and_rule(hub: Hub) -> None:
    bad = hub.variant("bad-endpoint.json", lambda d: d["partners"][0].update(endpoint="national results system"))
    ran = hub.bootstrap(bad, "--admin-password-file", str(hub.secret_file("pw", ADMIN_PASSWORD)))
    assert ran.code == 2, ran
    assert "partners[0].endpoint" in ran.stderr and "(pattern)" in ran.stderr, ran
    assert "Traceback" not in ran.output
    assert hub.count("SELECT count(*) FROM regions") == 0


def test_a_misspelt_section_and_a_missing_field_are_each_named(hub: Hub) -> None:
    def change(document: dict[str, Any]) -> None:
        document["partner"] = document.pop("partners")
        del document["administrator"]["department"]

    ran = hub.bootstrap(hub.variant("misspelt.json", change), "--json")
    assert ran.code == 2, ran
    problems = {(p["path"], p["rule"]) for p in json.loads(ran.stdout)["problems"]}
    assert {("", "additionalProperties"), ("partners", "required"),
            ("administrator.department", "required")} <= problems, problems


def test_a_region_that_exists_nowhere_is_refused_before_anything_is_written(hub: Hub) -> None:
    bad = hub.variant("unknown-region.json", lambda d: d["partners"][3].update(region="219900"))
    ran = hub.bootstrap(bad, "--admin-password-file", str(hub.secret_file("pw", ADMIN_PASSWORD)))
    assert ran.code == 2, ran
    assert "partners[3].region" in ran.stderr and "known_region" in ran.stderr, ran
    assert hub.count("SELECT count(*) FROM regions") == 0  # rolled back: not even the tree
    assert partner_count(hub) == 0


def test_two_partners_are_never_given_the_same_secret(hub: Hub) -> None:
    shared = "one-secret-for-two-partners-0123456789"
    hub.secret_file("shared-a.secret", shared)
    hub.secret_file("shared-b.secret", shared)

    def change(document: dict[str, Any]) -> None:
        document["partners"][2]["secret_file"] = "shared-a.secret"
        document["partners"][3]["secret_file"] = "shared-b.secret"

    ran = hub.bootstrap(hub.variant("shared-secret.json", change))
    assert ran.code == 2, ran
    assert "partners[3].secret_file" in ran.stderr and "distinct_secret" in ran.stderr, ran
    assert shared not in ran.output  # a secret is never printed
    assert partner_count(hub) == 0


def test_a_partner_secret_file_open_to_others_or_the_demo_secret_is_refused(hub: Hub) -> None:
    open_file = hub.workdir / "open.secret"
    open_file.write_text("a-long-enough-partner-secret-0123456789\n", encoding="utf-8")
    open_file.chmod(0o644)
    hub.secret_file("demo.secret", DEMO_PARTNER_SECRET)

    def change(document: dict[str, Any]) -> None:
        document["partners"][2]["secret_file"] = "open.secret"
        document["partners"][3]["secret_file"] = "demo.secret"

    ran = hub.bootstrap(hub.variant("weak-secrets.json", change))
    assert ran.code == 2, ran
    assert "partners[2].secret_file" in ran.stderr and "open to other users" in ran.stderr, ran
    assert "partners[3].secret_file" in ran.stderr and "not_demo" in ran.stderr, ran


def test_an_item_the_catalogue_refuses_is_named_by_its_file_index_and_field(hub: Hub) -> None:
    """A catalogue file of its own, each item's form beside it: an item the catalogue's rules refuse (a promised
    time limit above the statutory one) exits 2 naming the items file, the item and the field; all rolled back."""
    from hub.seed.service import read_form, read_seed

    row = next(r for r in read_seed("items") if r["key"] == "physician-practice-registration")
    folder = hub.workdir / "catalogue"
    (folder / "forms").mkdir(parents=True)
    (folder / "forms" / "physician.json").write_text(json.dumps(read_form(row["form"])), encoding="utf-8")
    bad = {**row, "form": "forms/physician.json", "promised_limit_days": row["statutory_limit_days"] + 5}
    (folder / "items.json").write_text(json.dumps([bad], ensure_ascii=False), encoding="utf-8")
    own = hub.variant("own-catalogue.json", lambda d: d["catalogue"].update(items="catalogue/items.json"))
    ran = hub.bootstrap(own, "--admin-password-file", str(hub.secret_file("pw", ADMIN_PASSWORD)))
    assert ran.code == 2, ran
    assert f"{folder / 'items.json'}: [0].promised_limit_days" in ran.stderr, ran
    assert "not_above_statutory" in ran.stderr, ran
    assert hub.count("SELECT count(*) FROM regions") == 0 and hub.count("SELECT count(*) FROM items") == 0


@pytest.mark.parametrize(("password", "message"), [
    ("short-pw", "at least 12"), (DEMO_PASSWORD, "published demo password")], ids=["short", "demo"])
def test_a_weak_administrator_password_is_refused(hub: Hub, password: str, message: str) -> None:
    ran = hub.bootstrap(EXAMPLE, HUB_BOOTSTRAP_ADMIN_PASSWORD_FILE=str(hub.secret_file("weak-pw", password)))
    assert ran.code == 1, ran
    assert message in ran.stderr and "HUB_BOOTSTRAP_ADMIN_PASSWORD_FILE" in ran.stderr, ran
    assert password not in ran.output
    assert hub.count("SELECT count(*) FROM officers") == 0


def test_without_a_password_the_administrator_is_not_created_and_nothing_is_written(hub: Hub) -> None:
    ran = hub.bootstrap(EXAMPLE)
    assert ran.code == 1, ran
    assert "--admin-password-file" in ran.stderr, ran
    assert hub.count("SELECT count(*) FROM regions") == 0


# --- the example file, twice ----------------------------------------------------------------------------------


def test_the_first_run_creates_the_province_without_demo_data(hub: Hub) -> None:
    ran = hub.bootstrap(EXAMPLE, "--admin-password-file", str(hub.secret_file("pw", ADMIN_PASSWORD)))
    assert ran.code == 0, ran
    assert "created 127, updated 0, unchanged 0" in ran.stdout, ran
    assert ADMIN_PASSWORD not in ran.output
    assert hub.count("SELECT count(*) FROM items") == 17
    # The administrator is the one officer: no demo account, no shared password.
    assert [tuple(r) for r in hub.rows("SELECT username FROM officers")] == [("hub_admin",)]
    endpoints = dict(hub.rows("SELECT code, endpoint FROM partners"))
    assert set(endpoints) == set(PARTNERS)
    assert endpoints["national-results"] == "https://national.example.gov.cn/exchange/case-results?wsdl"
    folder = hub.data_dir / "credentials"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    secrets = {}
    for code in PARTNERS:
        path = folder / f"{code}.secret"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        secrets[code] = path.read_text(encoding="utf-8").strip()
        assert secrets[code] not in ran.output  # where the secret is, never the secret
        assert str(path) in ran.stdout
    assert len(set(secrets.values())) == len(PARTNERS)  # every partner its own
    assert DEMO_PARTNER_SECRET not in secrets.values()


def test_a_second_run_changes_nothing(hub: Hub) -> None:
    before = hub.rows("SELECT key, version, updated_at FROM items ORDER BY key")
    events = hub.count("SELECT count(*) FROM outbox")
    secrets = {p.name: p.read_text() for p in (hub.data_dir / "credentials").iterdir()}
    hashes = hub.rows("SELECT code, secret_hash FROM partners ORDER BY code")
    ran = hub.bootstrap(EXAMPLE)  # the administrator exists: no password needed
    assert ran.code == 0, ran
    assert "created 0, updated 0, unchanged 127" in ran.stdout, ran
    assert hub.rows("SELECT key, version, updated_at FROM items ORDER BY key") == before
    assert hub.count("SELECT count(*) FROM outbox") == events  # no catalogue event either
    assert {p.name: p.read_text() for p in (hub.data_dir / "credentials").iterdir()} == secrets
    assert hub.rows("SELECT code, secret_hash FROM partners ORDER BY code") == hashes


def test_a_changed_endpoint_and_name_are_updated(hub: Hub) -> None:
    moved = "https://results.national.example.gov.cn/v2/case-results?wsdl"

    def change(document: dict[str, Any]) -> None:
        document["partners"][0]["endpoint"] = moved
        document["partners"][3]["name"] = "大连市一体化政务服务平台"

    ran = hub.bootstrap(hub.variant("changed.json", change), "--json")
    assert ran.code == 0, ran
    report = json.loads(ran.stdout)
    assert report["partners"] == {"created": 0, "updated": 2, "unchanged": 2}, report
    assert report["totals"] == {"created": 0, "updated": 2, "unchanged": 125}, report
    partners = {code: (name, endpoint) for code, name, endpoint in hub.rows(
        "SELECT code, name, endpoint FROM partners")}
    assert partners["national-results"][1] == moved
    assert partners["dalian"][0] == "大连市一体化政务服务平台"
    back = hub.bootstrap(EXAMPLE)
    assert back.code == 0 and "updated 2" in back.stdout, back


def test_a_changed_item_gets_a_new_version_and_the_others_none(hub: Hub) -> None:
    from hub.seed.service import read_form, read_seed

    rows = read_seed("items")
    folder = hub.workdir / "changed-catalogue"
    folder.mkdir()
    for row in rows:  # the built-in catalogue as a file of its own, each form beside it
        (folder / row["form"]).write_text(json.dumps(read_form(row["form"]), ensure_ascii=False), encoding="utf-8")
    rows[0]["hours"] += "（法定节假日除外）"
    (folder / "items.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    own = hub.variant("changed-item.json", lambda d: d["catalogue"].update(items="changed-catalogue/items.json"))
    ran = hub.bootstrap(own, "--json")
    assert ran.code == 0, ran
    assert json.loads(ran.stdout)["items"] == {"created": 0, "updated": 1, "unchanged": 16}, ran
    versions = dict(hub.rows("SELECT key, version FROM items"))
    assert versions.pop(rows[0]["key"]) == 2 and set(versions.values()) == {1}


def test_a_partner_of_another_kind_under_an_existing_code_is_refused(hub: Hub) -> None:
    bad = hub.variant("kind.json", lambda d: d["partners"][2].update(kind="national"))
    ran = hub.bootstrap(bad)
    assert ran.code == 2, ran
    assert "partners[2].kind" in ran.stderr and "immutable" in ran.stderr, ran


@dataclass(frozen=True)
class Vhost:
    amqp_url: str
    management_url: str
    name: str


@pytest.fixture
def vhost() -> Iterator[Vhost]:
    """A throwaway vhost on the test broker; the users bootstrap creates for it are deleted afterwards."""
    parts = urlsplit(required_env("HUB_TEST_AMQP_URL"))
    management_url = required_env("HUB_TEST_RABBITMQ_MANAGEMENT_URL").rstrip("/")
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    name = f"hub_boot_{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=management_url, auth=(user, password), timeout=15, trust_env=False) as api:
        api.put(f"/api/vhosts/{name}").raise_for_status()
        api.put(f"/api/permissions/{name}/{quote(user, safe='')}",
                json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
        try:
            yield Vhost(urlunsplit(parts._replace(path=f"/{name}")), management_url, name)
        finally:
            ours = {p["user"] for p in api.get(f"/api/vhosts/{name}/permissions").json()} - {user}
            api.delete(f"/api/vhosts/{name}")
            for created in ours:
                if created.startswith(f"{name}."):  # only the partner users named for this vhost
                    api.delete(f"/api/users/{quote(created, safe='')}")


def amqp_login(vhost: Vhost, username: str, password: str) -> bool:
    parts = urlsplit(vhost.amqp_url)
    url = f"amqp://{quote(username, safe='')}:{quote(password, safe='')}@{parts.hostname}:{parts.port or 5672}/" \
          f"{quote(vhost.name, safe='')}"
    try:
        pika.BlockingConnection(pika.URLParameters(url)).close()
    except AMQPConnectionError:
        return False
    return True


def test_with_a_broker_a_new_partner_gets_its_own_rabbitmq_user(hub: Hub, vhost: Vhost) -> None:
    broker = {"HUB_AMQP_URL": vhost.amqp_url, "HUB_RABBITMQ_MANAGEMENT_URL": vhost.management_url}
    added = hub.variant("anshan.json", lambda d: d["partners"].append(
        {"code": "anshan", "name": "鞍山市网上审批平台", "kind": "city_platform", "region": "210300"}))
    ran = hub.bootstrap(added, "--json", **broker)
    assert ran.code == 0, ran
    assert json.loads(ran.stdout)["partners"] == {"created": 1, "updated": 0, "unchanged": 4}, ran
    secret = (hub.data_dir / "credentials" / "anshan.secret").read_text(encoding="utf-8").strip()
    assert amqp_login(vhost, f"{vhost.name}.anshan", secret)  # `hub partners add`'s user, named per vhost
    other = (hub.data_dir / "credentials" / "dalian.secret").read_text(encoding="utf-8").strip()
    assert not amqp_login(vhost, f"{vhost.name}.anshan", other)
    again = hub.bootstrap(added, **broker)
    assert again.code == 0 and "created 0, updated 0" in again.stdout, again


# --- the bootstrapped hub, served with every secret from a file ----------------------------------------------


def test_the_administrator_signs_in_and_a_partner_authenticates_over_http(hub: Hub) -> None:
    files = {"HUB_SECRET_KEY_FILE": str(hub.secret_file("secret_key", PROCESS_KEYS["HUB_SECRET_KEY"])),
             "HUB_AUDIT_KEY_FILE": str(hub.secret_file("audit_key", PROCESS_KEYS["HUB_AUDIT_KEY"]))}
    if hub.database_url.startswith("postgresql"):  # the URL without its password, the password from a file
        url = make_url(hub.database_url)
        files["HUB_DATABASE_URL"] = url._replace(password=None).render_as_string(hide_password=False)
        files["HUB_DATABASE_PASSWORD_FILE"] = str(hub.secret_file("db_password", str(url.password)))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with started([*hub_executable(), "api", "--port", str(port), "--no-migrate"], {**hub.env, **files},
                 cwd=hub.workdir, log=hub.workdir / "api.log") as api:
        api.wait_until(lambda: answers(f"{base}/ready"), "hub api ready (schema at head, catalogue loaded)")
        with httpx.Client(base_url=base, timeout=30, trust_env=False) as client:
            signed_in = client.post("/api/v1/auth/token", data={"username": "hub_admin", "password": ADMIN_PASSWORD})
            assert signed_in.status_code == 200, signed_in.text
            me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {signed_in.json()['access_token']}"})
            assert me.status_code == 200 and me.json()["roles"] == ["admin"], me.text
            demo = client.post("/api/v1/auth/token", data={"username": "ln_admin", "password": DEMO_PASSWORD})
            assert demo.status_code == 401, demo.text  # no demo officer exists

            secret = (hub.data_dir / "credentials" / "shenyang.secret").read_text(encoding="utf-8").strip()
            unknown = f"/api/v1/exchange/records/{uuid.uuid4()}"
            assert client.get(unknown, auth=("shenyang", secret)).status_code == 404  # authenticated: no such record
            assert client.get(unknown, auth=("shenyang", DEMO_PARTNER_SECRET)).status_code == 401
            other = (hub.data_dir / "credentials" / "dalian.secret").read_text(encoding="utf-8").strip()
            assert client.get(unknown, auth=("shenyang", other)).status_code == 401
        assert api.stop() == 0, api.output()[-3000:]
    for value in files.values():
        if not value.startswith("postgresql"):
            assert Path(value).read_text().strip() not in api.output()  # no secret in the log
