"""Case events are append-only and chained with a keyed MAC; verification says which case and event broke.

Each event's MAC (HMAC-SHA256 with ``Settings.audit_key``, which is never stored in the database) covers
the event, the previous event's MAC and the case row's decisive fields as they stand after the event
(`case_row`). The newest event must therefore match the current case row: a row edited in the database
(a case set to ``granted``) no longer matches the seal, and without the key nobody can make a new one.

This module holds the sealing maths (`case_row`, `event_mac`) and the verification; events are built,
sealed and appended in one place only, hub/cases/writes.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.cases.models import Case, CaseEvent
from hub.db import loaded_values

ALGORITHM = "hmac-sha256"


@dataclass(frozen=True)
class Finding:
    tracking_no: str
    seq: int | None
    problem: str
    detail: str


# --- sealing -------------------------------------------------------------------------------


def case_row(case: Case, *, key: str) -> dict[str, Any]:
    """The case row's decisive fields, as the chain commits to them (personal data only as a keyed digest)."""
    row = loaded_values(case, _CASE_ROW_ATTRIBUTES)
    return {
        "state": row["state"],
        "result": row["result"],
        "item_id": row["item_id"],
        "region": row["region_code"],
        "department_id": row["department_id"],
        "parent_id": row["parent_id"],
        "origin": row["origin"],
        "origin_partner": row["origin_partner"],
        "external_id": row["external_id"],
        "applicant": applicant_digest(case, key=key),
        "submitted_at": _instant(row["submitted_at"]),
        "intake_deadline": _day(row["intake_deadline"]),
        "accepted_on": _day(row["accepted_on"]),
        "promised_limit_days": row["promised_limit_days"],
        "statutory_limit_days": row["statutory_limit_days"],
        "deadline": _day(row["deadline"]),
        "statutory_deadline": _day(row["statutory_deadline"]),
        "step_deadlines": dict(row["step_deadlines"] or {}),
        "suspended_since": _day(row["suspended_since"]),
        "suspended_working_days": row["suspended_working_days"],
        "decided_at": _instant(row["decided_at"]),
        "completed_at": _instant(row["completed_at"]),
    }


_CASE_ROW_ATTRIBUTES = frozenset({
    "state", "result", "item_id", "region_code", "department_id", "parent_id", "origin", "origin_partner",
    "external_id", "submitted_at", "intake_deadline", "accepted_on", "promised_limit_days", "statutory_limit_days",
    "deadline", "statutory_deadline", "step_deadlines", "suspended_since", "suspended_working_days", "decided_at",
    "completed_at",
})


def applicant_digest(case: Case, *, key: str) -> str:
    # Keyed, so the events hold no second copy of the identity, not even a guessable hash of it.
    values = loaded_values(case, _APPLICANT_ATTRIBUTES)
    who = (values["applicant_type"], values["applicant_id_type"], values["applicant_id_number"],
           values["applicant_name"])
    # Every event of a case seals its row, this digest with it: kept on the instance while the identity and the
    # key are the ones it was made of (a partner record seals several events of one case).
    memo = case.__dict__.get(_DIGEST_MEMO)
    if memo is not None and memo[0] == who and memo[1] == key:
        return str(memo[2])
    digest = _mac(key, _canonical(list(who)))
    case.__dict__[_DIGEST_MEMO] = (who, key, digest)
    return digest


_DIGEST_MEMO = "_hub_applicant_digest"
_APPLICANT_ATTRIBUTES = frozenset({"applicant_type", "applicant_id_type", "applicant_id_number", "applicant_name"})


def event_mac(tracking_no: str, event: CaseEvent, *, key: str) -> str:
    return _mac(key, _canonical(_event_body(tracking_no, event, row=True)))


def plain_digest(tracking_no: str, event: CaseEvent) -> str:
    """The unkeyed SHA-256 of releases before 0007 — accepted by nothing, only used to name what it is."""
    return hashlib.sha256(_canonical(_event_body(tracking_no, event, row=False))).hexdigest()


def _event_body(tracking_no: str, event: CaseEvent, *, row: bool) -> dict[str, Any]:
    values = loaded_values(event, _EVENT_ATTRIBUTES)
    body = {
        "case": tracking_no,
        "seq": values["seq"],
        "action": values["action"],
        "step": values["step"],
        "from": values["from_state"],
        "to": values["to_state"],
        "actor": [values["actor_type"], values["actor_id"], values["actor_name"]],
        "department_id": values["department_id"],
        "opinion": values["opinion"],
        "at": _instant(values["occurred_at"]),
        "data": values["data"],
        "prev": values["prev_hash"],
    }
    if row:
        body["row"] = values["case_row"]
    return body


_EVENT_ATTRIBUTES = frozenset({
    "seq", "action", "step", "from_state", "to_state", "actor_type", "actor_id", "actor_name", "department_id",
    "opinion", "occurred_at", "data", "prev_hash", "case_row",
})


def _mac(key: str, message: bytes) -> str:
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


# The canonical form every seal commits to: the standard library's encoder with these options. Built once:
# ``json.dumps`` with any option builds a new encoder on every call (two calls per event sealed).
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))
# orjson writes the same bytes for the documents `_orjson_safe` admits, ≈13× faster (the standard library's
# encoder was ≈6.5 % of a partner record's instructions). What it would write differently or take where the
# standard library refuses — datetimes, dataclasses, subclasses of str/int/dict/list (passed through, so it
# raises), floats (``1e-05`` against ``0.00001``, ``NaN`` against ``null``), UUIDs, enums, keys that are not
# strings (refused by the check) — is left to the standard library, which decides as before.
_ORJSON_OPTIONS = (orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
                   | orjson.OPT_PASSTHROUGH_SUBCLASS)


def _canonical(value: Any) -> bytes:
    try:
        if _orjson_safe(value):
            return orjson.dumps(value, option=_ORJSON_OPTIONS)
    except (TypeError, RecursionError):
        pass  # integers past 64 bits, nesting past orjson's depth: the standard library decides
    return _CANONICAL.encode(value).encode()


def _orjson_safe(value: Any) -> bool:
    """Whether ``value`` is made of strings, integers, booleans, None, lists, tuples and dicts with string keys
    only (exact types): the documents orjson writes byte for byte as `_CANONICAL` does. Loops, not ``all()`` over
    a generator: ≈1.6× slower, and this walks every sealed document."""
    kind = type(value)
    if kind is str or kind is int or value is None or kind is bool:
        return True
    if kind is dict:
        for key, item in value.items():  # noqa: SIM110
            if type(key) is not str or not _orjson_safe(item):
                return False
        return True
    if kind is list or kind is tuple:
        for item in value:  # noqa: SIM110
            if not _orjson_safe(item):
                return False
        return True
    return False


def _instant(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="microseconds") if value is not None else None


def _day(value: date | None) -> str | None:
    return value.isoformat() if value is not None else None


# --- verification --------------------------------------------------------------------------


def verify(session: Session, *, key: str, tracking_no: str | None = None) -> tuple[int, list[Finding]]:
    """Walk every case's chain; return how many events were checked and what is wrong."""
    query = select(Case).order_by(Case.id)
    if tracking_no:
        query = query.where(Case.tracking_no == tracking_no)
    findings: list[Finding] = []
    checked = 0
    for case in session.scalars(query).unique():
        events = list(session.scalars(
            select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.seq)
        ).unique())
        checked += len(events)
        findings.extend(verify_chain(case, events, key=key))
    return checked, findings


def verify_chain(case: Case, events: Sequence[CaseEvent], *, key: str) -> list[Finding]:
    number = case.tracking_no
    findings: list[Finding] = []
    previous: CaseEvent | None = None
    expected_seq = 1
    keyed_seen = False
    for event in events:
        if event.seq != expected_seq:
            missing = ", ".join(str(s) for s in range(expected_seq, event.seq))
            findings.append(Finding(number, expected_seq, "deleted", f"事件 {missing} 缺失 (deleted)"))
        elif event.prev_hash != (previous.hash if previous else None):
            findings.append(Finding(number, event.seq, "chain_broken", "前序哈希不一致 (chain broken)"))
        problems = _check_event(number, event, previous, key)
        if keyed_seen and any(p.problem == "unkeyed" for p in problems):
            # Old unkeyed events can only precede the keyed ones: this one was recomputed without the key.
            problems = [Finding(number, event.seq, "unkeyed", "哈希为不带密钥的 SHA-256，且位于密钥事件之后："
                                "被无密钥重算 (plain hash after keyed events: recomputed without the key)")]
        keyed_seen = keyed_seen or event.case_row is not None
        findings.extend(problems)
        previous = event
        expected_seq = event.seq + 1
    findings.extend(_check_head(case, events, key))
    return findings


def _check_event(number: str, event: CaseEvent, previous: CaseEvent | None, key: str) -> list[Finding]:
    if not hmac.compare_digest(event_mac(number, event, key=key), event.hash):
        if event.hash == plain_digest(number, event):
            return [Finding(number, event.seq, "unkeyed",
                            "哈希为不带密钥的 SHA-256：被无密钥重算，或为 0007 之前的数据尚未 reseal "
                            "(plain hash: recomputed without the key, or written before 0007 and not resealed)")]
        return [Finding(number, event.seq, "edited", "事件内容与密钥哈希不符 (edited)")]
    sealed_before = previous.case_row if previous is not None else None
    if event.from_state is not None and sealed_before and event.from_state != sealed_before.get("state"):
        # The row was changed between two events, and the second one sealed the changed row.
        return [Finding(number, event.seq, "row_changed_between_events",
                        f"事件起始状态 {event.from_state} 与上一事件封存的状态 {sealed_before.get('state')} 不符")]
    return []


def _check_head(case: Case, events: Sequence[CaseEvent], key: str) -> list[Finding]:
    number, count = case.tracking_no, case.event_count
    if count > len(events) and (not events or events[-1].seq < count):
        last = events[-1].seq if events else 0
        return [Finding(number, last + 1, "deleted", f"末尾事件 {last + 1}..{count} 缺失 (deleted)")]
    if not events:
        return []
    head = events[-1]
    if case.last_event_hash != head.hash:
        return [Finding(number, head.seq, "head_mismatch", "案件记录的链尾哈希不一致 (case row head differs)")]
    if head.case_row is None or not hmac.compare_digest(event_mac(number, head, key=key), head.hash):
        return []  # the seal itself does not hold (reported above): comparing the row with it says nothing
    now = case_row(case, key=key)
    changed = sorted(name for name in now.keys() | head.case_row.keys() if now.get(name) != head.case_row.get(name))
    if changed:
        # The applicant is sealed as a keyed digest: name the field, not two meaningless digests.
        detail = "; ".join(name if name == "applicant" else f"{name}: {head.case_row.get(name)} → {now.get(name)}"
                           for name in changed)
        return [Finding(number, head.seq, "case_row_edited",
                        f"案件记录与最新事件封存的不符 (case row edited): {detail}")]
    return []


# --- upgrading chains written before the key (migration 0007) --------------------------------


@dataclass(frozen=True)
class ResealReport:
    cases: int
    events: int
    refused: list[Finding]


def reseal(session: Session, *, key: str, tracking_no: str | None = None) -> ResealReport:
    """Re-seal, with the key, chains whose events carry the unkeyed SHA-256 of releases before 0007.

    Run once after the upgrade. A chain is re-sealed only when every event verifies either with the key
    or, as a prefix of the chain, under the old unkeyed digest, and the chain is complete: anything else
    is refused and reported, never laundered. It trusts the unkeyed history as it stands (nothing can
    tell a genuine old event from one recomputed without a key) — which is why it is a one-off."""
    query = select(Case).order_by(Case.id)
    if tracking_no:
        query = query.where(Case.tracking_no == tracking_no)
    cases = events_done = 0
    refused: list[Finding] = []
    for case in session.scalars(query).unique():
        events = list(session.scalars(
            select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.seq)
        ).unique())
        if not any(e.case_row is None for e in events):
            continue  # keyed from the start: nothing to upgrade
        problems = _legacy_problems(case, events, key)
        if problems:
            refused.extend(problems)
            continue
        previous: str | None = None
        for event in events:
            event.prev_hash = previous
            if event is events[-1] and event.case_row is None:
                event.case_row = case_row(case, key=key)
            event.hash = event_mac(case.tracking_no, event, key=key)
            previous = event.hash
        case.last_event_hash = previous
        cases += 1
        events_done += len(events)
    session.flush()
    return ResealReport(cases, events_done, refused)


def _legacy_problems(case: Case, events: Sequence[CaseEvent], key: str) -> list[Finding]:
    number = case.tracking_no
    if [e.seq for e in events] != list(range(1, len(events) + 1)) or case.event_count != len(events):
        return [Finding(number, None, "refused", "事件序号不连续或缺失，不予重新封存 (chain incomplete)")]
    previous: str | None = None
    keyed_seen = False
    for event in events:
        if event.prev_hash != previous:
            return [Finding(number, event.seq, "refused", "前序哈希不一致，不予重新封存 (chain broken)")]
        if hmac.compare_digest(event_mac(number, event, key=key), event.hash):
            keyed_seen = True
        elif keyed_seen or event.case_row is not None or event.hash != plain_digest(number, event):
            return [Finding(number, event.seq, "refused", "事件既非密钥哈希也非旧版哈希，不予重新封存 (edited)")]
        previous = event.hash
    if case.last_event_hash != previous:
        return [Finding(number, events[-1].seq if events else None, "refused", "链尾哈希不一致 (head mismatch)")]
    head = events[-1] if events else None
    if head is not None and head.case_row is not None and head.case_row != case_row(case, key=key):
        return [Finding(number, head.seq, "refused", "案件记录与最新事件封存的不符 (case row edited)")]
    return []
