"""docker-compose.yml, read as Compose would run it (no Docker engine runs here).

Each rule is a function from an effective configuration (the default profile, or every profile with
docker-compose.dev.yml merged) to the problems it finds; the tests assert the real files have none, and
``test_each_rule_catches_its_broken_variant`` shows every rule failing on a copy broken on purpose.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from jsonschema import Draft202012Validator

from adapters.amqp.management import rabbit_password_matches
from adapters.amqp.topology import HUB_TOPOLOGY
from hub.seed.service import read_seed
from hub.settings import DEV_AUDIT_KEY, DEV_SECRET, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DEV_OVERRIDE = ROOT / "docker-compose.dev.yml"
NGINX_CONF = ROOT / "deploy" / "nginx" / "nginx.conf"
DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"
POSTGRES_CONF = ROOT / "deploy" / "postgres" / "postgresql.conf"
OPERATIONS_DOC = ROOT / "docs" / "operations.md"

Config = dict[str, Any]
JOBS = {"migrate", "bootstrap", "seed"}  # run to completion: restart "no"/on-failure, no healthcheck needed
HUB_PROCESSES = ("migrate", "bootstrap", "api", "worker")
ONLY_FOR = {"rabbitmq_admin_password": {"bootstrap"}, "bootstrap_admin_password": {"bootstrap"},
            "rabbitmq_definitions": {"rabbitmq"}}
CONTRACT_ENVIRONMENT = {
    "HUB_DATABASE_URL": "postgresql+psycopg://hub@postgres:5432/hub",
    "HUB_DATABASE_PASSWORD_FILE": "/run/secrets/db_password",
    "HUB_AMQP_URL": "amqp://hub@rabbitmq:5672/hub",
    "HUB_AMQP_PASSWORD_FILE": "/run/secrets/amqp_password",
    "HUB_SECRET_KEY_FILE": "/run/secrets/hub_secret_key",
    "HUB_AUDIT_KEY_FILE": "/run/secrets/hub_audit_key",
    "HUB_DATA_DIR": "/var/lib/hub",
    "HUB_LOG_JSON": "true",
    "HUB_MIGRATE_ON_START": "false",
}
CONTRACT_COMMANDS = {
    "migrate": ["hub", "db", "upgrade"],
    "bootstrap": ["hub", "bootstrap", "--file", "/etc/hub/bootstrap.json"],
    "api": ["hub", "api", "--host", "0.0.0.0", "--port", "8000", "--no-migrate"],
    "worker": ["hub", "worker", "--no-migrate"],
}


# --- effective configurations ---------------------------------------------------------------------------

def load(path: Path) -> Config:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def merge(base: Any, override: Any, key: str = "") -> Any:
    """Compose's merge of an override file: mappings merge key by key, sequences of ports/volumes/secrets/
    expose are appended (without duplicates), anything else (command, healthcheck.test) is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for name, value in override.items():
            merged[name] = merge(base[name], value, name) if name in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(override, list) and key in {"ports", "volumes", "secrets", "expose"}:
        return base + [item for item in override if item not in base]
    return copy.deepcopy(override)


def default_profile(document: Config) -> Config:
    """What `docker compose up` starts: services without `profiles`."""
    effective = copy.deepcopy(document)
    effective["services"] = {name: service for name, service in effective["services"].items()
                             if not service.get("profiles")}
    return effective


def dev_profile(document: Config, override: Config) -> Config:
    """`docker compose -f docker-compose.yml -f docker-compose.dev.yml --profile dev up`: every service."""
    return merge(document, override)


@pytest.fixture(scope="module")
def document() -> Config:
    return load(COMPOSE)


@pytest.fixture(scope="module")
def default(document: Config) -> Config:
    return default_profile(document)


@pytest.fixture(scope="module")
def dev(document: Config) -> Config:
    return dev_profile(document, load(DEV_OVERRIDE))


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {name: str(value) for name, value in env.items()}


def strings(value: Any) -> list[str]:
    """Every string in a service's configuration (keys too: an environment variable's name counts)."""
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [str(k), *strings(v)]]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return [str(value)] if value is not None else []


def duration_s(value: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value))


# --- the rules ---------------------------------------------------------------------------------------------

def compose_schema() -> dict[str, Any]:
    vendor = files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return json.loads(vendor.read_text(encoding="utf-8"))


def schema_problems(config: Config) -> list[str]:
    errors = sorted(Draft202012Validator(compose_schema()).iter_errors(config), key=lambda e: list(e.path))
    return [f"{list(e.path)}: {e.message}" for e in errors]


def demo_values() -> set[str]:
    officers = {str(row["password"]) for row in read_seed("officers")}
    partners = {str(row["secret"]) for row in read_seed("partners")}
    return officers | partners | {DEV_SECRET, DEV_AUDIT_KEY}


MOCK_HOST = re.compile(r"(?<![\w-])mocks(?![\w-])|HUB_MOCKS_", re.IGNORECASE)


def mock_and_demo_problems(config: Config) -> list[str]:
    """No default-profile service names a mock (host, command, HUB_MOCKS_* setting) or holds a demo value."""
    problems = []
    demo = demo_values()
    for name, service in config["services"].items():
        for text in strings({k: v for k, v in service.items() if k != "profiles"}):
            if MOCK_HOST.search(text):
                problems.append(f"{name} names a mock: {text!r}")
            if any(value in text for value in demo):
                problems.append(f"{name} holds a demo password or key: {text!r}")
    return problems


def scaling_problems(config: Config) -> list[str]:
    """Only the proxy publishes ports; api and worker run two replicas."""
    services = config["services"]
    problems = [f"{name} publishes ports {service['ports']}" for name, service in services.items()
                if service.get("ports") and name != "proxy"]
    for name in ("api", "worker"):
        replicas = services.get(name, {}).get("deploy", {}).get("replicas")
        if replicas != 2:
            problems.append(f"{name} has deploy.replicas {replicas}, not 2")
    if "8000:8000" not in [str(p) for p in services.get("proxy", {}).get("ports", [])]:
        problems.append("proxy does not publish 8000:8000")
    return problems


def operations_problems(config: Config) -> list[str]:
    """Restart policy, rotated json-file logs and resource limits everywhere; health checks on every server."""
    problems = []
    for name, service in config["services"].items():
        job = name in JOBS
        restart = service.get("restart")
        if restart not in (("no", "on-failure") if job else ("unless-stopped", "always")):
            problems.append(f"{name}: restart {restart!r}")
        logging = service.get("logging") or {}
        options = logging.get("options") or {}
        if logging.get("driver") != "json-file" or not {"max-size", "max-file"} <= set(options):
            problems.append(f"{name}: logs not rotated ({logging})")
        if not job and "healthcheck" not in service:
            problems.append(f"{name}: no healthcheck")
        if not service.get("deploy", {}).get("resources", {}).get("limits"):
            problems.append(f"{name}: no deploy.resources.limits")
    return problems


def contract_problems(config: Config) -> list[str]:
    """The names part shape's production test relies on (design13.md)."""
    services = config["services"]
    problems = []
    for name, command in CONTRACT_COMMANDS.items():
        if services.get(name, {}).get("command") != command:
            problems.append(f"{name}: command {services.get(name, {}).get('command')} is not {command}")
    for name in HUB_PROCESSES:
        env = environment(services.get(name, {}))
        wrong = {k: env.get(k) for k, v in CONTRACT_ENVIRONMENT.items() if env.get(k) != v}
        if wrong:
            problems.append(f"{name}: environment differs from the contract: {wrong}")
        if any(k.endswith(("_PASSWORD", "_KEY", "_TOKEN")) for k in env):
            problems.append(f"{name}: a secret given as a plain environment variable")
        for url in ("HUB_DATABASE_URL", "HUB_AMQP_URL"):
            if urlsplit(env.get(url, "")).password:
                problems.append(f"{name}: a password inside {url}")
        if name != "migrate" and services.get(name, {}).get("depends_on", {}).get("migrate", {}).get(
                "condition") != "service_completed_successfully":
            problems.append(f"{name}: does not wait for migrate to complete successfully")
        if name in ("api", "worker", "bootstrap") and not any(
                str(v).startswith("hub-data:/var/lib/hub") for v in services.get(name, {}).get("volumes", [])):
            problems.append(f"{name}: HUB_DATA_DIR is not the shared hub-data volume")
    worker = services.get("worker", {})
    if worker.get("healthcheck", {}).get("test") != ["CMD", "hub", "worker", "--alive"]:
        problems.append("worker: healthcheck is not `hub worker --alive`")
    grace = float(environment(worker).get("HUB_WORKER_STOP_GRACE_S", Settings().worker_stop_grace_s))
    if duration_s(str(worker.get("stop_grace_period", "10s"))) <= grace:
        problems.append(f"worker: stop_grace_period {worker.get('stop_grace_period')} is not above its "
                        f"HUB_WORKER_STOP_GRACE_S {grace}")
    if "/ready" not in " ".join(strings(services.get("api", {}).get("healthcheck", {}).get("test"))):
        problems.append("api: healthcheck does not ask /ready")
    return problems


def secret_problems(config: Config) -> list[str]:
    """Every secret a service mounts is declared from a file under ./secrets/, every /run/secrets/X named in
    an environment is mounted in that service, and deploy/make_secrets.py creates every declared file."""
    declared = config.get("secrets") or {}
    problems = [f"secret {name} is not a file under ./secrets/" for name, spec in declared.items()
                if not str(spec.get("file", "")).startswith("./secrets/")]
    for name, service in config["services"].items():
        mounted = {s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])}
        problems += [f"{name} mounts undeclared secret {s}" for s in sorted(mounted - set(declared))]
        for value in environment(service).values():
            if value.startswith("/run/secrets/") and value.removeprefix("/run/secrets/") not in mounted:
                problems.append(f"{name} reads {value} but does not mount it")
        # Least privilege: the administrators' passwords for the one job that needs them.
        problems += [f"{name} holds {s}" for s in sorted(mounted) if name not in ONLY_FOR.get(s, {name})]
    return problems


def secret_files_made(tmp: Path) -> set[str]:
    subprocess.run([sys.executable, str(ROOT / "deploy" / "make_secrets.py"), "--dir", str(tmp)], check=True,
                   capture_output=True)
    return {f"./secrets/{p.name}" for p in tmp.iterdir()}


def nginx_problems(config: Config, conf: str) -> list[str]:
    """The proxy reaches every api replica by name, carries the client's address, takes uploads as large as
    the hub does and never serves /metrics to the public."""
    problems = []
    port = config["services"]["api"]["command"][config["services"]["api"]["command"].index("--port") + 1]
    upstreams = re.findall(r"upstream\s+(\S+)\s*\{([^}]*)\}", conf)
    servers = [s for _, body in upstreams for s in re.findall(r"^\s*server\s+([^\s;]+)([^;]*);", body, re.M)]
    if not any(address == f"api:{port}" and "resolve" in rest for address, rest in servers):
        problems.append(f"no upstream server api:{port} with `resolve`: {servers}")
    if not re.search(r"^\s*resolver\s+127\.0\.0\.11\b", conf, re.M):
        problems.append("no resolver 127.0.0.11 (Docker's DNS): new replicas would never be found")
    names = {name for name, _ in upstreams}
    if not any(re.search(rf"proxy_pass\s+http://{re.escape(n)};", conf) for n in names):
        problems.append("nothing is proxied to the upstream")
    size = re.search(r"client_max_body_size\s+(\d+)([kmg]?);", conf, re.I)
    settings = Settings()
    needed = settings.max_material_bytes + settings.multipart_overhead_bytes
    if size is None or int(size[1]) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[size[2].lower()] < needed:
        problems.append(f"client_max_body_size below HUB_MAX_MATERIAL_BYTES + multipart overhead ({needed})")
    for header in ("X-Forwarded-For", "X-Forwarded-Proto"):
        if not re.search(rf"proxy_set_header\s+{header}\s", conf):
            problems.append(f"{header} is not set")
    metrics = re.search(r"location\s+(=|\^~)?\s*/metrics\s*\{([^}]*)\}", conf)
    if metrics is None or "return 404" not in metrics[2] or "proxy_pass" in metrics[2]:
        problems.append("/metrics is proxied to the public")
    return problems


def definitions_problems(definitions: dict[str, Any]) -> list[str]:
    """RabbitMQ: the hub's user is no administrator, has permissions on vhost hub only, and they cover the
    exchanges and queues the hub declares and nothing a partner owns; no password hash is committed."""
    problems = []
    users = {u["name"]: u for u in definitions.get("users", [])}
    hub = users.get("hub")
    if hub is None:
        return ["no user hub"]
    if hub.get("tags"):
        problems.append(f"user hub has tags {hub['tags']}")
    if not any("administrator" in u.get("tags", []) for name, u in users.items() if name != "hub"):
        problems.append("no separate administrator user")
    if any(u.get("password_hash") or u.get("password") for u in users.values()):
        problems.append("a password or hash is committed in the template")
    if [v["name"] for v in definitions.get("vhosts", [])] != ["hub"]:
        problems.append(f"vhosts {definitions.get('vhosts')}")
    grants = [p for p in definitions.get("permissions", []) if p["user"] == "hub"]
    if [p["vhost"] for p in grants] != ["hub"]:
        return [*problems, f"user hub has permissions on vhosts {[p['vhost'] for p in grants]}, not only hub"]
    grant = grants[0]
    declared = (*HUB_TOPOLOGY.exchanges, *HUB_TOPOLOGY.queues)
    for kind in ("configure", "write"):
        problems += [f"hub cannot {kind} {n}" for n in declared if not re.search(grant[kind], n)]
    consumed = (*HUB_TOPOLOGY.queues, HUB_TOPOLOGY.inbound_exchange, HUB_TOPOLOGY.dead_letter_exchange)
    problems += [f"hub cannot read {n}" for n in consumed if not re.search(grant["read"], n)]
    for foreign in ("partner.city-a.events", "amq.gen-x", "other", "hub.inbound.records.extra"):
        problems += [f"hub may {kind} {foreign}" for kind in ("configure", "write", "read")
                     if re.search(grant[kind], foreign)]
    return problems


def rabbitmq_version_problems(config: Config, docs: str) -> list[str]:
    image = config["services"]["rabbitmq"]["image"]
    match = re.fullmatch(r"rabbitmq:(\d+\.\d+)-management", image)
    if match is None:
        return [f"rabbitmq image {image} is not pinned to a minor version with management"]
    problems = []
    if f"`{image}`" not in docs:
        problems.append(f"docs/operations.md does not name `{image}`")
    named = set(re.findall(r"RabbitMQ (\d+\.\d+)", docs))
    if named - {match[1]}:
        problems.append(f"docs name RabbitMQ {sorted(named)}, compose runs {match[1]}")
    return problems


JOBS_AND_OPERATORS = 1 + 2 + 10  # migrate (one connection), bootstrap, operator commands (docs/operations.md)


def connection_budget(config: Config) -> int:
    """Every api and worker process at its pool's limit plus its LISTEN connection, and the jobs."""
    budget = JOBS_AND_OPERATORS
    for name in ("api", "worker"):
        service = config["services"][name]
        env = environment(service)
        per_process = int(env.get("HUB_DB_POOL_SIZE", 20)) + int(env.get("HUB_DB_MAX_OVERFLOW", 20)) + 1
        budget += per_process * int(service.get("deploy", {}).get("replicas", 1))
    return budget


def postgres_budget_problems(config: Config, conf: str, docs: str) -> list[str]:
    """max_connections covers the connection budget, whose sum the docs and postgresql.conf write down."""
    setting = dict(re.findall(r"^\s*(\w+)\s*=\s*'?([^'#\n]*?)'?\s*(?:#.*)?$", conf, re.M))
    problems = []
    if "shared_buffers" not in setting:
        problems.append("shared_buffers not set")
    for name in ("api", "worker"):
        if not {"HUB_DB_POOL_SIZE", "HUB_DB_MAX_OVERFLOW"} <= set(environment(config["services"][name])):
            problems.append(f"{name}: pool size not set (the budget needs the figures)")
    budget = connection_budget(config)
    available = int(setting.get("max_connections", 100)) - int(setting.get("superuser_reserved_connections", 3))
    if budget > available:
        problems.append(f"connection budget {budget} exceeds max_connections - reserved = {available}")
    if f"**{budget}**" not in docs or not re.search(rf"total\s+=\s*{budget}\b", conf):
        problems.append(f"docs/operations.md (**{budget}**) or postgresql.conf (total = {budget}) states another sum")
    if str(config["services"]["postgres"].get("command", "")).find("config_file=") < 0:
        problems.append("postgres does not read deploy/postgres/postgresql.conf")
    return problems


# --- the tests on the real files ---------------------------------------------------------------------------

def test_the_default_and_the_dev_configurations_match_the_compose_spec(default: Config, dev: Config) -> None:
    assert not schema_problems(default), "\n".join(schema_problems(default))
    assert not schema_problems(dev), "\n".join(schema_problems(dev))


def test_the_dev_profile_adds_the_mocks_and_the_demo_seed_and_the_default_has_neither(default: Config,
                                                                                      dev: Config) -> None:
    assert {"mocks", "seed"} <= set(dev["services"])
    assert not {"mocks", "seed"} & set(default["services"])
    assert environment(dev["services"]["api"])["HUB_POPULATION_WSDL"].startswith("http://mocks:")
    assert "--legacy-decides" not in dev["services"]["mocks"]["command"]


def test_no_default_service_talks_to_a_mock_or_holds_a_demo_password(default: Config) -> None:
    assert not mock_and_demo_problems(default)


def test_only_the_proxy_publishes_a_port_and_api_and_worker_run_two_replicas(default: Config) -> None:
    assert not scaling_problems(default)


def test_every_service_restarts_rotates_its_logs_has_limits_and_servers_are_health_checked(default: Config,
                                                                                          dev: Config) -> None:
    assert not operations_problems(default)
    assert not operations_problems(dev)


def test_the_hub_processes_follow_the_contract(default: Config) -> None:
    assert not contract_problems(default)


def test_secrets_are_declared_mounted_and_made_by_the_script(default: Config, dev: Config,
                                                             tmp_path: Path) -> None:
    assert not secret_problems(default)
    assert not secret_problems(dev)
    declared = {spec["file"] for spec in default["secrets"].values()}
    assert declared <= secret_files_made(tmp_path)


def test_make_secrets_keeps_what_exists_and_rotates_only_what_is_named(tmp_path: Path) -> None:
    script = [sys.executable, str(ROOT / "deploy" / "make_secrets.py"), "--dir", str(tmp_path)]
    subprocess.run(script, check=True, capture_output=True)
    before = {p.name: p.read_text() for p in tmp_path.iterdir()}
    subprocess.run(script, check=True, capture_output=True)
    again = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert {k: v for k, v in again.items() if k.endswith(".txt")} == \
        {k: v for k, v in before.items() if k.endswith(".txt")}
    subprocess.run([*script, "--rotate", "amqp_password"], check=True, capture_output=True)
    after = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert [k for k in after if k.endswith(".txt") and after[k] != before[k]] == ["amqp_password.txt"]
    hub_user = next(u for u in json.loads(after["rabbitmq_definitions.json"])["users"] if u["name"] == "hub")
    assert rabbit_password_matches(hub_user["password_hash"], after["amqp_password.txt"].strip())
    refused = subprocess.run([*script, "--rotate", "nope"], capture_output=True, text=True)
    assert refused.returncode != 0 and "unknown secret" in refused.stderr


def test_the_rendered_definitions_hold_hashes_of_the_secret_passwords(tmp_path: Path) -> None:
    secret_files_made(tmp_path)
    rendered = json.loads((tmp_path / "rabbitmq_definitions.json").read_text(encoding="utf-8"))
    users = {u["name"]: u["password_hash"] for u in rendered["users"]}
    assert rabbit_password_matches(users["hub"], (tmp_path / "amqp_password.txt").read_text().strip())
    assert rabbit_password_matches(users["admin"], (tmp_path / "rabbitmq_admin_password.txt").read_text().strip())
    assert "amqp_password" not in json.dumps(rendered)  # hashes only, never a password
    assert not (tmp_path.stat().st_mode & 0o077)  # the folder is its owner's alone


def test_nginx_proxies_to_every_api_replica(default: Config) -> None:
    assert not nginx_problems(default, NGINX_CONF.read_text(encoding="utf-8"))


def test_the_broker_user_of_the_hub_is_limited_to_its_vhost_and_names() -> None:
    assert not definitions_problems(json.loads(DEFINITIONS.read_text(encoding="utf-8")))


def test_the_rabbitmq_version_is_the_one_the_docs_and_this_machine_use(default: Config) -> None:
    assert not rabbitmq_version_problems(default, OPERATIONS_DOC.read_text(encoding="utf-8"))
    ctl = shutil.which("rabbitmqctl")
    if ctl is not None:  # the broker the tests and measurements run on
        version = subprocess.run([ctl, "version"], capture_output=True, text=True, check=False).stdout.strip()
        if re.fullmatch(r"\d+\.\d+\.\d+", version):
            assert default["services"]["rabbitmq"]["image"] == f"rabbitmq:{version.rsplit('.', 1)[0]}-management"


def test_postgres_max_connections_cover_the_connection_budget(default: Config) -> None:
    assert not postgres_budget_problems(default, POSTGRES_CONF.read_text(encoding="utf-8"),
                                        OPERATIONS_DOC.read_text(encoding="utf-8"))
    assert connection_budget(default) == 127


# --- every rule fails on a broken variant -------------------------------------------------------------------

def _set(path: str, value: Any) -> Callable[[Config], None]:
    def apply(config: Config) -> None:
        *parents, last = path.split(".")
        node = config
        for part in parents:
            node = node[part]
        node[last] = value
    return apply


def _delete(path: str) -> Callable[[Config], None]:
    def apply(config: Config) -> None:
        *parents, last = path.split(".")
        node = config
        for part in parents:
            node = node[part]
        del node[last]
    return apply


def _env(service: str, name: str, value: str) -> Callable[[Config], None]:
    return lambda config: config["services"][service]["environment"].__setitem__(name, value)


Texts = dict[str, str]


def texts() -> Texts:
    return {"nginx": NGINX_CONF.read_text(encoding="utf-8"), "docs": OPERATIONS_DOC.read_text(encoding="utf-8"),
            "postgres": POSTGRES_CONF.read_text(encoding="utf-8")}


def _on_config(check: Callable[[Config], list[str]]) -> Callable[[Config, Texts], list[str]]:
    return lambda config, _texts: check(config)


def _with(check: Callable[[Config, str], list[str]], text: str) -> Callable[[Config, Texts], list[str]]:
    return lambda config, given: check(config, given[text])


def _text(name: str, old: str, new: str) -> Callable[[Texts], None]:
    def apply(given: Texts) -> None:
        assert old in given[name], f"{old!r} is not in {name}: update the broken variant"
        given[name] = given[name].replace(old, new)
    return apply


Rule = Callable[[Config, Texts], list[str]]
Break = Callable[[Config], None] | None
BreakText = Callable[[Texts], None] | None
NGINX = _with(nginx_problems, "nginx")
VERSION = _with(rabbitmq_version_problems, "docs")


def _budget(config: Config, given: Texts) -> list[str]:
    return postgres_budget_problems(config, given["postgres"], given["docs"])


BUDGET = _budget

BROKEN_CONFIGS: dict[str, tuple[Rule, Break, BreakText]] = {
    "schema: ports not a list": (_on_config(schema_problems), _set("services.api.ports", "8000:8000"), None),
    "schema: unknown restart": (_on_config(schema_problems), _set("services.worker.restart", 3), None),
    "a mock registry in the api": (_on_config(mock_and_demo_problems),
                                   _env("api", "HUB_TAX_WSDL", "http://mocks:8103/tax"), None),
    "the demo password in the worker": (_on_config(mock_and_demo_problems), _env("worker", "X", "demo-Password-1"),
                                        None),
    "the dev secret key": (_on_config(mock_and_demo_problems), _env("api", "HUB_SECRET_KEY", DEV_SECRET), None),
    "the legacy mock deciding": (_on_config(mock_and_demo_problems),
                                 _env("worker", "HUB_MOCKS_LEGACY_DECIDES", "true"), None),
    "api publishing 8000": (_on_config(scaling_problems), _set("services.api.ports", ["8000:8000"]), None),
    "one api replica": (_on_config(scaling_problems), _set("services.api.deploy.replicas", 1), None),
    "no restart policy": (_on_config(operations_problems), _delete("services.worker.restart"), None),
    "logs never rotated": (_on_config(operations_problems), _set("services.proxy.logging", {"driver": "json-file"}),
                           None),
    "rabbitmq without healthcheck": (_on_config(operations_problems), _delete("services.rabbitmq.healthcheck"), None),
    "api without limits": (_on_config(operations_problems), _delete("services.api.deploy.resources"), None),
    "the api migrating on start": (_on_config(contract_problems), _env("api", "HUB_MIGRATE_ON_START", "true"), None),
    "a password in the broker url": (_on_config(contract_problems),
                                     _env("worker", "HUB_AMQP_URL", "amqp://hub:hub@rabbitmq/hub"), None),
    "a plain secret key": (_on_config(contract_problems), _env("api", "HUB_SECRET_KEY", "x" * 64), None),
    "worker not waiting for migrate": (_on_config(contract_problems),
                                       _set("services.worker.depends_on.migrate.condition", "service_started"), None),
    "worker check as healthcheck": (_on_config(contract_problems), _set("services.worker.healthcheck.test",
                                                                        ["CMD", "hub", "worker", "--check"]), None),
    "worker stop grace too short": (_on_config(contract_problems), _set("services.worker.stop_grace_period", "10s"),
                                    None),
    "api materials not shared": (_on_config(contract_problems), _set("services.api.volumes", []), None),
    "an undeclared secret": (_on_config(secret_problems), _set("services.api.secrets", ["db_password", "nope"]),
                             None),
    "the broker admin in the api": (_on_config(secret_problems),
                                    _set("services.api.secrets", ["db_password", "amqp_password", "hub_secret_key",
                                                                  "hub_audit_key", "metrics_token",
                                                                  "rabbitmq_admin_password"]), None),
    "a secret read but not mounted": (_on_config(secret_problems), _set("services.worker.secrets", ["db_password"]),
                                      None),
    "nginx to the wrong upstream": (NGINX, None,
                                    _text("nginx", "server api:8000 resolve;", "server app:8000 resolve;")),
    "nginx resolving once": (NGINX, None, _text("nginx", "server api:8000 resolve;", "server api:8000;")),
    "nginx without docker's dns": (NGINX, None, _text("nginx", "resolver 127.0.0.11", "resolver 8.8.8.8")),
    "nginx refusing uploads": (NGINX, None, _text("nginx", "client_max_body_size 11m;", "client_max_body_size 1m;")),
    "nginx publishing metrics": (NGINX, None, _text("nginx", "location = /metrics {\n            return 404;",
                                                    "location = /metrics {\n            proxy_pass http://hub_api;")),
    "nginx hiding the client": (NGINX, None, _text("nginx", "proxy_set_header X-Forwarded-For", "# X-Forwarded-For")),
    "rabbitmq 3.13 against the docs": (VERSION, _set("services.rabbitmq.image", "rabbitmq:3.13-management"), None),
    "rabbitmq unpinned": (VERSION, _set("services.rabbitmq.image", "rabbitmq:management"), None),
    "docs naming another rabbitmq": (VERSION, None, _text("docs", "RabbitMQ 3.10", "RabbitMQ 3.13")),
    "pools beyond max_connections": (BUDGET, _env("api", "HUB_DB_MAX_OVERFLOW", "60"), None),
    "postgres at its default 100": (BUDGET, None, _text("postgres", "max_connections = 150", "max_connections = 100")),
    "a pool changed, the docs' sum not": (BUDGET, _env("worker", "HUB_DB_MAX_OVERFLOW", "6"), None),
    "postgres without shared_buffers": (BUDGET, None, _text("postgres", "shared_buffers", "# shared_buffers")),
}

BROKEN_DEFINITIONS: dict[str, Callable[[dict[str, Any]], None]] = {
    "hub an administrator": lambda d: d["users"][0].__setitem__("tags", ["administrator"]),
    "hub on vhost /": lambda d: d["permissions"].append({"user": "hub", "vhost": "/", "configure": ".*",
                                                         "write": ".*", "read": ".*"}),
    "hub may touch everything": lambda d: d["permissions"][0].update(configure=".*", write=".*", read=".*"),
    "hub may not write hub.dlx": lambda d: d["permissions"][0].update(write="^hub\\.(inbound|events)$"),
    "a committed hash": lambda d: d["users"][1].__setitem__("password_hash", "abcd"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_CONFIGS))
def test_each_rule_catches_its_broken_variant(case: str, document: Config) -> None:
    rule, breaks, breaks_text = BROKEN_CONFIGS[case]
    config, given = default_profile(document), texts()
    assert not rule(config, given), "the rule must pass on the real files first"
    if breaks is not None:
        breaks(config)
    if breaks_text is not None:
        breaks_text(given)
    assert rule(config, given), f"{case}: not caught"


@pytest.mark.parametrize("case", sorted(BROKEN_DEFINITIONS))
def test_the_definitions_rule_catches_its_broken_variant(case: str) -> None:
    definitions = json.loads(DEFINITIONS.read_text(encoding="utf-8"))
    BROKEN_DEFINITIONS[case](definitions)
    assert definitions_problems(definitions), f"{case}: not caught"


def test_the_default_profile_leaves_out_profiled_services_and_the_override_merges() -> None:
    base = {"services": {"a": {"image": "x", "environment": {"A": "1"}, "ports": ["1:1"]},
                         "m": {"image": "y", "profiles": ["dev"]}}}
    override = {"services": {"a": {"environment": {"B": "2"}, "ports": ["2:2"]}}}
    assert set(default_profile(base)["services"]) == {"a"}
    merged = dev_profile(base, override)["services"]["a"]
    assert merged["environment"] == {"A": "1", "B": "2"} and merged["ports"] == ["1:1", "2:2"]
