"""The production shape (issue 13 item 9): docker-compose.yml's default profile run as processes, then used.

No container engine runs here, so tests/ops/compose_shape.py does what compose would with the file as written:
every default-profile service built from the repository (migrate, bootstrap, api, worker) started as a process
with the service's environment, secrets as 0600 files, the shared ``hub-data`` volume as one directory,
``depends_on`` honoured (migrate exits 0 before anything else starts), ``deploy.replicas`` (two api, two worker,
started at the same moment). PostgreSQL and RabbitMQ are the test's servers: a database and a vhost of this
module's own; host names map to 127.0.0.1. The bootstrap file is deploy/bootstrap.example.json with the national
and legacy partners' endpoints pointed at real servers on the loopback (the hub's own national and legacy mocks,
started here as stand-ins for the ministry's and the department's systems — never reached through compose's
environment).

Then, from the outside: both replicas ready; one case submitted and decided over HTTP, alternating replicas, by
officers the bootstrapped administrator set up; partner records over AMQP (pika, with the secret `hub bootstrap`
wrote) and REST while one worker and one api replica are SIGKILLed mid-stream and restarted as the restart policy
says; every record applied exactly once, national results delivered once each, every event relayed; every log
line JSON and free of the test's personal data; no demo password and no mock anywhere in the processes'
environment.

Sizes: AMQP_RECORDS and REST_RECORDS below (issue 13's figures: 3,000 and 400).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import secrets
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx
import pika
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.pool import NullPool

from adapters.amqp.management import rabbit_password_hash
from hub.seed.service import demo_accounts, demo_partner_secret
from mocks.city_platform import CityPlatform
from mocks.legacy_department import LegacyMock, start_legacy
from mocks.national import NationalMock, NationalState, create_app
from mocks.server import MockServer
from mocks.soapkit import Call
from tests.e2e.cli_support import fresh_postgres_database
from tests.exchange.conftest import Broker, EventCollector
from tests.ops.compose_shape import (
    COMPOSE_FILE,
    LONG_RUNNING,
    ROOT,
    Deployment,
    Endpoint,
    HostMap,
    built_services,
    default_profile_hosts,
    load_compose,
    plan,
    url_host,
)
from tests.support import ITEM_KEYS, citizen_id, example_form

AMQP_RECORDS = 3000  # partner records published over AMQP (issue 13: 3,000)
REST_RECORDS = 400  # partner records pushed over REST (issue 13: 400)
REST_BATCH = 20
# Deliberate faults among the AMQP records: each one is dead-lettered (or, for duplicates, applied once).
AMQP_FAULTS = {"schema": 4, "bad_json": 3, "identifier": 3, "wrong_region": 3, "unknown_item": 2, "duplicate": 6,
               "out_of_order": 4}
REST_FAULTS = {"schema": 2, "identifier": 2}  # answered "rejected" in the batch's results
CASE_ITEM = "physician-practice-registration"  # reported to the national system; its department has a legacy system
ROLES = ("intake", "reviewer", "approver")
DEMO_SECRETS = {str(a["password"]) for a in demo_accounts()} | {s.strip() for s in demo_partner_secret().split(",")}
BOOTSTRAP_TARGET = "/etc/hub/bootstrap.json"  # where the bootstrap service reads its file, if no mount names one


def _servers() -> tuple[str, str, str]:
    names = ("HUB_TEST_POSTGRES_URL", "HUB_TEST_AMQP_URL", "HUB_TEST_RABBITMQ_MANAGEMENT_URL")
    values = [os.environ.get(name, "") for name in names]
    if not all(values):
        pytest.skip("the production shape needs PostgreSQL and RabbitMQ: "
                    f"{', '.join(n for n, v in zip(names, values, strict=True) if not v)} unset (scripts/test.sh)")
    return values[0], values[1], values[2].rstrip("/")


# --- stand-ins: the national system and the legacy department system ---------------------------------------


class CountingNational(NationalState):
    """The national mock's state, also counting every SubmitResult call per case number (repeats included)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        self._count_lock = threading.Lock()

    def submit(self, call: Call) -> dict[str, Any]:
        with self._count_lock:
            self.calls[str(call.values.get("caseNumber"))] += 1
        return super().submit(call)


def start_counting_national() -> tuple[NationalMock, CountingNational]:
    state = CountingNational()
    server = MockServer("national-results", "soap", lambda s: create_app(s, state), host="127.0.0.1", port=0)
    server.start()
    return NationalMock(server, state), state


# --- the deployment ------------------------------------------------------------------------------------------


@dataclass
class Shape:
    deployment: Deployment
    engine: Engine  # the test's own look at the database (never used by the hub's processes)
    broker: Broker  # the test's administrator account in the module's vhost
    collector: EventCollector
    national: CountingNational
    legacy: LegacyMock
    bootstrap: dict[str, Any]  # the bootstrap file as the test gave it
    data_dir: Path  # the shared hub-data volume
    admin_password: str
    personal: set[str] = field(default_factory=set)  # personal data the test sent: never in a log
    officers: dict[str, str] = field(default_factory=dict)  # role → username
    officer_passwords: dict[str, str] = field(default_factory=dict)
    tracking_numbers: list[str] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    waves: list[list[str]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # phase → seconds of wall time (printed)

    def api_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{replica.port}" for replica in self.deployment.replicas["api"]]

    def count(self, sql: str, **params: Any) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(text(sql), params).scalar_one())

    def partner(self, kind: str) -> dict[str, Any]:
        found = [p for p in self.bootstrap["partners"] if p["kind"] == kind]
        if not found:
            pytest.fail(f"deploy/bootstrap.example.json registers no {kind} partner")
        return dict(found[0])


@dataclass(frozen=True)
class BrokerStandIn:
    """The module's vhost on the test broker, made from deploy/rabbitmq/definitions.json as compose's RabbitMQ
    imports it: its users (renamed: users are broker-wide) with their permissions and tags, nothing more."""

    url: str  # the test operator's, for the test's own queue
    users: dict[str, tuple[str, str]]  # compose's user name → (the stand-in's name, password)
    vhost: str


@contextmanager
def _broker_from_definitions(management_url: str, amqp_url: str, vhost: str) -> Iterator[BrokerStandIn]:
    parts = urlsplit(amqp_url)
    operator = (unquote(parts.username or "guest"), unquote(parts.password or "guest"))
    document = json.loads((ROOT / "deploy" / "rabbitmq" / "definitions.json").read_text(encoding="utf-8"))
    compose_vhosts = {v["name"] for v in document["vhosts"]}
    users = {u["name"]: (f"{vhost}_{u['name']}", secrets.token_urlsafe(24)) for u in document["users"]}
    for user in document["users"]:  # deploy/make_secrets.py fills the hashes from the secret files the same way
        user["name"], password = users[user["name"]]
        user["password_hash"] = rabbit_password_hash(password)
    document["permissions"] = [{**grant, "user": users[grant["user"]][0], "vhost": vhost}
                               for grant in document["permissions"] if grant["vhost"] in compose_vhosts]
    document["vhosts"] = [{"name": vhost}]
    with httpx.Client(base_url=management_url, auth=operator, timeout=15, trust_env=False) as api:
        api.post("/api/definitions", json=document).raise_for_status()
        try:
            api.put(f"/api/permissions/{vhost}/{quote(operator[0], safe='')}",
                    json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()
            yield BrokerStandIn(urlunsplit(parts._replace(path=f"/{vhost}")), users, vhost)
        finally:
            api.delete(f"/api/vhosts/{vhost}")
            for listed in api.get("/api/users").json():  # its users, and the partners' the hub created for it
                if str(listed["name"]).startswith((f"{vhost}.", f"{vhost}_")):
                    api.delete(f"/api/users/{quote(str(listed['name']), safe='')}")


@pytest.fixture(scope="module")
def shape(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shape]:
    _, amqp_url, management_url = _servers()
    work = tmp_path_factory.mktemp("shape")
    amqp = urlsplit(amqp_url)
    admin_user, admin_password = unquote(amqp.username or "guest"), unquote(amqp.password or "guest")
    vhost = f"hub_shape_{uuid.uuid4().hex[:8]}"
    with fresh_postgres_database("hub_shape") as database_url, \
            _broker_from_definitions(management_url, amqp_url, vhost) as stand_in:
        broker = Broker(stand_in.url, management_url, admin_user, admin_password, vhost)
        national, national_state = start_counting_national()
        legacy = start_legacy("127.0.0.1", 0, hub_url=None, interval_s=None, decides=False)
        engine = create_engine(database_url, poolclass=NullPool)
        deployment = None
        try:
            document = load_compose(COMPOSE_FILE, {})
            services = built_services(document)
            example, target = _bootstrap_mount(services)
            bootstrap = _bootstrap_file(example, national.wsdl_url, legacy.wsdl_url)
            bootstrap_file = work / "bootstrap.json"
            bootstrap_file.write_text(json.dumps(bootstrap, ensure_ascii=False, indent=2), encoding="utf-8")
            pg = make_url(database_url)
            mgmt = urlsplit(management_url)
            amqp_host, amqp_port = amqp.hostname or "127.0.0.1", amqp.port or 5672
            hosts = HostMap(
                stand_ins={
                    ("postgres", 5432): Endpoint(pg.host or "127.0.0.1", pg.port or 5432,
                                                 {"hub": (pg.username or "", pg.password or "")}, pg.database),
                    ("rabbitmq", 5672): Endpoint(amqp_host, amqp_port, stand_in.users, vhost),
                    ("rabbitmq", 15672): Endpoint(mgmt.hostname or "127.0.0.1", mgmt.port or 15672, stand_in.users),
                },
                local=set(document["services"]))
            # The secrets holding the servers' passwords: the settings reading them say which is which.
            passwords = {"HUB_DATABASE_PASSWORD_FILE": pg.password or "",
                         "HUB_AMQP_PASSWORD_FILE": stand_in.users["hub"][1]}
            if "admin" in stand_in.users:
                passwords["HUB_RABBITMQ_MANAGEMENT_PASSWORD_FILE"] = stand_in.users["admin"][1]

            def secret_value(name: str, target: str, env: dict[str, str]) -> str:
                for key, value in env.items():
                    if value == target and key in passwords:
                        return passwords[key]
                return secrets.token_urlsafe(32)

            deployment = plan(document, services, hosts=hosts, work=work, secret_value=secret_value,
                              files={target: bootstrap_file})
            _declare_events_exchange(broker)
            with EventCollector(broker, f"test.shape.events.{uuid.uuid4().hex[:6]}") as collector:
                yield Shape(deployment, engine, broker, collector, national_state, legacy, bootstrap,
                            _data_dir(deployment, work), _admin_password(deployment))
                deployment.kill_all()
        finally:
            if deployment is not None:
                deployment.kill_all()
            engine.dispose()
            legacy.stop()
            national.stop()


def _declare_events_exchange(broker: Broker) -> None:
    """hub.events as every worker declares it, so the test's queue is bound before the first event."""
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    try:
        connection.channel().exchange_declare("hub.events", exchange_type="topic", durable=True)
    finally:
        connection.close()


def _bootstrap_mount(services: dict[str, Any]) -> tuple[Path, str]:
    """The repository file compose mounts as the bootstrap file, and where it mounts it."""
    for service in services.values():
        for target, (kind, source) in service.mounts.items():
            if kind == "bind" and source.endswith("bootstrap.example.json"):
                return (ROOT / source).resolve(), target
    return ROOT / "deploy" / "bootstrap.example.json", BOOTSTRAP_TARGET


def _bootstrap_file(example: Path, national_wsdl: str, legacy_wsdl: str) -> dict[str, Any]:
    """The example with national/legacy endpoints on the loopback stand-ins and its relative paths made absolute
    (the copy lives elsewhere)."""
    if not example.exists():
        pytest.fail(f"{example.relative_to(ROOT)} is missing: compose mounts it as the bootstrap file")
    document = json.loads(example.read_text(encoding="utf-8"))
    items = document["catalogue"]["items"]
    if items != "builtin":
        document["catalogue"]["items"] = str((example.parent / items).resolve())
    for partner in document["partners"]:
        if partner["kind"] == "national":
            partner["endpoint"] = national_wsdl
        elif partner["kind"] == "legacy_department":
            partner["endpoint"] = legacy_wsdl
        if partner.get("secret_file"):
            partner["secret_file"] = str((example.parent / partner["secret_file"]).resolve())
    return dict(document)


def _data_dir(deployment: Deployment, work: Path) -> Path:
    env = deployment.replicas["bootstrap"][0].env
    return Path(env["HUB_DATA_DIR"]) if "HUB_DATA_DIR" in env else work


def _admin_password(deployment: Deployment) -> str:
    replica = deployment.replicas["bootstrap"][0]
    path = replica.env.get("HUB_BOOTSTRAP_ADMIN_PASSWORD_FILE")
    args = replica.args
    if "--admin-password-file" in args:
        path = args[args.index("--admin-password-file") + 1]
    if not path:
        pytest.fail("the bootstrap service names no administrator password file")
    return Path(path).read_text(encoding="utf-8").strip()


@pytest.fixture(scope="module")
def running(shape: Shape) -> Shape:
    """The deployment started as compose starts it: every job done, both api replicas ready."""
    deployment = shape.deployment
    began = time.monotonic()
    shape.waves = deployment.start(timeout_s=300)
    jobs = [r for r in deployment.all() if r.service.kind != LONG_RUNNING]
    deployment.wait_until(lambda: all(r.exit_code() == 0 for r in jobs), "every job (migrate, bootstrap) done",
                          timeout_s=300)
    deployment.wait_until(lambda: all(_status(f"{url}/ready") == 200 for url in shape.api_urls()),
                          "/ready 200 on every api replica", timeout_s=180)
    shape.timings["start to ready"] = time.monotonic() - began
    return shape


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=60, trust_env=False).status_code
    except httpx.HTTPError:
        return None


# --- 1. compose's order -------------------------------------------------------------------------------------


def test_migrate_runs_alone_first_then_every_replica_starts_at_once_and_is_healthy(running: Shape) -> None:
    deployment = running.deployment
    assert running.waves[0] == ["migrate"], running.waves
    assert {"bootstrap", "api", "worker"} <= {name for wave in running.waves[1:] for name in wave}, running.waves
    api, worker = deployment.replicas["api"], deployment.replicas["worker"]
    assert (len(api), len(worker)) == (2, 2)  # deploy.replicas
    assert {r.service.name for r in deployment.all()} == {"migrate", "bootstrap", "api", "worker"}
    assert all(r.exit_code() == 0 for r in deployment.all() if r.service.kind != LONG_RUNNING)
    for replica in [*api, *worker]:  # the healthchecks as the engine runs them, for each replica
        deployment.wait_until(replica.healthy, f"{replica.name}'s healthcheck passing", timeout_s=120)


# --- 2. a case over HTTP ----------------------------------------------------------------------------------------


def test_a_case_runs_from_submission_to_completion_alternating_replicas(running: Shape) -> None:
    urls = running.api_urls()
    with httpx.Client(timeout=60, trust_env=False) as http:
        item = _catalogue_item(http, urls[0], CASE_ITEM)
        _create_officers(running, http, urls, region=item["region"], department=ITEM_KEYS[CASE_ITEM]["department"])
        tokens = {role: _token(http, urls[i % 2], running.officers[role], running.officer_passwords[role])
                  for i, role in enumerate(ROLES)}
        applicant = {"type": "1", "name": "欧阳清扬", "id_type": "citizen_id",
                     "id_number": citizen_id(region="210102", seq=int(time.time()) % 900 + 50),
                     "phone": f"139{secrets.randbelow(10 ** 8):08d}", "region": "210102"}
        running.personal |= {applicant["name"], applicant["id_number"], applicant["phone"]}
        submitted = http.post(f"{urls[1]}/api/v1/applications", json={
            "item_code": item["code"], "applicant": applicant, "form": example_form(CASE_ITEM)})
        assert submitted.status_code == 201, submitted.text
        receipt = submitted.json()
        number = receipt["tracking_no"]
        running.tracking_numbers.append(number)
        digest = _upload_on_both_replicas(http, urls, number, receipt["query_code"])
        steps = [("intake", "accept", "under_review"), ("reviewer", "review", "pending_decision"),
                 ("approver", "grant", "granted"), ("intake", "complete", "completed")]
        for i, (role, action, state) in enumerate(steps):
            done = http.post(f"{urls[i % 2]}/api/v1/cases/{number}/actions",
                             json={"action": action, "opinion": "符合条件"},
                             headers={"Authorization": f"Bearer {tokens[role]}"})
            assert done.status_code == 200, (action, done.text)
            assert done.json()["state"] == state
        status = http.get(f"{urls[1]}/api/v1/applications/{number}", headers={"X-Query-Code": receipt["query_code"]})
    assert status.status_code == 200, status.text
    body = status.json()
    assert [s["action"] for s in body["steps"]] == ["submit", "accept", "review", "grant", "complete"]
    assert body["result"] == "granted"
    # The materials are on the shared volume: one file per content, whichever replica stored it.
    stored = [p for p in (running.data_dir / "materials").rglob("*") if p.is_file() and digest in p.name]
    assert len(stored) == 1 and hashlib.sha256(stored[0].read_bytes()).hexdigest() == digest, stored


def _upload_on_both_replicas(http: httpx.Client, urls: list[str], number: str, query_code: str) -> str:
    """The same content uploaded as two materials of the case, on each replica at the same moment (both write
    the one content-addressed file of the shared volume); the content's SHA-256."""
    content = b"%PDF-1.4\n% production shape " + uuid.uuid4().hex.encode() + b"\n%%EOF\n"
    answers: dict[str, httpx.Response] = {}
    gate = threading.Barrier(2)

    def upload(url: str, key: str) -> None:
        gate.wait(timeout=30)
        answers[key] = http.post(f"{url}/api/v1/applications/{number}/materials", headers={"X-Query-Code": query_code},
                                 data={"key": key}, files={"file": ("证书.pdf", content, "application/pdf")})

    uploads = [threading.Thread(target=upload, args=(url, key)) for url, key in
               zip(urls, ("qualification_certificate", "health_certificate"), strict=True)]
    for thread in uploads:
        thread.start()
    for thread in uploads:
        thread.join(timeout=120)
    assert {k: r.status_code for k, r in answers.items()} == {"qualification_certificate": 201,
                                                              "health_certificate": 201}, answers
    digest = hashlib.sha256(content).hexdigest()
    assert {r.json()["sha256"] for r in answers.values()} == {digest}
    return digest


def _catalogue_item(http: httpx.Client, url: str, key: str) -> dict[str, Any]:
    listed = http.get(f"{url}/api/v1/items", params={"q": key})
    assert listed.status_code == 200, listed.text
    found = [i for i in listed.json()["items"] if i["key"] == key]
    assert found, f"{key} is not in the bootstrapped catalogue"
    return dict(found[0])


def _token(http: httpx.Client, url: str, username: str, password: str) -> str:
    response = http.post(f"{url}/api/v1/auth/token", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _create_officers(shape: Shape, http: httpx.Client, urls: list[str], *, region: str, department: str) -> None:
    """The officers the case needs, created by the bootstrapped administrator through the API (found in the
    served OpenAPI document: POST …/officers)."""
    admin = shape.bootstrap["administrator"]
    token = _token(http, urls[0], admin["username"], shape.admin_password)
    paths = http.get(f"{urls[0]}/openapi.json").json()["paths"]
    endpoint = next((p for p, ops in paths.items() if p.rstrip("/").endswith("/officers") and "post" in ops), None)
    if endpoint is None:
        pytest.fail("the hub has no API to create officers with (POST …/officers)")
    for role in ROLES:
        username = f"shape-{role}-{uuid.uuid4().hex[:6]}"
        password = secrets.token_urlsafe(18)
        name = {"intake": "受理员", "reviewer": "审查员", "approver": "审批员"}[role]
        created = http.post(f"{urls[1]}{endpoint}", headers={"Authorization": f"Bearer {token}"}, json={
            "username": username, "name": name, "password": password, "region": region, "department": department,
            "roles": [role]})
        assert created.status_code == 201, created.text
        shape.officers[role] = username
        shape.officer_passwords[role] = password


# --- 3. partner records while a worker and an api replica are killed ---------------------------------------


@dataclass
class RestPusher:
    """Pushes planned records in batches over REST, alternating replicas; a failed request (the replica killed
    under it, a concurrent duplicate) is sent again to the other replica, as a partner's client would."""

    urls: list[str]
    code: str
    secret: str
    batches: list[list[dict[str, Any]]]
    results: dict[str, str] = field(default_factory=dict)  # message id → status
    sent_batches: int = 0
    retries: int = 0
    error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(timeout=60, trust_env=False, auth=(self.code, self.secret)) as http:
                for index, batch in enumerate(self.batches):
                    self._push(http, index, batch)
                    self.sent_batches += 1
        except BaseException as exc:  # reported by the test
            self.error = exc

    def _push(self, http: httpx.Client, index: int, batch: list[dict[str, Any]]) -> None:
        deadline = time.monotonic() + 180
        attempt = 0
        while True:
            url = self.urls[(index + attempt) % len(self.urls)]
            try:
                response = http.post(f"{url}/api/v1/exchange/records", json={"records": batch})
                if response.status_code == 200:
                    for result in response.json()["results"]:
                        self.results[str(result["message_id"])] = str(result["status"])
                    return
                if response.status_code not in (409, 502, 503):
                    raise AssertionError(f"batch {index}: {response.status_code} {response.text[:2000]}")
            except httpx.TransportError:
                pass  # the replica died under the request, or is restarting
            attempt += 1
            self.retries += 1
            if time.monotonic() > deadline:
                raise AssertionError(f"batch {index} not accepted within 180 s")
            time.sleep(0.2)


def _personal_data(planned: list[Any]) -> set[str]:
    found = set()
    for message in planned:
        try:
            envelope = json.loads(message.body)
        except ValueError:
            continue
        payload = envelope.get("payload") if isinstance(envelope, dict) else None
        applicant = payload.get("applicant") if isinstance(payload, dict) else None
        if isinstance(applicant, dict):
            found |= {str(applicant[k]) for k in ("name", "id_number", "phone")
                      if isinstance(applicant.get(k), str) and len(applicant[k]) >= 2}
    return found


def test_partner_records_over_amqp_and_rest_survive_a_killed_worker_and_api_replica(running: Shape) -> None:
    shape, deployment = running, running.deployment
    urls = shape.api_urls()
    partner = shape.partner("city_platform")
    code = partner["code"]
    secret_file = shape.data_dir / "credentials" / f"{code}.secret"
    assert secret_file.exists(), f"hub bootstrap wrote no secret for {code} at {secret_file}"
    assert secret_file.stat().st_mode & 0o077 == 0, oct(secret_file.stat().st_mode)
    secret = secret_file.read_text(encoding="utf-8").strip()
    broker = urlsplit(shape.broker.url)
    amqp_url = urlunsplit(broker._replace(netloc=f"{broker.hostname}:{broker.port or 5672}"))  # no user: the partner's

    amqp_platform = CityPlatform(amqp_url, code, seed=1301, region=partner["region"], catalogue_url=urls[0],
                                 secret=secret, reconnect_timeout_s=120)
    amqp_planned = amqp_platform.plan(AMQP_RECORDS, AMQP_FAULTS)
    rest_platform = CityPlatform(amqp_url, code, seed=1302, region=partner["region"], catalogue_url=urls[1],
                                 secret=secret)
    rest_planned = rest_platform.plan(REST_RECORDS, REST_FAULTS)
    shape.personal |= _personal_data(amqp_planned) | _personal_data(rest_planned)
    envelopes = [json.loads(m.body) for m in rest_planned]
    pusher = RestPusher(urls, code, secret, [envelopes[i:i + REST_BATCH] for i in range(0, len(envelopes), REST_BATCH)])
    published_error: list[BaseException] = []

    def publish() -> None:
        try:
            amqp_platform.publish(amqp_planned)
        except BaseException as exc:  # reported by the test
            published_error.append(exc)

    threads = [threading.Thread(target=publish, name="amqp-partner", daemon=True),
               threading.Thread(target=pusher.run, name="rest-partner", daemon=True)]
    began = time.monotonic()
    for thread in threads:
        thread.start()

    # Mid-stream: the AMQP consumers have applied a third of the stream and a third of the REST batches are in.
    amqp_prefix = amqp_platform.report.external_id_prefix + "-%"
    deployment.wait_until(
        lambda: pusher.error is not None or published_error or (
            pusher.sent_batches >= len(pusher.batches) // 3
            and shape.count("select count(*) from inbox i join cases c on c.id = i.case_id "
                            "where c.external_id like :p", p=amqp_prefix) >= AMQP_RECORDS // 3),
        "a third of both streams applied", timeout_s=240)
    assert not published_error and pusher.error is None, (published_error, pusher.error)
    worker, api = deployment.replicas["worker"][0], deployment.replicas["api"][1]
    for victim in (worker, api):
        assert victim.running(), f"{victim.name} died on its own:\n{victim.output()[-3000:]}"
        assert victim.kill() == -signal.SIGKILL
        shape.killed.append(victim.name)
    for victim in (worker, api):
        victim.restart_after_kill()  # restart: unless-stopped
    for victim in (worker, api):  # back, as its healthcheck says, while the streams go on
        deployment.wait_until(victim.healthy, f"{victim.name} healthy again after its restart", timeout_s=180)

    for thread in threads:
        thread.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a partner stream did not finish within 300 s"
    assert not published_error, published_error
    assert pusher.error is None, pusher.error
    shape.timings["streams sent"] = time.monotonic() - began

    expected_apply = {m.lower() for m in amqp_platform.report.expected_apply | rest_platform.report.expected_apply}
    expected_dead = {m.lower(): reason for m, reason in amqp_platform.report.expected_dead.items()}
    deployment.wait_until(lambda: _inbox_ids(shape, code) >= expected_apply, "every valid record applied",
                          timeout_s=300)
    deployment.wait_until(lambda: len(_dead_letters(shape)) >= len(expected_dead), "every poison message dead-lettered",
                          timeout_s=120)
    deployment.wait_until(lambda: shape.count("select count(*) from outbox where sent_at is null") == 0,
                          "the outbox relayed", timeout_s=120)
    deployment.wait_until(lambda: shape.count("select count(*) from deliveries where status <> 'sent'") == 0,
                          "every delivery sent", timeout_s=180)
    deployment.wait_until(lambda: _outbox_ids(shape) <= shape.collector.ids(), "every event on the test queue",
                          timeout_s=120)

    shape.timings["streams applied, relayed, delivered"] = time.monotonic() - began
    # Every record applied exactly once: the inbox holds each valid message once, the cases their steps once.
    assert _inbox_ids(shape, code) == expected_apply
    for platform in (amqp_platform, rest_platform):
        with shape.engine.connect() as connection:
            rows = connection.execute(text(
                "select external_id, partner_event_seq, event_count, state, record_version from cases "
                "where origin_partner = :code and external_id like :like"),
                {"code": code, "like": platform.report.external_id_prefix + "-%"}).all()
        assert {r[0]: tuple(r[1:]) for r in rows} == {
            c.external_id: (c.seq, c.seq, c.state, c.record_version) for c in platform.report.cases.values()}
    assert shape.count("select count(*) from pending_events") == 0
    # No dead letters but the deliberate ones, each for its reason.
    dead = _dead_letters(shape)
    assert {m for m, _ in dead} == set(expected_dead), "dead letters other than the deliberate ones"
    assert all(reason.startswith(expected_dead[m]) for m, reason in dead), dead
    rest_rejected = {m for m, status in pusher.results.items() if status == "rejected"}
    assert rest_rejected == {m.lower() for m in rest_platform.report.expected_dead}
    # National results: one per completed case of a reported item, each received once by the national system.
    with shape.engine.connect() as connection:
        owed = {str(n) for n in connection.execute(text(
            "select c.tracking_no from cases c join items i on i.id = c.item_id "
            "where c.state = 'completed' and i.national_reporting")).scalars()}
        delivered = {str(n) for n in connection.execute(text(
            "select c.tracking_no from deliveries d join cases c on c.id = d.case_id "
            "where d.kind = 'national_result'")).scalars()}
    received = Counter(str(r["caseNumber"]) for r in shape.national.received())
    assert owed and delivered == owed, (len(owed), len(delivered))
    assert set(received) == owed and set(received.values()) == {1}, received.most_common(3)
    repeats = sum(shape.national.calls.values()) - len(received)
    assert repeats == shape.national.duplicates  # a repeated call carried the same message id: recorded once
    assert set(shape.tracking_numbers) <= set(received)
    # Every event relayed: the outbox rows are the events that reached hub.events, no more, no fewer.
    outbox = _outbox_ids(shape)
    assert outbox == shape.collector.ids()
    print(f"\nproduction shape: {len(expected_apply)} records applied ({AMQP_RECORDS} AMQP, {REST_RECORDS} REST, "
          f"{pusher.retries} REST retries), {len(dead)} deliberate dead letters, {len(received)} national results "
          f"({repeats} repeated calls), {len(outbox)} events relayed "
          f"({shape.collector.deliveries() - len(outbox)} delivered twice); killed {shape.killed}")


def _inbox_ids(shape: Shape, code: str) -> set[str]:
    with shape.engine.connect() as connection:
        return {str(m).lower() for m in connection.execute(
            text("select message_id from inbox where partner_code = :code"), {"code": code}).scalars()}


def _dead_letters(shape: Shape) -> list[tuple[str, str]]:
    with shape.engine.connect() as connection:
        return [(str(m).lower(), str(r)) for m, r in connection.execute(
            text("select message_id, reason from dead_letters")).all()]


def _outbox_ids(shape: Shape) -> set[str]:
    with shape.engine.connect() as connection:
        return {str(m).lower() for m in connection.execute(text("select message_id from outbox")).scalars()}


# --- 4. nothing of the demo, no mock --------------------------------------------------------------------------


def test_no_process_holds_a_demo_password_or_talks_to_a_mock(running: Shape) -> None:
    deployment = running.deployment
    allowed_hosts = default_profile_hosts(deployment.document)
    for replica in deployment.all():
        for key, value in replica.service.environment.items():
            host = url_host(value)
            assert host is None or host in allowed_hosts, f"{replica.name}: {key}={value} names {host}"
            assert not key.startswith("HUB_MOCKS"), f"{replica.name} configures a mock: {key}"
        for key, value in replica.env.items():
            assert not any(demo in value for demo in DEMO_SECRETS), f"{replica.name}: {key} holds a demo password"
            path = Path(value)
            if key.endswith("_FILE") and path.is_file():
                content = path.read_text(encoding="utf-8")
                assert not any(demo in content for demo in DEMO_SECRETS), f"{replica.name}: {key}'s file"
    for path in (running.data_dir / "credentials").glob("*"):
        assert path.read_text(encoding="utf-8").strip() not in DEMO_SECRETS, path
    with running.engine.connect() as connection:
        officers = {str(i): str(u) for i, u in connection.execute(text("select id, username from officers")).all()}
        usernames = set(officers.values())
        partner_codes = list(connection.execute(text("select code from partners")).scalars())
        officer_actors = set(connection.execute(text(
            "select distinct e.actor_id from case_events e join cases c on c.id = e.case_id "
            "where c.origin = 'hub' and e.actor_type = 'officer'")).scalars())
    assert not usernames & {str(a["username"]) for a in demo_accounts()}, "the demo officers were seeded"
    ours = set(running.officers.values())
    acted = {officers.get(str(a), str(a)) for a in officer_actors}
    assert acted <= ours, f"someone else acted as an officer: {acted - ours}"
    with httpx.Client(timeout=30, trust_env=False) as http:
        for code in partner_codes:
            for demo in DEMO_SECRETS:
                answer = http.get(f"{running.api_urls()[0]}/api/v1/exchange/records/{uuid.uuid4()}", auth=(code, demo))
                assert answer.status_code == 401, (code, answer.status_code)


# --- 5. stopping, and what the processes wrote ---------------------------------------------------------------


def test_every_process_stops_on_sigterm_and_logged_only_json_free_of_personal_data(running: Shape) -> None:
    deployment = running.deployment
    codes = deployment.stop_all(signal.SIGTERM)  # docker compose down
    assert codes and all(code == 0 for code in codes.values()), (codes, deployment.tails())
    secrets_held = {v for v in deployment.secret_values.values() if len(v) >= 16} | {running.admin_password}
    secrets_held |= {p.read_text(encoding="utf-8").strip() for p in (running.data_dir / "credentials").glob("*")}
    secrets_held |= set(running.officer_passwords.values())
    assert running.personal, "the test sent no personal data to look for"
    for name, output in deployment.logs():
        for line in output.splitlines():
            if not line.strip():
                continue
            try:
                parsed = json.loads(line)
            except json.JSONDecodeError:
                pytest.fail(f"{name}: not a JSON log line: {line[:500]!r}")
            readable = json.dumps(parsed, ensure_ascii=False)
            leaked = [p for p in running.personal if p in readable or p in line]
            assert not leaked, f"{name} logged personal data {leaked[:3]}: {line[:500]}"
            assert not any(s in line or s in readable for s in secrets_held), f"{name} logged a secret: {line[:200]}"
            assert not any(d in readable for d in DEMO_SECRETS), f"{name} logged a demo password"
    hub = resource.getrusage(resource.RUSAGE_CHILDREN)
    test = resource.getrusage(resource.RUSAGE_SELF)
    print(f"\nproduction shape: wall {', '.join(f'{k} {v:.0f} s' for k, v in running.timings.items())}; CPU of "
          f"the hub's processes {hub.ru_utime + hub.ru_stime:.0f} s, of this test process (partners, mocks) "
          f"{test.ru_utime + test.ru_stime:.0f} s; load average {os.getloadavg()[0]:.1f}")
