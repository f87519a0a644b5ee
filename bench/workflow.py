"""Joint approvals per second through the hub's workflow engine, beside SpiffWorkflow running the same flow.

    .venv/bin/python -m bench.workflow [--seconds 3] [--rounds 3] [--json PATH] [--no-http]
                                       [--http-cases 100] [--http-concurrency 4] [--http-workers 1]
                                       [--database-url URL]

SpiffWorkflow comes with the ``bench`` extra (``.venv/bin/pip install -e '.[bench]'``; scripts/bootstrap.sh
installs it).

What one run does:

1. **Engine alone** (``workflow.process``, no database, no HTTP): one joint approval of the item
   enterprise-establishment (definition ``enterprise-establishment.v1``) is ``start`` → the lead department's
   intake ``accept``\\s (which opens the four branches) → on each branch ``pass_pre_review`` (同步预审),
   ``review``, ``grant`` (branches interleaved, as four departments work at the same time; the last grant fires
   the join) → the lead department ``complete``\\s (办结). After every step the process is stored as a case
   would be — ``Process.to_json()`` dumped to a JSON string — and the next step starts from that string
   (``json.loads`` → ``Process.from_json``): 14 steps, 15 stored states per approval.
2. **SpiffWorkflow** (bench-only dependency, the ``bench`` extra) runs the same flow from BPMN
   (``bench/joint_approval.bpmn``: intake user task, parallel gateway into four branches of three user tasks,
   parallel join, completion user task): each step completes the ready user task of that name and runs the
   engine steps; after every step the workflow is serialised with Spiff's ``BpmnWorkflowSerializer`` to a JSON
   string and the next step starts from that string — the same 14 steps, in the same order.
3. Rounds alternate (engine, Spiff, Spiff, engine, …; ``--rounds``, at least 3); each side runs whole
   approvals for at least ``--seconds`` per round. Prints each side's median rate (approvals/s), CPU and wall
   time per step, the size of one stored state, the ratio engine/Spiff (median of the rounds' ratios; also by
   CPU time per approval, which a busy machine disturbs less) and the 1-minute load average before and after
   each round.
4. **Over HTTP on PostgreSQL** (unless ``--no-http``): a fresh database (like ``bench.submit``: created from
   ``--database-url``, migrated, seeded; dropped afterwards), the hub served by uvicorn as ``hub api`` serves it
   (``bench.hub_app``, ``--http-workers``), the officers signed in once; then a warm-up and ``--rounds`` rounds
   of ``--http-cases`` joint cases, ``--http-concurrency`` in flight: the applicant submits, the lead
   department's intake officer accepts and reads the four branch numbers off the case's view, each branch's
   department pre-reviews, reviews and grants its own branch (the four at once), the lead department completes
   — 16 requests per case, every answer checked. Prints the median joint cases/s, requests/s, the server's CPU
   and SQL statements per case, and the load average.

``--json PATH`` writes every figure, with the engine's rate over SpiffWorkflow's under ``ratio``. The target is a
ratio of at least 10; the benchmark says whether it is met and exits 0 either way (1 only when a flow does not
reach its end: then the figures would mean nothing).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if __package__ in (None, ""):  # run as `python bench/workflow.py`: bench/ first on the path would shadow workflow/
    sys.path[0] = str(ROOT)

WORKFLOW_ID = "enterprise-establishment.v1"
BPMN_FILE = ROOT / "bench" / "joint_approval.bpmn"
BPMN_PROCESS = "joint_approval"
BRANCH_ACTIONS = ("pass_pre_review", "review", "grant")
# The seeded item's limits (hub/seed/data/items.json, enterprise-establishment): 3 working days by law, 1 promised.
STATUTORY_LIMIT_DAYS = 3
PROMISED_LIMIT_DAYS = 1
TODAY = date(2026, 12, 1)  # a working Tuesday
OPINION = "材料齐全，符合法定形式"
TARGET_RATIO = 10.0


# --- the flow, once for both sides --------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One action of the joint approval: on the parent (``branch`` None) or on one branch."""

    branch: str | None
    action: str
    roles: tuple[str, ...]

    @property
    def bpmn_task(self) -> str:
        """The id of the BPMN user task that stands for this step."""
        return self.action if self.branch is None else f"{self.branch}_{self.action}"


def _roles_of(definition: Any, action: str) -> tuple[str, ...]:
    """Every officer role that may take ``action`` somewhere in ``definition`` (read, not hard-coded)."""
    return tuple(sorted({role for t in definition.transitions if t.action == action for role in t.roles}))


def joint_steps() -> list[Step]:
    """The 14 steps of one joint approval, in the order both sides take them, read from the definitions."""
    from workflow.registry import get_definition

    parent = get_definition(WORKFLOW_ID)
    if parent.parallel is None:
        raise SystemExit(f"{WORKFLOW_ID} has no parallel block: nothing to benchmark")
    steps = [Step(None, "accept", _roles_of(parent, "accept"))]
    for action in BRANCH_ACTIONS:  # interleaved: the four departments work at the same time
        for branch in parent.parallel.branches:
            steps.append(Step(branch.name, action, _roles_of(get_definition(branch.workflow_id), action)))
    steps.append(Step(None, "complete", _roles_of(parent, "complete")))
    return steps


# --- the engine side ----------------------------------------------------------------------------------------


class EngineFlow:
    """Joint approvals through ``workflow.process`` alone, the state stored as JSON text after every step."""

    name = "engine"

    def __init__(self, steps: list[Step], *, store: bool = True) -> None:
        from workflow.calendar import WorkingCalendar

        self.steps = steps
        self.store = store
        self.calendar = WorkingCalendar()
        self.calendar.is_working_day(TODAY)  # warm the calendar's cache outside the measurement

    def run_one(self) -> str:
        """One approval from start to completion; returns its last stored state."""
        from workflow.process import Process, advance, start

        if not self.store:
            return self._in_memory()
        stored = json.dumps(start(WORKFLOW_ID, statutory_limit_days=STATUTORY_LIMIT_DAYS,
                                  promised_limit_days=PROMISED_LIMIT_DAYS).to_json())
        for step in self.steps:
            outcome = advance(
                Process.from_json(json.loads(stored)), step.action, actor="officer", roles=step.roles,
                opinion=OPINION, today=TODAY, calendar=self.calendar, branch=step.branch,
            )
            stored = json.dumps(outcome.process.to_json())
        return stored

    def _in_memory(self) -> str:
        """``--in-memory``: the process object goes from step to step, never stored."""
        from workflow.process import advance, start

        process = start(WORKFLOW_ID, statutory_limit_days=STATUTORY_LIMIT_DAYS, promised_limit_days=PROMISED_LIMIT_DAYS)
        for step in self.steps:
            process = advance(process, step.action, actor="officer", roles=step.roles, opinion=OPINION, today=TODAY,
                              calendar=self.calendar, branch=step.branch).process
        return process.state

    def check(self) -> str:
        """Run one approval and check it ends completed with every branch granted and the join fired once."""
        from workflow.process import Process, advance, start

        process = start(WORKFLOW_ID, statutory_limit_days=STATUTORY_LIMIT_DAYS,
                        promised_limit_days=PROMISED_LIMIT_DAYS)
        joins = []
        for step in self.steps:
            outcome = advance(process, step.action, actor="officer", roles=step.roles, opinion=OPINION,
                              today=TODAY, calendar=self.calendar, branch=step.branch)
            if outcome.joined is not None:
                joins.append(outcome.joined)
            process = Process.from_json(json.loads(json.dumps(outcome.process.to_json())))
        problems = []
        if process.state != "completed":
            problems.append(f"ended in state {process.state!r}, not 'completed'")
        if joins != ["granted"]:
            problems.append(f"join fired {joins!r}, expected ['granted'] once")
        not_granted = {name: b.state for name, b in process.branches.items() if b.state != "granted"}
        if len(process.branches) != 4 or not_granted:
            problems.append(f"branches {dict((n, b.state) for n, b in process.branches.items())!r}")
        if self._in_memory() != "completed":
            problems.append("in memory, the approval does not end completed")
        if problems:
            raise FlowBroken(f"engine: {'; '.join(problems)}")
        return json.dumps(process.to_json())


# --- the SpiffWorkflow side ---------------------------------------------------------------------------------


class SpiffFlow:
    """The same approvals run by SpiffWorkflow from BPMN, serialised with its own serializer after every step."""

    name = "spiff"

    def __init__(self, steps: list[Step], *, store: bool = True) -> None:
        self.store = store
        try:
            from SpiffWorkflow.bpmn import BpmnWorkflow
            from SpiffWorkflow.bpmn.parser import BpmnParser
            from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
            from SpiffWorkflow.util.task import TaskState
        except ImportError:  # pragma: no cover - told to the person running the bench
            raise SystemExit("SpiffWorkflow is not installed: .venv/bin/pip install -e '.[bench]'") from None
        parser = BpmnParser()
        parser.add_bpmn_file(str(BPMN_FILE))
        self.spec = parser.get_spec(BPMN_PROCESS)
        self.workflow_class = BpmnWorkflow
        self.serializer = BpmnWorkflowSerializer()
        self.ready = TaskState.READY
        self.steps = steps
        self._check_same_flow()

    def _check_same_flow(self) -> None:
        """The BPMN has exactly one user task per engine step: otherwise the two sides would not be comparable."""
        user_tasks = {name for name, spec in self.spec.task_specs.items() if spec.manual}
        expected = {step.bpmn_task for step in self.steps}
        if user_tasks != expected:
            raise FlowBroken(f"{BPMN_FILE.name} user tasks {sorted(user_tasks)} != engine steps {sorted(expected)}")

    def _take(self, workflow: Any, task_name: str) -> None:
        for task in workflow.get_tasks(state=self.ready, manual=True):
            if task.task_spec.name == task_name:
                task.run()
                workflow.do_engine_steps()
                return
        raise FlowBroken(f"spiff: user task {task_name!r} is not ready")

    def run_one(self) -> str:
        return self._stored() if self.store else self._in_memory()

    def _stored(self) -> str:
        workflow = self.workflow_class(self.spec)
        workflow.do_engine_steps()
        stored = self.serializer.serialize_json(workflow)
        for step in self.steps:
            workflow = self.serializer.deserialize_json(stored)
            self._take(workflow, step.bpmn_task)
            stored = self.serializer.serialize_json(workflow)
        return stored

    def _in_memory(self) -> str:
        """``--in-memory``: one workflow object from step to step, never serialised."""
        workflow = self.workflow_class(self.spec)
        workflow.do_engine_steps()
        for step in self.steps:
            self._take(workflow, step.bpmn_task)
        return "completed" if workflow.is_completed() else "not completed"

    def check(self) -> str:
        """Run one approval both ways; each must end with the workflow completed. Returns the stored state."""
        stored = self._stored()
        if not self.serializer.deserialize_json(stored).is_completed() or self._in_memory() != "completed":
            raise FlowBroken("spiff: the workflow is not completed after the last step")
        return stored


class FlowBroken(RuntimeError):
    """A side did not run the flow to its end: its rate would measure something else."""


# --- measuring ----------------------------------------------------------------------------------------------


@dataclass
class Round:
    side: str
    approvals: int
    seconds: float
    cpu_seconds: float
    steps_per_approval: int
    load_before: float
    load_after: float

    @property
    def rate(self) -> float:
        return self.approvals / self.seconds

    def figures(self) -> dict[str, float]:
        steps = self.approvals * self.steps_per_approval
        return {
            "approvals_per_s": round(self.rate, 1),
            "approvals": self.approvals,
            "seconds": round(self.seconds, 3),
            "wall_us_per_step": round(1e6 * self.seconds / steps, 1),
            "cpu_us_per_step": round(1e6 * self.cpu_seconds / steps, 1),
            "load_average_1m_before": round(self.load_before, 2),
            "load_average_1m_after": round(self.load_after, 2),
        }


def measure(flow: EngineFlow | SpiffFlow, seconds: float) -> Round:
    """Whole approvals, one after another, until at least ``seconds`` have passed."""
    load_before = os.getloadavg()[0]
    approvals = 0
    cpu_started, started = time.process_time(), time.perf_counter()
    deadline = started + seconds
    while True:
        flow.run_one()
        approvals += 1
        if time.perf_counter() >= deadline:
            break
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return Round(flow.name, approvals, elapsed, cpu, len(flow.steps), load_before, os.getloadavg()[0])


def alternating(rounds: int) -> Iterator[tuple[int, bool]]:
    """(round, engine first?) — engine, Spiff | Spiff, engine | engine, Spiff …: neither side always goes first."""
    for index in range(rounds):
        yield index, index % 2 == 0


def median_figures(rounds: list[Round]) -> dict[str, float]:
    each = [r.figures() for r in rounds]
    return {key: round(statistics.median(f[key] for f in each), 2) for key in each[0]}


def run_engine_vs_spiff(args: argparse.Namespace) -> dict[str, Any]:
    steps = joint_steps()
    store = not args.in_memory
    engine, spiff = EngineFlow(steps, store=store), SpiffFlow(steps, store=store)
    stored = {"engine": engine.check(), "spiff": spiff.check()}
    for flow in (engine, spiff):  # warm-up: imports, caches, the allocator
        measure(flow, min(0.5, args.seconds))
    by_side: dict[str, list[Round]] = {"engine": [], "spiff": []}
    ratios, cpu_ratios = [], []
    for index, engine_first in alternating(args.rounds):
        order = (engine, spiff) if engine_first else (spiff, engine)
        done = {flow.name: measure(flow, args.seconds) for flow in order}
        for name, measured in done.items():
            by_side[name].append(measured)
        ratios.append(done["engine"].rate / done["spiff"].rate)
        # CPU per approval, side against side: what the rate ratio would be on an idle machine.
        cpu_ratios.append((done["spiff"].cpu_seconds / done["spiff"].approvals)
                          / (done["engine"].cpu_seconds / done["engine"].approvals))
        print(f"  round {index + 1}: engine {done['engine'].rate:9.1f}/s   spiff {done['spiff'].rate:7.1f}/s   "
              f"ratio {ratios[-1]:6.1f}   load {done[order[0].name].load_before:.2f}"
              f"→{done[order[1].name].load_after:.2f}", flush=True)
    return {
        "flow": {
            "workflow_id": WORKFLOW_ID, "bpmn": BPMN_FILE.name, "steps_per_approval": len(steps),
            "stored_after_every_step": store, "stored_states_per_approval": len(steps) + 1 if store else 0,
            "steps": [f"{s.branch or 'parent'}:{s.action}" for s in steps],
        },
        "engine": {**median_figures(by_side["engine"]), "stored_state_bytes": len(stored["engine"].encode())},
        "spiff": {**median_figures(by_side["spiff"]), "stored_state_bytes": len(stored["spiff"].encode()),
                  "version": _spiff_version()},
        "ratio": round(statistics.median(ratios), 2),
        "ratio_per_round": [round(r, 2) for r in ratios],
        "ratio_cpu": round(statistics.median(cpu_ratios), 2),
        "rounds": {side: [r.figures() for r in rs] for side, rs in by_side.items()},
    }


def _spiff_version() -> str:
    from importlib.metadata import version

    return version("spiffworkflow")


# --- over HTTP ---------------------------------------------------------------------------------------------

JOINT_ITEM_KEY = "enterprise-establishment"
HTTP_TIMEOUT_S = 60.0


@dataclass
class Desk:
    """The officers of the lead department and of each branch's department, signed in once each."""

    lead: str  # department key (region + department code)
    branches: dict[str, str]  # branch name -> department key
    staff: dict[str, dict[str, str]]  # department key -> role -> username
    passwords: dict[str, str]  # username -> the seed's demo password
    tokens: dict[str, str] = field(default_factory=dict)  # username -> bearer token

    @classmethod
    def from_seed(cls) -> Desk:
        from hub.seed.service import read_seed

        item = next(row for row in read_seed("items") if row["key"] == JOINT_ITEM_KEY)
        staff: dict[str, dict[str, str]] = {}
        officers = read_seed("officers")
        for officer in officers:
            for role in officer["roles"]:
                staff.setdefault(officer["region"] + officer["department"], {}).setdefault(role, officer["username"])
        return cls(lead=item["region"] + item["department"], branches=dict(item["branches"]), staff=staff,
                   passwords={officer["username"]: officer["password"] for officer in officers})

    def officer(self, department: str, roles: Collection[str]) -> str:
        """The department's officer holding the first of ``roles`` it has (roles as the definition names them)."""
        for role in roles:
            if role in self.staff.get(department, {}):
                return self.staff[department][role]
        raise FlowBroken(f"http: department {department} has no officer with a role in {sorted(roles)}")

    def headers(self, username: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[username]}"}

    def sign_in(self, base_url: str, usernames: Collection[str]) -> None:
        for username in usernames:
            response = httpx.post(f"{base_url}/api/v1/auth/token", timeout=HTTP_TIMEOUT_S,
                                  data={"username": username, "password": self.passwords[username]})
            if response.status_code != 200:
                raise FlowBroken(f"http: sign-in of {username} answered {response.status_code}: {response.text}")
            self.tokens[username] = response.json()["access_token"]


@dataclass
class HttpRound:
    cases: int
    requests: int
    seconds: float
    server_cpu_s: float
    statements: int
    commits: int
    load_before: float
    load_after: float

    def figures(self) -> dict[str, float]:
        return {
            "cases_per_s": round(self.cases / self.seconds, 2),
            "requests_per_s": round(self.requests / self.seconds, 1),
            "seconds": round(self.seconds, 3),
            "server_cpu_ms_per_case": round(1000 * self.server_cpu_s / self.cases, 2),
            "server_cpu_ms_per_request": round(1000 * self.server_cpu_s / self.requests, 3),
            "sql_statements_per_case": round(self.statements / self.cases, 1),
            "commits_per_case": round(self.commits / self.cases, 1),
            "load_average_1m_before": round(self.load_before, 2),
            "load_average_1m_after": round(self.load_after, 2),
        }


class JointCaseOverHttp:
    """One joint case through the hub's API, as its people would do it: the applicant submits; the lead
    department's intake officer accepts and finds the four branch cases on the case's view; each branch's
    department pre-reviews, reviews and grants its own branch (the four at the same time); the lead department
    completes. Every answer is checked; the last must leave the case completed."""

    def __init__(self, client: Any, desk: Desk, steps: list[Step]) -> None:
        self.client, self.desk = client, desk
        self.accept, *branch_steps, self.complete = steps
        self.branch_steps = [s for s in branch_steps if s.branch == branch_steps[0].branch]  # one branch's actions

    async def run(self, body: bytes) -> int:
        """Runs the case; returns the number of requests it took."""
        receipt = await self._send("POST", "/api/v1/applications", 201, content=body,
                                   headers={"Content-Type": "application/json"})
        number = receipt["tracking_no"]
        lead_intake = self.desk.officer(self.desk.lead, self.accept.roles)
        await self._act(lead_intake, number, self.accept)
        view = await self._send("GET", f"/api/v1/cases/{number}", 200, headers=self.desk.headers(lead_intake))
        branches = {line["branch"]: line["tracking_no"] for line in view["branches"]}
        if set(branches) != set(self.desk.branches):
            raise FlowBroken(f"http: case {number} opened branches {sorted(branches)}, "
                             f"not {sorted(self.desk.branches)}")
        await asyncio.gather(*(self._branch(name, branch_number) for name, branch_number in branches.items()))
        done = await self._act(self.desk.officer(self.desk.lead, self.complete.roles), number, self.complete)
        if done["state"] != "completed":
            raise FlowBroken(f"http: case {number} is {done['state']!r} after {self.complete.action}")
        return 3 + len(branches) * len(self.branch_steps) + 1

    async def _branch(self, name: str, number: str) -> None:
        department = self.desk.branches[name]
        for step in self.branch_steps:
            await self._act(self.desk.officer(department, step.roles), number, step)

    async def _act(self, username: str, number: str, step: Step) -> dict[str, Any]:
        return await self._send("POST", f"/api/v1/cases/{number}/actions", 200, headers=self.desk.headers(username),
                                json={"action": step.action, "opinion": OPINION})

    async def _send(self, method: str, path: str, expect: int, **kwargs: Any) -> dict[str, Any]:
        response = await self.client.request(method, path, **kwargs)
        if response.status_code != expect:
            raise FlowBroken(f"http: {method} {path} answered {response.status_code}: {response.text[:500]}")
        return dict(response.json())


async def http_round(server: Any, desk: Desk, steps: list[Step], bodies: list[bytes], concurrency: int) -> HttpRound:
    """Every body as one joint case, ``concurrency`` cases in flight."""
    limits = httpx.Limits(max_connections=concurrency * (len(desk.branches) + 1), max_keepalive_connections=None)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=HTTP_TIMEOUT_S, limits=limits) as client:
        case = JointCaseOverHttp(client, desk, steps)
        pending = iter(bodies)
        requests = 0

        async def worker() -> None:
            nonlocal requests
            for body in pending:
                made = await case.run(body)  # not `requests += await …`: that reads `requests` before the await
                requests += made

        load_before, cpu_before, sql_before = os.getloadavg()[0], server.cpu_seconds(), server.statements()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        sql = [after - before for after, before in zip(server.statements(), sql_before, strict=True)]
        return HttpRound(len(bodies), requests, seconds, server.cpu_seconds() - cpu_before, sql[0], sql[1],
                         load_before, os.getloadavg()[0])


def joint_bodies(item_code: str, count: int) -> list[bytes]:
    """``count`` applications for the joint item, each by a different applicant, with the form's example."""
    from bench.submit import citizen_ids
    from hub.seed.service import read_form

    form = read_form(f"{JOINT_ITEM_KEY}.v1.json")["examples"][0]
    return [json.dumps({"item_code": item_code, "form": form, "applicant": {
        "type": "1", "name": "张三", "id_type": "citizen_id", "id_number": number, "phone": "13812345678"}},
        ensure_ascii=False).encode() for number in citizen_ids(count, region="210103")]


def run_http(args: argparse.Namespace) -> dict[str, Any]:
    """Joint cases per second over HTTP: a fresh PostgreSQL database, a real hub server, whole cases."""
    from bench.submit import Server, fresh_database, prepare_database

    steps, desk = joint_steps(), Desk.from_seed()
    database = f"hub_bench_workflow_{os.getpid()}"
    per_round = args.http_cases
    with tempfile.TemporaryDirectory(prefix="hub-bench-") as tmp, \
            fresh_database(args.database_url, database, keep=False) as url:
        print(f"\nover HTTP: database {database}, migrating and seeding …", flush=True)
        prepare_database(url)
        server = Server("hub", "bench.hub_app:app_from_env",
                        {"BENCH_DATABASE_URL": url, "BENCH_DATA_DIR": tmp, "HUB_LOG_LEVEL": "WARNING"},
                        "/health", workers=args.http_workers)
        try:
            server.start(Path(tmp))
            server.wait_ready()
            desk.sign_in(server.base_url, sorted(
                {desk.officer(desk.lead, s.roles) for s in steps if s.branch is None}
                | {desk.officer(desk.branches[str(s.branch)], s.roles) for s in steps if s.branch is not None}))
            item_code = _item_code(server.base_url)
            warmup = max(args.http_concurrency, per_round // 10)
            bodies = joint_bodies(item_code, warmup + args.rounds * per_round)
            asyncio.run(http_round(server, desk, steps, bodies[:warmup], args.http_concurrency))
            rounds = []
            for index in range(args.rounds):
                chunk = bodies[warmup + index * per_round: warmup + (index + 1) * per_round]
                measured = asyncio.run(http_round(server, desk, steps, chunk, args.http_concurrency))
                rounds.append(measured)
                f = measured.figures()
                print(f"  round {index + 1}: {f['cases_per_s']:7.2f} joint cases/s  {f['requests_per_s']:7.1f} req/s  "
                      f"server CPU {f['server_cpu_ms_per_case']:6.1f} ms/case  SQL {f['sql_statements_per_case']}"
                      f"/case  load {f['load_average_1m_before']:.2f}→{f['load_average_1m_after']:.2f}", flush=True)
        except (FlowBroken, RuntimeError, httpx.HTTPError) as exc:
            raise FlowBroken(f"{exc}\nlast lines of the hub's log:\n{server.tail(30)}") from exc
        finally:
            server.stop()
    each = [r.figures() for r in rounds]
    return {
        **{key: round(statistics.median(f[key] for f in each), 2) for key in each[0]},
        "cases_per_round": per_round, "concurrency": args.http_concurrency, "workers": args.http_workers,
        "requests_per_case": rounds[0].requests // rounds[0].cases, "rounds": each,
    }


def _item_code(base_url: str) -> str:
    response = httpx.get(f"{base_url}/api/v1/items", params={"q": JOINT_ITEM_KEY, "limit": 100},
                         timeout=HTTP_TIMEOUT_S)
    response.raise_for_status()
    for item in response.json()["items"]:
        if item["key"] == JOINT_ITEM_KEY:
            return str(item["code"])
    raise FlowBroken(f"http: the seeded catalogue has no item {JOINT_ITEM_KEY!r}")


# --- the command --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.workflow", description=__doc__.split("\n\n", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="minimum duration of each side's round (default 3)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per side, at least 3 (default 3)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures to this file")
    parser.add_argument("--no-http", action="store_true", help="skip the end-to-end part over HTTP")
    parser.add_argument("--in-memory", action="store_true",
                        help="compare the two engines alone: no state stored between steps (not the target's setting)")
    parser.add_argument("--http-cases", type=int, default=100, help="joint cases over HTTP per round (default 100)")
    parser.add_argument("--http-concurrency", type=int, default=4,
                        help="joint cases in flight over HTTP, each with its four branches at once (default 4)")
    parser.add_argument("--http-workers", type=int, default=1, help="uvicorn workers of the hub (default 1)")
    parser.add_argument("--database-url", default="postgresql+psycopg://hub_test:hub_test@127.0.0.1:5432/hub_test",
                        help="PostgreSQL server for the HTTP part; its role needs CREATEDB")
    args = parser.parse_args(argv)
    if args.rounds < 3:
        parser.error("--rounds must be at least 3 (medians of alternating rounds)")
    if args.seconds <= 0:
        parser.error("--seconds must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    figures: dict[str, Any] = {
        "benchmark": "workflow", "python": platform.python_version(), "platform": platform.platform(),
        "cpus": os.cpu_count(), "load_average_1m_start": round(os.getloadavg()[0], 2),
    }
    print(f"joint approval ({WORKFLOW_ID}): engine vs SpiffWorkflow, {args.rounds} alternating rounds "
          f"of ≥ {args.seconds:g} s per side; load average {os.getloadavg()[0]:.2f}", flush=True)
    try:
        figures.update(run_engine_vs_spiff(args))
        if not args.no_http:
            figures["http"] = run_http(args)
    except FlowBroken as exc:
        print(f"FLOW BROKEN: {exc}", file=sys.stderr)
        return 1
    figures["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(figures, ensure_ascii=False))
    return 0


def report(figures: dict[str, Any]) -> None:
    engine, spiff = figures["engine"], figures["spiff"]
    print()
    print(f"{'side':<8} {'approvals/s':>12} {'µs/step wall':>13} {'µs/step CPU':>12} {'state bytes':>12}")
    for name, side in (("engine", engine), ("spiff", spiff)):
        print(f"{name:<8} {side['approvals_per_s']:>12} {side['wall_us_per_step']:>13} "
              f"{side['cpu_us_per_step']:>12} {side['stored_state_bytes']:>12}")
    met = "met" if figures["ratio"] >= TARGET_RATIO else "NOT met"
    print(f"ratio engine/Spiff (median of rounds {figures['ratio_per_round']}): {figures['ratio']} "
          f"— target ≥ {TARGET_RATIO:g} {met}; by CPU time per approval: {figures['ratio_cpu']}")
    if "http" in figures:
        http = figures["http"]
        print(f"over HTTP on PostgreSQL: {http['cases_per_s']} joint cases/s, {http['requests_per_s']} requests/s "
              f"({http['requests_per_case']} requests per case, concurrency {http['concurrency']})")
    print(f"load average (1 min): start {figures['load_average_1m_start']}, end {figures['load_average_1m_end']}")


if __name__ == "__main__":
    raise SystemExit(main())
