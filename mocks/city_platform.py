"""City platform simulator: a municipal approval platform that reports its cases to the province over AMQP.

It stands where a city's own approval system stands and knows nothing of hub/, adapters/ or workflow/: it
speaks only the published exchange specification (docs/exchange.md) with pika, json and uuid.

* It publishes ``case-record.v1`` documents (the whole case with its step history; ``record_version`` grows as
  the case progresses) and ``case-event.v1`` documents (one new step) to the exchange ``hub.inbound`` with the
  routing key ``<partner>.<type>.v1``: persistent, ``mandatory``, with publisher confirms, and with ``user_id``
  = its AMQP user, so the broker vouches for the sender. A message whose confirm is lost to a broker restart
  is published again with the same ``message_id`` (the hub deduplicates), so nothing is lost.
* Applicants carry valid GB 11643 citizen ID numbers or GB 32100 credit codes; item codes come from the
  hub's public catalogue (``--catalogue-url``), from ``--item`` arguments, or from the demo catalogue copy
  in ``mocks.city_data``.
* On request it sends faulty messages (``--fault KIND=N``): ``schema`` (envelope or payload breaks its
  schema), ``wrong_region`` (another city's region), ``duplicate`` (a message sent again with its
  message_id), ``out_of_order`` (a step published before its predecessor — valid, the hub holds it),
  ``bad_json`` (truncated, GBK-encoded or XML bodies), ``unknown_item`` (a well-formed item code that is
  not in the catalogue) and ``identifier`` (an ID number whose check character is wrong).
* It counts what it sent by category and knows exactly which message ids the hub should apply, which it
  should dead-letter and why, and how many cases and steps the hub should end up with (``SimulationReport``).
* It consumes the hub's events: its own queue ``partner.<code>.events`` bound to ``hub.events``
  (``case.#``, ``catalog.#``), counted by type and message id.

API: ``run(amqp_url, partner, count, faults={"schema": 10}, seed=1) -> SimulationReport``, or
``CityPlatform`` for finer control (the tests use it). CLI::

    python -m mocks.city_platform --partner shenyang --count 1000 --fault schema=5 --fault duplicate=20 \\
        --amqp-url amqp://127.0.0.1:5672/%2F --catalogue-url http://127.0.0.1:8000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit
from urllib.request import Request, urlopen

import pika
import pika.exceptions

from mocks.city_data import (
    CITIES,
    COMPANY_FORMS,
    COMPANY_TRADES,
    COMPANY_WORDS,
    DEMO_ITEMS,
    GIVEN,
    INSTITUTIONS,
    OPINIONS,
    ORGANISATIONS,
    SPECIAL_PROCEDURES,
    SURNAMES,
    WINDOWS,
    CatalogueItem,
    City,
    item_code,
)
from mocks.registries.checks import CREDIT_ALPHABET, citizen_id_check, credit_code_check, organisation_code_check

log = logging.getLogger("mocks.city_platform")

INBOUND_EXCHANGE = "hub.inbound"
EVENTS_EXCHANGE = "hub.events"
DEFAULT_SECRET = "demo-Partner-1"
CHINA = timezone(timedelta(hours=8))

# What a message is expected to become at the hub.
APPLY = "apply"
DEAD = "dead"

VALID_KINDS = ("new_case", "record_update", "event", "out_of_order")
FAULT_KINDS = ("schema", "wrong_region", "duplicate", "out_of_order", "bad_json", "unknown_item", "identifier")
# The reason the hub gives (dead letters carry "<reason>: <detail>").
FAULT_REASONS = {"schema": "schema", "wrong_region": "wrong_region", "bad_json": "bad_json",
                 "unknown_item": "unknown_item", "identifier": "identifier"}

# The standard flow, as published in the exchange specification: (state, action) -> new state.
TRANSITIONS: dict[tuple[str | None, str], str] = {
    (None, "submit"): "submitted",
    ("submitted", "accept"): "under_review",
    ("submitted", "refuse_intake"): "intake_refused",
    ("submitted", "request_supplement"): "awaiting_supplement",
    ("awaiting_supplement", "supplement"): "submitted",
    ("under_review", "request_supplement"): "review_supplement",
    ("review_supplement", "supplement"): "under_review",
    ("under_review", "review"): "pending_decision",
    ("pending_decision", "grant"): "granted",
    ("pending_decision", "deny"): "denied",
    ("granted", "complete"): "completed",
    ("denied", "complete"): "completed",
    **{(state, "withdraw"): "withdrawn" for state in
       ("submitted", "awaiting_supplement", "under_review", "review_supplement", "pending_decision")},
}
# How cases go, and how often (weights).
PATHS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (60, ("submit", "accept", "review", "grant", "complete")),
    (8, ("submit", "accept", "review", "deny", "complete")),
    (10, ("submit", "request_supplement", "supplement", "accept", "review", "grant", "complete")),
    (8, ("submit", "accept", "request_supplement", "supplement", "review", "grant", "complete")),
    (5, ("submit", "refuse_intake")),
    (5, ("submit", "accept", "withdraw")),
    (4, ("submit", "withdraw")),
)
OUTCOMES = {"grant": "granted", "deny": "denied", "refuse_intake": "intake_refused", "withdraw": "withdrawn"}


class SimulatorError(Exception):
    """The simulator cannot go on (broker refused, nothing bound, out of time)."""


class BrokerRefused(SimulatorError):
    """The broker closed the channel: 403 (permissions), 406 (user_id), 404 (no exchange)."""

    def __init__(self, reply_code: int, reply_text: str) -> None:
        super().__init__(f"broker refused the message: {reply_code} {reply_text}")
        self.reply_code = reply_code
        self.reply_text = reply_text


# --- identifiers -------------------------------------------------------------------------------


def citizen_id(rng: random.Random, region: str, *, born_after: int = 1950, born_before: int = 2004) -> str:
    """A GB 11643 number: region, birth date, sequence, MOD 11-2 check character."""
    born = datetime(rng.randint(born_after, born_before), 1, 1) + timedelta(days=rng.randint(0, 364))
    body = f"{region}{born:%Y%m%d}{rng.randint(0, 999):03d}"
    return body + citizen_id_check(body)


def credit_code(rng: random.Random, region: str, category: str = "91") -> str:
    """A GB 32100 code: category, region, embedded GB 11714 organisation code, check character."""
    org = "".join(rng.choice(CREDIT_ALPHABET[:10] + "ABCDEFGHJKLMNPQRTUWXY") for _ in range(8))
    body = f"{category}{region}{org}{organisation_code_check(org)}"
    return body + credit_code_check(body)


# --- catalogue ---------------------------------------------------------------------------------


def fetch_catalogue(base_url: str, city: City, *, timeout_s: float = 5.0) -> list[CatalogueItem]:
    """The items of ``city`` (its own region and its districts) from the hub's public catalogue API."""
    base = base_url.rstrip("/")
    prefix = city.region[:4]
    found: list[CatalogueItem] = []
    offset = 0
    while True:
        page = _get_json(f"{base}/api/v1/items?limit=100&offset={offset}", timeout_s)
        for row in page["items"]:
            if row["region"].startswith(prefix):
                detail = _get_json(f"{base}/api/v1/items/{quote(row['code'])}", timeout_s)
                found.append(CatalogueItem(row["code"], row["region"], row["name"],
                                           tuple(detail.get("applicant_types") or ("1",)),
                                           int(row.get("promised_limit_days") or 0)))
        offset += len(page["items"])
        if not page["items"] or offset >= int(page["total"]):
            return found


def _get_json(url: str, timeout_s: float) -> Any:
    with urlopen(Request(url, headers={"Accept": "application/json"}), timeout=timeout_s) as response:
        return json.loads(response.read())


def items_for(city: City, items: Iterable[str | CatalogueItem] | None = None,
              catalogue_url: str | None = None) -> list[CatalogueItem]:
    """Item codes given (their region is the code's first six digits), else the hub's catalogue, else the demo
    copy; only those of the city's own region tree."""
    if items:
        chosen = [i if isinstance(i, CatalogueItem) else CatalogueItem(i, i[:6], f"事项{i[-6:]}", ("1", "2"), 5)
                  for i in items]
    elif catalogue_url:
        chosen = fetch_catalogue(catalogue_url, city)
    else:
        chosen = list(DEMO_ITEMS)
    chosen = [i for i in chosen if i.region[:4] == city.region[:4]]
    if not chosen:
        raise SimulatorError(f"no catalogue item of region {city.region} to report cases of")
    return chosen


# --- cases -------------------------------------------------------------------------------------


@dataclass
class ExpectedCase:
    """What the hub should hold for one case after the run."""

    external_id: str
    item_code: str
    region: str
    seq: int  # steps the hub should have
    state: str
    record_version: int  # the highest record_version sent


@dataclass
class _Case:
    external_id: str
    item: CatalogueItem
    applicant: dict[str, Any]
    submitted_at: datetime
    path: tuple[str, ...]
    window: str
    clerks: tuple[str, str]
    steps: list[dict[str, Any]] = field(default_factory=list)
    version: int = 0
    special: list[dict[str, Any]] = field(default_factory=list)
    certificate: str = ""
    satisfaction: int = 5

    @property
    def state(self) -> str | None:
        return self.steps[-1]["to_state"] if self.steps else None

    @property
    def remaining(self) -> int:
        return len(self.path) - len(self.steps)

    def add_step(self, rng: random.Random, now: datetime) -> dict[str, Any]:
        action = self.path[len(self.steps)]
        if self.steps:
            at = min(datetime.fromisoformat(self.steps[-1]["at"]) + timedelta(minutes=rng.randint(20, 2 * 24 * 60)),
                     now)
        else:
            at = self.submitted_at
        if action == "submit":
            officer = self.window  # the window (or online hall) that took the application in
        elif action in ("supplement", "withdraw"):
            officer = "申请人"  # the applicant's own step
        else:
            officer = rng.choice(self.clerks)
        step = {
            "seq": len(self.steps) + 1, "action": action, "to_state": TRANSITIONS[(self.state, action)],
            "at": at.astimezone(CHINA).isoformat(timespec="seconds"), "officer": officer,
            "opinion": rng.choice(OPINIONS[action]),
        }
        self.steps.append(step)
        if action == "review" and rng.random() < 0.1:
            start = at.date()
            kind, reason = rng.choice(SPECIAL_PROCEDURES)
            self.special.append({"kind": kind, "reason": reason, "start": start.isoformat(),
                                 "end": (start + timedelta(days=rng.randint(1, 10))).isoformat(), "result": "通过"})
        return step

    def record(self) -> dict[str, Any]:
        self.version += 1
        record: dict[str, Any] = {
            "external_id": self.external_id, "record_version": self.version, "item_code": self.item.code,
            "region": self.item.region, "applicant": self.applicant,
            "submitted_at": self.submitted_at.astimezone(CHINA).isoformat(timespec="seconds"),
            "state": self.state, "steps": [dict(s) for s in self.steps],
        }
        accepted = next((s for s in self.steps if s["action"] == "accept"), None)
        if accepted:
            record["accepted_at"] = accepted["at"]
            if self.item.promised_limit_days >= 10:  # long items: the platform promises a calendar date
                day = datetime.fromisoformat(accepted["at"]).date() + timedelta(
                    days=self.item.promised_limit_days * 7 // 5 + 2)
                record["promised_completion_date"] = day.isoformat()
        if self.special:
            record["special_procedures"] = [dict(p) for p in self.special]
        decision = next((s for s in reversed(self.steps) if s["action"] in OUTCOMES), None)
        if decision:
            result: dict[str, Any] = {"at": decision["at"], "outcome": OUTCOMES[decision["action"]]}
            if decision["action"] == "grant":
                result["certificate_name"] = f"{self.item.name}准予许可决定书"[:128]
                result["certificate_number"] = self.certificate
            if self.state == "completed":
                result["satisfaction"] = self.satisfaction
            record["result"] = result
        return record


@dataclass
class Planned:
    """One message of the run, with what the hub is expected to make of it."""

    category: str
    message_id: str
    record_type: str  # case-record | case-event
    body: bytes
    expect: str  # APPLY | DEAD
    reason: str | None = None  # for DEAD: the hub's reason
    external_id: str | None = None

    @property
    def type(self) -> str:
        return f"{self.record_type}.v1"


# --- report ------------------------------------------------------------------------------------


@dataclass
class SimulationReport:
    """What was sent and what the hub should make of it; the hub events received."""

    partner: str
    region: str
    run_id: str
    external_id_prefix: str
    sent: Counter[str] = field(default_factory=Counter)  # by category, confirmed by the broker
    published: int = 0  # basic.publish calls, including re-sends after a lost confirm
    republished: int = 0
    reconnects: int = 0
    expected_apply: set[str] = field(default_factory=set)  # message ids the hub applies (inbox)
    expected_dead: dict[str, str] = field(default_factory=dict)  # message id -> reason
    cases: dict[str, ExpectedCase] = field(default_factory=dict)
    events_received: Counter[str] = field(default_factory=Counter)  # hub events by type (distinct ids)
    event_message_ids: set[str] = field(default_factory=set)
    event_deliveries: int = 0
    started_at: float = 0.0
    finished_at: float = 0.0

    @property
    def expected_cases(self) -> int:
        return len(self.cases)

    @property
    def expected_events(self) -> int:
        return sum(c.seq for c in self.cases.values())

    @property
    def total_sent(self) -> int:
        return sum(self.sent.values())

    @property
    def publish_rate(self) -> float:
        elapsed = self.finished_at - self.started_at
        return self.total_sent / elapsed if elapsed > 0 else 0.0

    def dead_by_reason(self) -> Counter[str]:
        return Counter(self.expected_dead.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "partner": self.partner, "region": self.region, "run_id": self.run_id,
            "external_id_prefix": self.external_id_prefix, "sent": dict(self.sent), "total_sent": self.total_sent,
            "published": self.published, "republished": self.republished, "reconnects": self.reconnects,
            "publish_rate_per_s": round(self.publish_rate, 1),
            "expected": {"applied_messages": len(self.expected_apply), "dead_letters": len(self.expected_dead),
                         "dead_by_reason": dict(self.dead_by_reason()), "cases": self.expected_cases,
                         "case_events": self.expected_events},
            "hub_events": {"distinct": len(self.event_message_ids), "deliveries": self.event_deliveries,
                           "by_type": dict(self.events_received)},
        }

    def summary(self) -> str:
        d = self.to_dict()
        lines = [f"city platform {self.partner} ({self.region}), run {self.run_id}: {self.total_sent} messages "
                 f"confirmed in {self.finished_at - self.started_at:.1f} s ({d['publish_rate_per_s']}/s), "
                 f"{self.republished} re-sent after {self.reconnects} reconnect(s)",
                 "  sent:      " + ", ".join(f"{k}={v}" for k, v in sorted(self.sent.items())),
                 f"  expected:  {self.expected_cases} cases, {self.expected_events} case events, "
                 f"{len(self.expected_apply)} messages applied, {len(self.expected_dead)} dead letters "
                 f"({', '.join(f'{k}={v}' for k, v in sorted(self.dead_by_reason().items())) or 'none'})",
                 f"  hub events: {len(self.event_message_ids)} distinct in {self.event_deliveries} deliveries "
                 f"({', '.join(f'{k}={v}' for k, v in sorted(self.events_received.items())) or 'none'})"]
        return "\n".join(lines)


# --- planning ----------------------------------------------------------------------------------


class Planner:
    """Builds the run's messages, deterministic for a seed."""

    def __init__(self, city: City, items: Sequence[CatalogueItem], *, partner: str, rng: random.Random,
                 run_id: str, now: datetime, unknown_item_codes: Sequence[str] = ()) -> None:
        self.city = city
        self.items = list(items)
        self.partner = partner
        self.rng = rng
        self.run_id = run_id
        self.now = now
        self.unknown_item_codes = list(unknown_item_codes)
        self.prefix = f"{city.prefix}-{run_id}"
        self.cases: dict[str, _Case] = {}
        self._serial = 0

    def plan(self, count: int, faults: Mapping[str, int]) -> list[Planned]:
        unknown = set(faults) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kind(s): {', '.join(sorted(unknown))}; known: {', '.join(FAULT_KINDS)}")
        if any(n < 0 for n in faults.values()):
            raise ValueError("fault counts must not be negative")
        pairs = faults.get("out_of_order", 0)
        duplicates = faults.get("duplicate", 0)
        poison = sum(n for k, n in faults.items() if k in FAULT_REASONS)
        valid = count - poison - duplicates
        if valid < 1 + 2 * pairs or (duplicates and valid < 1):
            raise ValueError(f"count {count} leaves too few valid messages for the faults asked for")
        stream = self._valid_stream(valid, pairs)
        for _ in range(duplicates):
            source = self.rng.randrange(len(stream))
            original = stream[source]
            stream.insert(self.rng.randint(source + 1, len(stream)),
                          Planned("duplicate", original.message_id, original.record_type, original.body, APPLY,
                                  external_id=original.external_id))
        for kind in FAULT_REASONS:
            for _ in range(faults.get(kind, 0)):
                stream.insert(self.rng.randint(0, len(stream)), self._poison(kind))
        assert len(stream) == count
        return stream

    def expected_cases(self) -> dict[str, ExpectedCase]:
        return {c.external_id: ExpectedCase(c.external_id, c.item.code, c.item.region, len(c.steps), c.state or "",
                                            c.version)
                for c in self.cases.values()}

    # valid messages

    def _valid_stream(self, valid: int, pairs: int) -> list[Planned]:
        """``valid`` messages: new cases, record updates and events, with up to ``pairs`` swapped event pairs
        (spread over the run; the report counts the ones actually sent)."""
        stream: list[Planned] = []
        open_cases: list[_Case] = []
        while len(stream) < valid:
            left = valid - len(stream)
            if pairs and left >= 2 and self.rng.random() < min(1.0, 6 * pairs / left):
                candidates = [c for c in open_cases[-50:] if c.remaining >= 2]
                if candidates:
                    case = self.rng.choice(candidates)
                    first, second = self._event(case), self._event(case)
                    second.category = "out_of_order"
                    stream.extend([second, first])  # step n+2 before step n+1
                    pairs -= 1
                    self._retire(case, open_cases)
                    continue
            if not open_cases or self.rng.random() < 0.3:
                case = self._new_case()
                stream.append(self._record(case, steps=self.rng.choice((1, 1, 2, 3)), category="new_case"))
                open_cases.append(case)
            else:
                case = self.rng.choice(open_cases[-200:])
                if self.rng.random() < 0.5:
                    stream.append(self._event(case))
                else:
                    stream.append(self._record(case, steps=self.rng.choice((1, 1, 2)), category="record_update"))
            self._retire(case, open_cases)
        return stream

    def _retire(self, case: _Case, open_cases: list[_Case]) -> None:
        if case.remaining == 0:
            open_cases.remove(case)

    def _new_case(self) -> _Case:
        self._serial += 1
        item = self.rng.choice(self.items)
        external_id = f"{self.prefix}-{self._serial:06d}"
        # Window hours, China time, on one of the last 30 days.
        day = (self.now.astimezone(CHINA) - timedelta(days=self.rng.randint(1, 30))).date()
        submitted = datetime(day.year, day.month, day.day, 8, 30, tzinfo=CHINA) + timedelta(
            minutes=self.rng.randint(0, 8 * 60))
        _, path = self.rng.choices(PATHS, weights=[w for w, _ in PATHS])[0]
        window = f"{self.city.name}政务服务中心{self.rng.choice(WINDOWS)}{self.rng.randint(1, 30):02d}号"
        clerks = (self._person_name(), self._person_name())
        year = submitted.year
        case = _Case(external_id, item, self._applicant(item), submitted, path, window[:64], clerks,
                     certificate=f"{self.city.name[:2]}审批许字〔{year}〕第{self.rng.randint(1, 99999):05d}号",
                     satisfaction=self.rng.choice((3, 4, 5, 5, 5)))
        self.cases[external_id] = case
        return case

    def _person_name(self) -> str:
        return self.rng.choice(SURNAMES) + self.rng.choice(GIVEN)

    def _applicant(self, item: CatalogueItem) -> dict[str, Any]:
        kind = self.rng.choice(item.applicant_types or ("1",))
        district = self.rng.choice(self.city.districts)
        if kind == "1":
            return {"type": "1", "name": self._person_name(), "id_type": "citizen_id",
                    "id_number": citizen_id(self.rng, district), "phone": f"13{self.rng.randint(0, 999999999):09d}"}
        if kind == "2":
            name = (f"{self.city.name[:2]}{self.rng.choice(COMPANY_WORDS)}{self.rng.choice(COMPANY_TRADES)}"
                    f"{self.rng.choice(COMPANY_FORMS)}")
            category = "91"
        elif kind == "3":
            name, category = f"{self.city.name}{self.rng.choice(INSTITUTIONS)}", "12"
        elif kind == "6":
            name, category = f"{self.city.name}{self.rng.choice(('自然资源局', '教育局', '卫生健康委员会'))}", "11"
        else:
            name, category = f"{self.city.name}{self.rng.choice(ORGANISATIONS)}", "51"
        return {"type": kind, "name": name, "id_type": "credit_code",
                "id_number": credit_code(self.rng, district, category),
                "phone": f"024{self.rng.randint(20000000, 89999999)}"}

    def _record(self, case: _Case, *, steps: int, category: str) -> Planned:
        for _ in range(max(1, min(steps, case.remaining))):
            case.add_step(self.rng, self.now)
        record = case.record()
        return self._planned(category, "case-record", record, case.item.region, case.external_id, case.window)

    def _event(self, case: _Case) -> Planned:
        step = case.add_step(self.rng, self.now)
        payload = {"external_id": case.external_id, "step": dict(step)}
        return self._planned("event", "case-event", payload, case.item.region, case.external_id, case.window)

    def _planned(self, category: str, record_type: str, payload: dict[str, Any], region: str, external_id: str,
                 window: str, *, expect: str = APPLY, reason: str | None = None) -> Planned:
        envelope = self.envelope(record_type, payload, region, external_id, window)
        return Planned(category, envelope["message_id"], record_type, _dumps(envelope), expect, reason, external_id)

    def envelope(self, record_type: str, payload: dict[str, Any], region: str, external_id: str,
                 on_behalf_of: str = "") -> dict[str, Any]:
        envelope = {
            "message_id": str(uuid.uuid4()), "type": record_type,
            "version": 1, "source": self.partner, "region": region,
            "occurred_at": self.now.astimezone(CHINA).isoformat(timespec="seconds"),
            "correlation_id": external_id,
            "service": "exchange.records" if record_type == "case-record" else "exchange.events",
            "case_ref": external_id, "payload": payload,
        }
        if on_behalf_of:
            envelope["on_behalf_of"] = on_behalf_of[:64]
        return envelope

    # faulty messages: each a case of its own that no later message refers to

    def _poison(self, kind: str) -> Planned:
        self._serial += 1
        external_id = f"{self.prefix}-{self._serial:06d}"
        item = self.rng.choice(self.items)
        case = _Case(external_id, item, self._applicant(item), (self.now - timedelta(days=1)).replace(microsecond=0),
                     PATHS[0][1], "窗口", ("王科员", "李科员"))
        for _ in range(self.rng.randint(1, 3)):
            case.add_step(self.rng, self.now)
        record = case.record()
        record_type, region = "case-record", item.region
        variant = ""
        if kind == "schema":
            variant = self.rng.choice(("action", "missing_applicant", "version_zero", "external_id", "envelope",
                                       "event_seq", "seq_gap", "item_code"))
            if variant == "action":
                record["steps"][-1]["action"] = "teleport"
            elif variant == "missing_applicant":
                del record["applicant"]
            elif variant == "version_zero":
                record["record_version"] = 0
            elif variant == "external_id":
                record["external_id"] = f"{self.city.prefix}_{self._serial}/x"
            elif variant == "item_code":
                record["item_code"] = record["item_code"][:-1]
            elif variant == "seq_gap":
                del record["steps"][0]  # the steps no longer start at 1
            elif variant == "event_seq":
                record_type = "case-event"
                record = {"external_id": external_id, "step": {**record["steps"][0], "seq": 0}}
        elif kind == "wrong_region":
            other = self.rng.choice([c for c in CITIES.values() if c.region[:4] != self.city.region[:4]])
            variant = self.rng.choice(("payload", "envelope"))
            if variant == "payload":
                record["region"] = other.region
            else:
                region = other.region
        elif kind == "unknown_item":
            record["item_code"] = self._unknown_item_code()
            if record["item_code"][:4] == self.city.region[:4]:
                # The record is otherwise right: once the item is in the catalogue, a replay applies it.
                record["region"] = region = record["item_code"][:6]
        elif kind == "identifier":
            number = record["applicant"]["id_number"]
            wrong = next(ch for ch in "0123456789X" if ch != number[-1])
            record["applicant"]["id_number"] = number[:-1] + wrong
            if record["applicant"]["id_type"] == "credit_code":
                wrong = next(ch for ch in "0123456789" if ch != number[-1])
                record["applicant"]["id_number"] = number[:-1] + wrong
        envelope = self.envelope(record_type, record, region, external_id, case.window)
        if kind == "schema" and variant == "envelope":
            del envelope["occurred_at"]
        body = _dumps(envelope)
        if kind == "bad_json":
            variant = self.rng.choice(("truncated", "gbk", "xml"))
            if variant == "truncated":
                body = body[: self.rng.randint(10, len(body) - 10)]
            else:
                body = f"<record><id>{external_id}</id></record>".encode()
            if variant == "gbk":
                try:
                    body = json.dumps(envelope, ensure_ascii=False).encode("gbk")
                except UnicodeEncodeError:
                    body = body[:-1]
        return Planned(kind, envelope["message_id"], record_type, body, DEAD, FAULT_REASONS[kind], external_id)

    def _unknown_item_code(self) -> str:
        if self.unknown_item_codes:
            return self.rng.choice(self.unknown_item_codes)
        known = {i.code for i in self.items}
        while True:
            code = item_code(self.rng.choice([self.city.region, *self.city.districts]),
                             f"{self.rng.randint(900, 999)}", "01", f"{self.rng.randint(900, 999)}")
            if code not in known:
                return code


def _dumps(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# --- the wire ----------------------------------------------------------------------------------


def partner_url(amqp_url: str, partner: str, secret: str | None = None) -> str:
    """``amqp_url`` with the partner's credentials when it names no user."""
    parts = urlsplit(amqp_url)
    if parts.username:
        return amqp_url
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(partner, safe='')}:{quote(secret or DEFAULT_SECRET, safe='')}@{host}:{parts.port or 5672}"
    return urlunsplit(parts._replace(netloc=netloc))


class PartnerPublisher:
    """Publishes as the partner: persistent, mandatory, confirmed, ``user_id`` = the AMQP user. Survives broker
    restarts by reconnecting with backoff and publishing the unconfirmed message again (same message_id)."""

    def __init__(self, amqp_url: str, *, app_id: str = "city-platform", heartbeat: int = 15,
                 reconnect_timeout_s: float = 300.0) -> None:
        self.url = amqp_url
        self.user = unquote(urlsplit(amqp_url).username or "guest")
        self.app_id = app_id
        self.heartbeat = heartbeat
        self.reconnect_timeout_s = reconnect_timeout_s
        self.published = 0
        self.republished = 0
        self.reconnects = 0
        self._connection: pika.BlockingConnection | None = None
        self._channel: Any = None

    def __enter__(self) -> PartnerPublisher:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            with suppress(pika.exceptions.AMQPError):
                connection.close()

    def _open(self) -> Any:
        if self._channel is not None and self._channel.is_open:
            return self._channel
        if self._connection is None or not self._connection.is_open:
            params = pika.URLParameters(self.url)
            params.heartbeat = self.heartbeat
            params.blocked_connection_timeout = 60
            params.socket_timeout = 5
            params.client_properties = {"connection_name": self.app_id}
            self._connection = pika.BlockingConnection(params)
        self._channel = self._connection.channel()
        self._channel.confirm_delivery()
        return self._channel

    def publish(self, routing_key: str, body: bytes, *, message_id: str, type_: str,
                correlation_id: str | None = None, user_id: str | None = None,
                exchange: str = INBOUND_EXCHANGE, headers: Mapping[str, Any] | None = None) -> None:
        properties = pika.BasicProperties(
            content_type="application/json", delivery_mode=2, message_id=message_id, type=type_,
            user_id=user_id or self.user, app_id=self.app_id, correlation_id=correlation_id,
            timestamp=int(time.time()), headers=dict(headers) if headers else None)
        deadline = time.monotonic() + self.reconnect_timeout_s
        failures = 0
        while True:
            try:
                channel = self._open()
                self.published += 1
                if failures:
                    self.republished += 1
                channel.basic_publish(exchange, routing_key, body, properties, mandatory=True)
                return
            except pika.exceptions.UnroutableError:
                raise SimulatorError(f"{exchange} routed {routing_key} to no queue: is the hub's topology "
                                     "declared (hub worker)?") from None
            except pika.exceptions.ChannelClosedByBroker as exc:
                self._channel = None
                if exc.reply_code in (403, 404, 406):
                    raise BrokerRefused(exc.reply_code, exc.reply_text) from None
                reason = f"channel closed: {exc.reply_code}"
            except pika.exceptions.ProbableAuthenticationError:
                raise SimulatorError(f"login refused for {self.user}: run `hub partners sync`") from None
            except pika.exceptions.NackError:
                reason = "nacked"  # broker could not take it now (e.g. quorum unavailable): try again
            except (pika.exceptions.AMQPError, OSError) as exc:
                reason = type(exc).__name__
                self.close()
            failures += 1
            if time.monotonic() > deadline:
                raise SimulatorError(f"gave up publishing after {self.reconnect_timeout_s:g} s ({reason})")
            if failures == 1:
                self.reconnects += 1
                log.warning("publish of %s failed (%s); reconnecting", message_id, reason)
            time.sleep(min(2.0, 0.05 * 2 ** min(failures, 6)) * random.uniform(0.5, 1.0))


class EventListener:
    """Reads the hub's events from the partner's own queue, bound to hub.events; reconnects on its own."""

    def __init__(self, amqp_url: str, queue: str, report: SimulationReport, *,
                 binding_keys: Sequence[str] = ("case.#", "catalog.#"), heartbeat: int = 15) -> None:
        self.url = amqp_url
        self.queue = queue
        self.report = report
        self.binding_keys = tuple(binding_keys)
        self.heartbeat = heartbeat
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"city-events-{queue}", daemon=True)
        self.error: BaseException | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        self._thread.start()
        if not self.ready.wait(timeout_s):
            raise SimulatorError(f"could not bind {self.queue} to {EVENTS_EXCHANGE}: {self.error!r}")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            connection = None
            try:
                params = pika.URLParameters(self.url)
                params.heartbeat = self.heartbeat
                params.client_properties = {"connection_name": f"{self.queue}-listener"}
                connection = pika.BlockingConnection(params)
                channel = connection.channel()
                channel.queue_declare(self.queue, durable=True, arguments={"x-queue-type": "quorum"})
                for key in self.binding_keys:
                    channel.queue_bind(self.queue, EVENTS_EXCHANGE, routing_key=key)
                channel.basic_qos(prefetch_count=500)
                channel.basic_consume(self.queue, self._on_event)
                self.ready.set()
                failures = 0
                while not self._stop.is_set():
                    connection.process_data_events(time_limit=0.2)
            except (pika.exceptions.AMQPError, OSError) as exc:
                self.error = exc
                failures += 1
                if isinstance(exc, pika.exceptions.ChannelClosedByBroker) and exc.reply_code == 403:
                    log.error("the broker refused %s: %s", self.queue, exc.reply_text)
                self._stop.wait(min(2.0, 0.05 * 2 ** min(failures, 6)))
            finally:
                if connection is not None and connection.is_open:
                    with suppress(pika.exceptions.AMQPError):
                        connection.close()

    def _on_event(self, channel: Any, method: Any, properties: pika.BasicProperties, body: bytes) -> None:
        message_id = properties.message_id or ""
        with self._lock:
            self.report.event_deliveries += 1
            if message_id not in self.report.event_message_ids:
                self.report.event_message_ids.add(message_id)
                self.report.events_received[properties.type or method.routing_key] += 1
        channel.basic_ack(method.delivery_tag)


# --- the platform ------------------------------------------------------------------------------


class CityPlatform:
    """One city platform: plans a run, publishes it, and listens to the hub's events."""

    def __init__(self, amqp_url: str, partner: str, *, seed: int | None = None, region: str | None = None,
                 items: Iterable[str | CatalogueItem] | None = None, catalogue_url: str | None = None,
                 secret: str | None = None, run_id: str | None = None, events_queue: str | None = None,
                 unknown_item_codes: Sequence[str] = (), now: datetime | None = None,
                 reconnect_timeout_s: float = 300.0) -> None:
        known = CITIES.get(partner)
        if known is None and region is None:
            raise SimulatorError(f"unknown city {partner!r}: give its region")
        if known is None or (region and region != known.region):
            assert region is not None
            known = City(partner, region, known.name if known else partner, known.prefix if known else "CP",
                         (region,))
        self.city = known
        self.partner = partner
        self.url = partner_url(amqp_url, partner, secret or os.environ.get("CITY_PLATFORM_SECRET"))
        self.rng = random.Random(seed)
        self.run_id = run_id or uuid.uuid4().hex[:8]
        self.items = items_for(self.city, items, catalogue_url)
        self.events_queue = events_queue or f"partner.{partner}.events"
        self.now = now or datetime.now(UTC)
        self.planner = Planner(self.city, self.items, partner=partner, rng=self.rng, run_id=self.run_id, now=self.now,
                               unknown_item_codes=unknown_item_codes)
        self.report = SimulationReport(partner, self.city.region, self.run_id, self.planner.prefix)
        self.reconnect_timeout_s = reconnect_timeout_s
        self._listener: EventListener | None = None

    def plan(self, count: int, faults: Mapping[str, int] | None = None) -> list[Planned]:
        planned = self.planner.plan(count, dict(faults or {}))
        for message in planned:
            if message.expect == APPLY:
                self.report.expected_apply.add(message.message_id)
            else:
                self.report.expected_dead[message.message_id] = message.reason or "rejected"
        self.report.cases = self.planner.expected_cases()
        return planned

    def publish(self, planned: Sequence[Planned], *, on_progress: Callable[[int], None] | None = None) -> None:
        report = self.report
        report.started_at = time.monotonic()
        with PartnerPublisher(self.url, app_id=f"city-platform-{self.partner}",
                              reconnect_timeout_s=self.reconnect_timeout_s) as publisher:
            try:
                for message in planned:
                    publisher.publish(f"{self.partner}.{message.type}", message.body, message_id=message.message_id,
                                      type_=message.type, correlation_id=message.external_id)
                    report.sent[message.category] += 1
                    if on_progress is not None:
                        on_progress(report.total_sent)
            finally:
                report.published += publisher.published
                report.republished += publisher.republished
                report.reconnects += publisher.reconnects
                report.finished_at = time.monotonic()

    def start_events(self) -> None:
        if self._listener is None:
            self._listener = EventListener(self.url, self.events_queue, self.report)
            self._listener.start()

    def stop_events(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None

    @contextmanager
    def listening(self) -> Iterator[CityPlatform]:
        self.start_events()
        try:
            yield self
        finally:
            self.stop_events()

    def wait_for_events(self, *, idle_s: float, timeout_s: float) -> None:
        """Until no new hub event arrived for ``idle_s`` (or ``timeout_s`` passed)."""
        deadline = time.monotonic() + timeout_s
        last, quiet_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            seen = self.report.event_deliveries
            if seen != last:
                last, quiet_since = seen, time.monotonic()
            elif time.monotonic() - quiet_since >= idle_s:
                return
            time.sleep(0.1)


def run(amqp_url: str, partner: str, count: int, faults: Mapping[str, int] | None = None, seed: int | None = None,
        *, region: str | None = None, items: Iterable[str | CatalogueItem] | None = None,
        catalogue_url: str | None = None, secret: str | None = None, consume_events: bool = True,
        events_idle_s: float = 2.0, events_timeout_s: float = 30.0,
        on_progress: Callable[[int], None] | None = None) -> SimulationReport:
    """Plan ``count`` messages (``faults`` of them faulty, by kind), publish them, and — with
    ``consume_events`` — count the hub's events until none arrived for ``events_idle_s``."""
    platform = CityPlatform(amqp_url, partner, seed=seed, region=region, items=items, catalogue_url=catalogue_url,
                            secret=secret)
    planned = platform.plan(count, faults)
    if not consume_events:
        platform.publish(planned, on_progress=on_progress)
        return platform.report
    with platform.listening():
        platform.publish(planned, on_progress=on_progress)
        platform.wait_for_events(idle_s=events_idle_s, timeout_s=events_timeout_s)
    return platform.report


# --- CLI ---------------------------------------------------------------------------------------


def parse_faults(values: Sequence[str]) -> dict[str, int]:
    faults: dict[str, int] = {}
    for value in values:
        for part in value.split(","):
            kind, sep, number = part.partition("=")
            if not sep or kind.strip() not in FAULT_KINDS or not number.strip().isdigit():
                raise argparse.ArgumentTypeError(f"--fault takes KIND=N with KIND one of {', '.join(FAULT_KINDS)}")
            faults[kind.strip()] = faults.get(kind.strip(), 0) + int(number)
    return faults


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="city-platform", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partner", default=os.environ.get("CITY_PLATFORM_PARTNER", "shenyang"),
                        help=f"city code ({', '.join(CITIES)})")
    parser.add_argument("--amqp-url", default=os.environ.get("CITY_PLATFORM_AMQP_URL", "amqp://127.0.0.1:5672/%2F"),
                        help="broker and vhost; without a user the partner's code and --secret are used")
    parser.add_argument("--secret", default=os.environ.get("CITY_PLATFORM_SECRET", DEFAULT_SECRET))
    parser.add_argument("--region", help="the partner's region (default: the city's)")
    parser.add_argument("--count", type=int, default=100, help="messages to publish, faulty ones included")
    parser.add_argument("--fault", action="append", default=[], metavar="KIND=N",
                        help="faulty messages to mix in (repeatable, or comma-separated); "
                             f"KIND: {', '.join(FAULT_KINDS)}")
    parser.add_argument("--seed", type=int, help="makes the run reproducible")
    parser.add_argument("--item", action="append", default=[], metavar="CODE", help="item code to report cases of")
    parser.add_argument("--catalogue-url", help="the hub's base URL, to read item codes from /api/v1/items")
    parser.add_argument("--no-events", action="store_true", help="do not consume the hub's events")
    parser.add_argument("--events-idle", type=float, default=2.0,
                        help="stop listening once no event came for this many seconds")
    parser.add_argument("--json", dest="json_path", help="also write the report (and expectations) to this file")
    parser.add_argument("--list-expected", action="store_true",
                        help="with --json: include every message id to be applied / dead-lettered")
    parser.add_argument("-v", "--verbose", action="store_true", help="log reconnects and pika's own messages")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("pika").setLevel(logging.CRITICAL)  # its connection errors are reported below
    try:
        faults = parse_faults(args.fault)
        report = run(args.amqp_url, args.partner, args.count, faults, args.seed, region=args.region,
                     items=args.item or None, catalogue_url=args.catalogue_url, secret=args.secret,
                     consume_events=not args.no_events, events_idle_s=args.events_idle)
    except (SimulatorError, ValueError, argparse.ArgumentTypeError, OSError) as exc:
        print(f"city-platform: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    if args.json_path:
        document = report.to_dict()
        if args.list_expected:
            document["expected_apply"] = sorted(report.expected_apply)
            document["expected_dead"] = report.expected_dead
            document["cases"] = {k: vars(v) for k, v in report.cases.items()}
        with open(args.json_path, "w", encoding="utf-8") as handle:
            json.dump(document, handle, ensure_ascii=False, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
