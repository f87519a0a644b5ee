"""Planning a run: realistic cases and their steps, with the faulty messages asked for mixed in."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from mocks.city_data import (
    CITIES,
    COMPANY_FORMS,
    COMPANY_TRADES,
    COMPANY_WORDS,
    GIVEN,
    INSTITUTIONS,
    ORGANISATIONS,
    SURNAMES,
    WINDOWS,
    CatalogueItem,
    City,
    item_code,
)
from mocks.city_platform.cases import ExpectedCase, Planned, SimulatedCase
from mocks.city_platform.identifiers import citizen_id, credit_code
from mocks.city_platform.spec import APPLY, CHINA, DEAD, FAULT_KINDS, FAULT_REASONS, PATHS


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
        self.cases: dict[str, SimulatedCase] = {}
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
        open_cases: list[SimulatedCase] = []
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

    def _retire(self, case: SimulatedCase, open_cases: list[SimulatedCase]) -> None:
        if case.remaining == 0:
            open_cases.remove(case)

    def _new_case(self) -> SimulatedCase:
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
        case = SimulatedCase(external_id, item, self._applicant(item), submitted, path, window[:64], clerks,
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

    def _record(self, case: SimulatedCase, *, steps: int, category: str) -> Planned:
        for _ in range(max(1, min(steps, case.remaining))):
            case.add_step(self.rng, self.now)
        record = case.record()
        return self._planned(category, "case-record", record, case.item.region, case.external_id, case.window)

    def _event(self, case: SimulatedCase) -> Planned:
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
        case = SimulatedCase(external_id, item, self._applicant(item),
                             (self.now - timedelta(days=1)).replace(microsecond=0), PATHS[0][1], "窗口",
                             ("王科员", "李科员"))
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
