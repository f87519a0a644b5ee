"""Mock legacy approval system of 沈阳市卫生健康委员会 (210100-007): both directions of the SOAP link.

* **Server** — the department's own case-intake endpoint (contract schemas/soap/legacy-department.v1.wsdl)
  that the hub pushes new cases to::

      POST /legacy                ReceiveCase          GET /legacy?wsdl      the WSDL
      GET  /_control/received     the pushed cases     POST /_control/faults, /refuse, /recover (fault switches)
      POST /_control/run-once     one decision pass against the hub (needs hub_url and deciding switched
                                  on); {"only": [numbers]}
      GET  /_control/decisions    every decision made so far

* **Client** — with **zeep** against the hub's department-exchange WSDL, signed in (WS-Security
  UsernameToken) as the department's demo officers, it fetches each officer's pending cases and
  decides them as the old system's users would: intake accepts, the reviewer reviews, the approver
  grants and completes. ``run_once(hub_url)`` is one pass; ``start_legacy(..., hub_url=..., decides=True)``
  also runs a pass every ``interval_s`` seconds in the background. Deciding is OFF unless switched on
  (``decides=True``, ``hub mocks --legacy-decides``, ``--decide`` here): a mock pointed at a real hub must
  never act as its officers (issue 13: 61 officer actions on 25 real cases in one run).

Knows nothing of the hub's internals: only the WSDLs and zeep. Every zeep call sets
``operation_timeout``; each officer's client loads the hub's WSDL once and is reused.

``python -m mocks.legacy_department --port 8111 --hub-url http://127.0.0.1:8000`` serves it alone.
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import requests
import zeep
import zeep.exceptions
from fastapi import Body, FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field
from zeep.wsse import utils as wsse_utils
from zeep.wsse.username import UsernameToken

from mocks.server import MockServer
from mocks.soapkit import Call, Contract, soap_app

PATH = "/legacy"
CONTRACT = Contract("legacy-department.v1.wsdl", "legacy-department.v1.xsd", fault_element="LegacyFault")
HUB_WSDL_PATH = "/soap/department-exchange?wsdl"
SYSTEM_CODE = "legacy-sy-wj"
# The demo officers of 沈阳市卫生健康委员会, in the order a case passes them.
OFFICERS: tuple[str, ...] = ("sy_wj_intake", "sy_wj_reviewer", "sy_wj_approver")
DEMO_PASSWORD = "demo-Password-1"
REVIEW_OPINION = "材料齐全，符合法定条件（部门原系统审核）"
GRANT_OPINION = "准予许可（部门原系统审批）"
MAX_ROUNDS = 5

log = logging.getLogger("mocks.legacy_department")
logging.getLogger("zeep").setLevel(logging.WARNING)


# --- client of the hub's department-exchange service --------------------------------------------


Now = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class FreshUsernameToken(UsernameToken):
    """PasswordText plus a new wsse:Nonce and wsu:Created on every request (UsernameToken Profile 1.1),
    which the hub requires so that a captured request cannot be replayed. zeep adds Nonce and Created
    only to PasswordDigest tokens, which the hub cannot check (it stores one-way password hashes)."""

    def __init__(self, username: str, password: str, *, now: Now = utc_now) -> None:
        super().__init__(username, password)
        self._now = now

    def _create_password_text(self) -> list[Any]:
        created = self._now().astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        nonce = base64.b64encode(os.urandom(16)).decode("ascii")
        return [*super()._create_password_text(),
                wsse_utils.WSSE.Nonce(nonce, EncodingType=f"{self.soap_message_secutity_ns}#Base64Binary"),
                wsse_utils.WSU.Created(created)]


class HubDepartmentExchange:
    """The hub's department-exchange service as one officer, through zeep and the hub's WSDL.

    ``now``: the clock the token's Created is taken from (tests pass the hub's test clock)."""

    def __init__(self, hub_url: str, username: str, password: str, *, system: str = SYSTEM_CODE,
                 timeout_s: float = 10.0, now: Now = utc_now) -> None:
        session = requests.Session()
        session.trust_env = False  # loopback demo traffic never goes through a proxy
        transport = zeep.Transport(session=session, timeout=timeout_s, operation_timeout=timeout_s)
        self.username = username
        self.system = system
        self.client = zeep.Client(hub_url.rstrip("/") + HUB_WSDL_PATH, transport=transport,
                                  wsse=FreshUsernameToken(username, password, now=now))

    def _headers(self, operation: str, case: str | None = None, message_id: str | None = None) -> dict[str, Any]:
        exchange = {"messageId": message_id or str(uuid.uuid4()), "client": self.system,
                    "service": f"department-exchange.{operation}", "onBehalfOf": self.username}
        if case:
            exchange["case"] = case
        return {"exchange": exchange}

    def fetch_pending_cases(self, *, offset: int = 0, limit: int = 100) -> Any:
        return self.client.service.FetchPendingCases(offset=offset, limit=limit,
                                                     _soapheaders=self._headers("FetchPendingCases"))

    def submit_decision(self, tracking_no: str, action: str, opinion: str | None = None, *,
                        message_id: str | None = None) -> Any:
        return self.client.service.SubmitDecision(
            trackingNo=tracking_no, action=action, opinion=opinion,
            _soapheaders=self._headers("SubmitDecision", tracking_no, message_id),
        )

    def get_case(self, tracking_no: str) -> Any:
        return self.client.service.GetCase(trackingNo=tracking_no, _soapheaders=self._headers("GetCase", tracking_no))


_CLIENTS: dict[tuple[str, str, Now], HubDepartmentExchange] = {}
_CLIENTS_LOCK = threading.Lock()


def hub_client(hub_url: str, username: str, password: str = DEMO_PASSWORD, *,
               now: Now = utc_now) -> HubDepartmentExchange:
    """The cached client of one officer (the WSDL is loaded once per hub, officer and clock)."""
    key = (hub_url.rstrip("/"), username, now)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            client = _CLIENTS[key] = HubDepartmentExchange(hub_url, username, password, now=now)
        return client


@dataclass(frozen=True)
class Decision:
    tracking_no: str
    officer: str
    action: str
    state: str | None  # the case's new state, or None when the hub refused
    fault: str | None = None


Plan = tuple[str, str | None]
Decide = Callable[[Any], Plan | None]


def default_decide(case: Any) -> Plan | None:
    """What the old system's users do with a pending case: accept, review, grant, complete."""
    available = set(case.availableAction or [])
    for action, opinion in (("accept", None), ("review", REVIEW_OPINION), ("grant", GRANT_OPINION),
                            ("complete", None)):
        if action in available:
            return action, opinion
    return None


def run_once(hub_url: str, *, officers: Sequence[str] = OFFICERS, password: str = DEMO_PASSWORD,
             decide: Decide = default_decide, only: set[str] | None = None, limit: int = 100,
             now: Now = utc_now) -> list[Decision]:
    """One pass: every officer in turn fetches the pending cases and decides them (``only``: just these
    tracking numbers). A refused decision (the case moved on meanwhile) is recorded and skipped."""
    decisions: list[Decision] = []
    for username in officers:
        client = hub_client(hub_url, username, password, now=now)
        for _ in range(MAX_ROUNDS):
            acted = False
            for case in list(_pending_cases(client, limit)):  # every page first: deciding reorders the queue
                if only is not None and case.trackingNo not in only:
                    continue
                plan = decide(case)
                if plan is None:
                    continue
                action, opinion = plan
                try:
                    answer = client.submit_decision(case.trackingNo, action, opinion)
                except zeep.exceptions.Fault as fault:
                    decisions.append(Decision(case.trackingNo, username, action, None, fault.message))
                    continue
                decisions.append(Decision(case.trackingNo, username, action, answer.state))
                acted = True
            if not acted:
                break
    return decisions


def _pending_cases(client: HubDepartmentExchange, limit: int) -> Iterator[Any]:
    """Every page of the officer's queue: a department with more pending cases than one page holds still
    sees them all."""
    offset = 0
    while True:
        page = client.fetch_pending_cases(offset=offset, limit=limit)
        yield from page.case or []
        offset += limit
        if offset >= (page.total or 0):
            return


# --- the department's own intake endpoint ---------------------------------------------------------


class LegacyState:
    """Cases the hub pushed, in arrival order (a repeated messageId is acknowledged, not stored twice)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cases: list[dict[str, Any]] = []
        self._acks: dict[str, str] = {}
        self._decisions: list[Decision] = []
        self.duplicates = 0

    def receive(self, call: Call) -> dict[str, Any]:
        values = call.values
        key = values["messageId"].lower()
        with self._lock:
            known = self._acks.get(key)
            if known is not None:
                self.duplicates += 1
                return {"ackId": known, "duplicate": True}
            ack = f"LG-{uuid.uuid4().hex[:12].upper()}"
            self._acks[key] = ack
            self._cases.append({**values, "ackId": ack, "receivedAt": datetime.now(UTC).isoformat(),
                                "exchange": {"client": call.exchange.client, "service": call.exchange.service,
                                             "onBehalfOf": call.exchange.on_behalf_of, "case": call.exchange.case}})
            return {"ackId": ack, "duplicate": False}

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(c) for c in self._cases]

    def record(self, decisions: list[Decision]) -> None:
        with self._lock:
            self._decisions.extend(decisions)

    def decisions(self) -> list[Decision]:
        with self._lock:
            return list(self._decisions)


class DecidingOff(RuntimeError):
    """The mock was asked to decide cases while deciding is switched off."""


class LegacyMock:
    """A running legacy department mock: its endpoint, what it received, its decision loop."""

    def __init__(self, server: MockServer, state: LegacyState, hub_url: str | None, interval_s: float | None,
                 now: Now = utc_now, *, decides: bool = False) -> None:
        self.server = server
        self.now = now
        self.state = state
        self.hub_url = hub_url
        self.decides = decides
        self._run_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if hub_url and interval_s and decides:
            self._thread = threading.Thread(target=self._loop, args=(interval_s,), name="legacy-decisions",
                                            daemon=True)
            self._thread.start()

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def service_url(self) -> str:
        return self.server.url + PATH

    @property
    def wsdl_url(self) -> str:
        return f"{self.service_url}?wsdl"

    @property
    def control_url(self) -> str:
        return self.server.control_url

    def received(self) -> list[dict[str, Any]]:
        return self.state.received()

    def run_once(self, **kwargs: Any) -> list[Decision]:
        if not self.hub_url:
            raise RuntimeError("this legacy mock was started without hub_url")
        if not self.decides:
            raise DecidingOff("this legacy mock does not decide cases: start it with decides=True "
                              "(`hub mocks --legacy-decides`)")
        with self._run_lock:  # the loop and the control API never decide concurrently
            decisions = run_once(self.hub_url, **{"now": self.now, **kwargs})
        self.state.record(decisions)
        return decisions

    def _loop(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            try:
                self.run_once()
            except Exception as exc:  # the hub may be down or restarting: try again next time
                log.warning("legacy decision pass failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.server.stop()


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    only: list[str] | None = Field(default=None, description="decide only these tracking numbers")


def create_app(server: MockServer, state: LegacyState, mock: Callable[[], LegacyMock | None]) -> FastAPI:
    app = soap_app(server, CONTRACT, PATH, {"ReceiveCase": state.receive},
                   "Mock legacy department system (沈阳市卫生健康委员会)")

    @app.get("/_control/received", tags=["control"])
    def received() -> dict[str, Any]:
        cases = state.received()
        return {"count": len(cases), "duplicates": state.duplicates, "cases": cases}

    @app.get("/_control/decisions", tags=["control"])
    def decisions() -> dict[str, Any]:
        return {"decisions": [asdict(d) for d in state.decisions()]}

    @app.post("/_control/run-once", tags=["control"])
    def run(request: RunRequest | None = Body(default=None)) -> dict[str, Any]:
        running = mock()
        if running is None or not running.hub_url:
            raise HTTPException(status_code=409, detail="started without hub_url: nothing to decide against")
        if not running.decides:
            raise HTTPException(status_code=409, detail="deciding is switched off (start the mock with "
                                                        "decides=True, `hub mocks --legacy-decides`)")
        only = set(request.only) if request and request.only is not None else None
        try:
            made = running.run_once(only=only)
        except Exception as exc:
            raise HTTPException(status_code=502, detail=f"decision pass failed: {type(exc).__name__}: {exc}") from None
        return {"decisions": [asdict(d) for d in made]}

    return app


def start_legacy(host: str = "127.0.0.1", port: int = 0, hub_url: str | None = None, *,
                 interval_s: float | None = 5.0, now: Now = utc_now, decides: bool = False) -> LegacyMock:
    """Serve the legacy mock on ``host:port`` (0: a free port); with ``hub_url`` and ``decides`` it also
    decides the department's pending cases through the hub (every ``interval_s`` seconds, and on
    ``run_once``); without ``decides`` it only receives the hub's pushes. ``now``: the clock of its
    WS-Security timestamps (the hub refuses a Created far from its own time)."""
    state = LegacyState()
    holder: list[LegacyMock] = []
    server = MockServer("legacy-sy-wj", "soap", lambda s: create_app(s, state, lambda: holder[0] if holder else None),
                        host=host, port=port)
    server.start()
    mock = LegacyMock(server, state, hub_url, interval_s, now, decides=decides)
    holder.append(mock)
    return mock


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="mock legacy department system (SOAP server + zeep client)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8111)
    parser.add_argument("--hub-url", default="http://127.0.0.1:8000")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between decision passes")
    parser.add_argument("--decide", action="store_true",
                        help="act as the department's officers and decide its cases through the hub (off by default)")
    args = parser.parse_args(argv)
    mock = start_legacy(args.host, args.port, args.hub_url, interval_s=args.interval, decides=args.decide)
    print(f"legacy department mock  WSDL {mock.wsdl_url}   control {mock.control_url}   hub {args.hub_url}",
          flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        mock.stop()


if __name__ == "__main__":
    main()
