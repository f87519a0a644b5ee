"""What makes a partner record permanently unacceptable, beyond its JSON Schema — checked without a database.

* timestamps the schema's ``date-time`` format admits but the hub cannot read (``2024-01-01t00:00:00z``,
  leap seconds) are format errors too, so nothing fails later while applying;
* steps must follow the standard flow, and a record's ``state``, ``accepted_at`` and ``result`` must follow
  from its steps (a record saying ``completed`` without a completion step is a contradiction, not news);
* the applicant's type must match the identifier, decided by the identifier's own shape and check
  characters: a natural person (type 1) cannot carry a credit code, an organisation or "other" (types 2–6,
  9) cannot carry a citizen ID number or a passport — disclosure masks by that identifier;
* every name and free text goes through ``hub.text`` (blank, invisible-only and control characters are
  refused) and the record carries the normalised values from here on.

Each failure is a ``RecordRejected`` naming the field (dotted path) and the rule it broke.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from hub.clock import business_date
from hub.supervision.rules.replay import way_to
from hub.text import TextRuleViolation, normalize_name, normalize_text
from workflow import identifiers as ids
from workflow.clock import SPECIAL_PROCEDURES
from workflow.definition import standard_definition
from workflow.errors import ActionNotAvailable, UnknownState


class RecordRejected(Exception):
    """A message that will never apply: it goes to the dead letters with this reason (AMQP) or is answered
    as rejected (REST). ``reason`` is the category (``schema``, ``identifier``, ``state``, ``text`` …),
    ``field`` the dotted path of the offending field (``payload.applicant.name``), ``rule`` the rule it broke
    (``format``, ``required``, ``not_blank``, ``follows_steps`` …)."""

    def __init__(self, reason: str, detail: str, *, field: str | None = None, rule: str | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.field = field
        self.rule = rule or reason
        super().__init__(self.describe())

    def describe(self) -> str:
        """One line for the dead-letter reason: ``<reason>: <detail> [field <field>, rule <rule>]``."""
        where = f"field {self.field}, " if self.field else ""
        return f"{self.reason}: {self.detail} [{where}rule {self.rule}]"


# The decision step each result outcome needs.
OUTCOME_ACTIONS = {"granted": "grant", "denied": "deny", "intake_refused": "refuse_intake", "withdrawn": "withdraw"}
SUBMIT = "submit"


def timestamp(value: str, field: str) -> datetime:
    """An RFC 3339 timestamp the hub can read, with its offset."""
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        moment = None
    if moment is None or moment.tzinfo is None:
        raise RecordRejected("schema", f"{field}: not an RFC 3339 date-time with offset", field=field,
                             rule="format")
    return moment


def check_record(record: dict[str, Any]) -> dict[str, Any]:
    """A schema-valid case record, checked and normalised (a copy; steps sorted by seq)."""
    record = _copy(record)
    steps = _ordered_steps(record["steps"])
    record["steps"] = steps
    submitted_at = timestamp(record["submitted_at"], "payload.submitted_at")
    for name in ("accepted_at",):
        if record.get(name) is not None:
            timestamp(record[name], f"payload.{name}")
    if record.get("result"):
        timestamp(record["result"]["at"], "payload.result.at")
    for index, step in steps:
        _check_step_texts(step, f"payload.steps.{index}")
    _check_flow(steps)
    _check_state(record, steps)
    record["steps"] = [step for _, step in steps]
    _check_applicant(record["applicant"], today=business_date(submitted_at))
    _normalise_record_texts(record)
    _check_special_procedures(record)
    return record


def check_event(payload: dict[str, Any]) -> dict[str, Any]:
    """A schema-valid single step; whether it follows its predecessor is known only when that arrived, so here
    only that its action can lead to its ``to_state`` at all."""
    payload = _copy(payload)
    step = payload["step"]
    _check_step_texts(step, "payload.step")
    action, to_state = step["action"], step["to_state"]
    if (step["seq"] == 1) != (action == SUBMIT):
        raise RecordRejected("state", f"payload.step.action: step 1 and only step 1 is {SUBMIT}",
                             field="payload.step.action", rule="follows_workflow")
    if to_state not in _targets(action):
        raise RecordRejected("state", f"payload.step.to_state: {action} never leads to {to_state}",
                             field="payload.step.to_state", rule="follows_workflow")
    return payload


def _copy(document: Any) -> Any:
    """A copy of a decoded JSON document: its dicts and lists copied, its scalars (immutable) shared. What
    copy.deepcopy does for such a document, without its memo and dispatch (a fifth of a record's checks)."""
    if isinstance(document, dict):
        return {key: _copy(value) for key, value in document.items()}
    if isinstance(document, list):
        return [_copy(value) for value in document]
    return document


def _ordered_steps(steps: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """(index as sent, step) sorted by seq, which must run 1, 2, 3 … without gaps or repeats."""
    ordered = sorted(enumerate(steps), key=lambda pair: pair[1]["seq"])
    if [step["seq"] for _, step in ordered] != list(range(1, len(ordered) + 1)):
        raise RecordRejected("schema", "payload.steps: seq must run 1, 2, 3 … without gaps or repeats",
                             field="payload.steps", rule="seq_consecutive")
    return ordered


def _check_step_texts(step: dict[str, Any], prefix: str) -> None:
    timestamp(step["at"], f"{prefix}.at")
    step["officer"] = _name(step["officer"], f"{prefix}.officer", max_length=64)
    if step.get("opinion") is not None:
        step["opinion"] = _text(step["opinion"], f"{prefix}.opinion", max_length=2000)


def _targets(action: str) -> set[str]:
    definition = standard_definition()
    if action == SUBMIT:
        return {definition.initial_state}
    return {t.target for t in definition.transitions if t.action == action}


def _next_state(state: str | None, action: str) -> str | None:
    definition = standard_definition()
    if state is None or action == SUBMIT:
        return definition.initial_state if state is None and action == SUBMIT else None
    try:
        return definition.transition_for(state, action).target
    except (ActionNotAvailable, UnknownState):
        return None


def _check_flow(steps: list[tuple[int, dict[str, Any]]]) -> None:
    state: str | None = None
    for index, step in steps:
        field = f"payload.steps.{index}"
        target = _next_state(state, step["action"]) or _skipping_to(state, step)
        if target is None:
            where = f"in state {state}" if state else "as the first step"
            raise RecordRejected("state", f"{field}.action: {step['action']} is not possible {where}",
                                 field=f"{field}.action", rule="follows_workflow")
        if step["to_state"] != target:
            raise RecordRejected("state", f"{field}.to_state: {step['action']} from {state} leads to {target}, "
                                 f"not {step['to_state']}", field=f"{field}.to_state", rule="follows_workflow")
        state = target


def _skipping_to(state: str | None, step: dict[str, Any]) -> str | None:
    """A step that skips steps of the standard flow (granted straight after submission): the platform did
    it, so the record is news, not a contradiction — stored, and electronic supervision raises its
    ``procedure.skipped_step`` alert (hub/supervision/rules). Only forward: an action of a step the case
    already left, or one that cannot reach ``to_state``, is still refused."""
    if state is None or step["action"] == SUBMIT or step["to_state"] not in _targets(step["action"]):
        return None
    return step["to_state"] if way_to(standard_definition(), state, step["action"]) else None


def _check_state(record: dict[str, Any], steps: list[tuple[int, dict[str, Any]]]) -> None:
    last = steps[-1][1]
    if record["state"] != last["to_state"]:
        raise RecordRejected("state", f"payload.state: {record['state']} does not follow from the steps (the last "
                             f"step, {last['seq']} {last['action']}, leads to {last['to_state']})",
                             field="payload.state", rule="follows_steps")
    actions = {step["action"] for _, step in steps}
    if record.get("accepted_at") is not None and "accept" not in actions:
        raise RecordRejected("state", "payload.accepted_at: given, but no step accepts the application",
                             field="payload.accepted_at", rule="follows_steps")
    result = record.get("result")
    if result and OUTCOME_ACTIONS[result["outcome"]] not in actions:
        raise RecordRejected("state", f"payload.result.outcome: {result['outcome']} without a "
                             f"{OUTCOME_ACTIONS[result['outcome']]} step", field="payload.result.outcome",
                             rule="follows_steps")


def _identifier_kind(number: str, today: date) -> str | None:
    """What the number is, by its own shape and check character (18 characters only: a 15-digit number has no
    check character to tell it from anything else)."""
    if len(number) != 18:
        return None
    if ids.is_valid_citizen_id(number, today=today):
        return "citizen_id"
    if ids.is_valid_credit_code(number):
        return "credit_code"
    return None


def _check_applicant(applicant: dict[str, Any], *, today: date) -> None:
    field = "payload.applicant.id_number"
    id_type = applicant["id_type"]
    try:
        if id_type == "citizen_id":
            applicant["id_number"] = ids.validate_citizen_id(applicant["id_number"], today=today)
        elif id_type == "credit_code":
            applicant["id_number"] = ids.validate_credit_code(applicant["id_number"])
        else:
            applicant["id_number"] = _name(applicant["id_number"], field, max_length=32).upper()
    except ids.IdentifierError as exc:
        raise RecordRejected("identifier", f"{field}: {exc}", field=field, rule=exc.rule) from exc
    detected = _identifier_kind(applicant["id_number"], today)
    if id_type not in ("citizen_id", "credit_code") and detected is not None:
        raise RecordRejected("applicant_type", f"payload.applicant.id_type: {id_type}, but id_number is a valid "
                             f"{detected}", field="payload.applicant.id_type", rule="matches_identifier")
    kind = id_type if id_type in ("citizen_id", "credit_code") else detected
    person = applicant["type"] == ids.NATURAL_PERSON
    if person and kind == "credit_code":
        raise RecordRejected("applicant_type", "payload.applicant.type: a natural person (1) cannot carry a unified "
                             "social credit code", field="payload.applicant.type", rule="matches_identifier")
    if not person and (kind == "citizen_id" or id_type == "passport"):
        raise RecordRejected("applicant_type", f"payload.applicant.type: type {applicant['type']} is not a natural "
                             f"person and cannot carry a personal identifier ({kind or id_type})",
                             field="payload.applicant.type", rule="matches_identifier")


def special_procedure_kind(name: str) -> str | None:
    """The Art. 45 kind a partner's procedure names: its key (``expert_review``), its Chinese name (专家评审), or a
    longer name holding one (技术评估（专家评审）); None for anything else."""
    text = name.strip()
    if text in SPECIAL_PROCEDURES:
        return text
    return next((key for key, label in SPECIAL_PROCEDURES.items() if label in text), None)


def _check_special_procedures(record: dict[str, Any]) -> None:
    """Each special procedure becomes a suspension of the case's clock (Art. 45): an Art. 45 kind, ending no
    earlier than it starts."""
    for index, procedure in enumerate(record.get("special_procedures") or ()):
        prefix = f"payload.special_procedures.{index}"
        if special_procedure_kind(procedure["kind"]) is None:
            allowed = ", ".join(f"{key} ({label})" for key, label in SPECIAL_PROCEDURES.items())
            raise RecordRejected("special_procedure", f"{prefix}.kind: not a special procedure of Administrative "
                                 f"Licensing Law Art. 45 (one of {allowed})", field=f"{prefix}.kind",
                                 rule="special_procedure_kind")
        start = date.fromisoformat(procedure["start"])
        end = procedure.get("end")
        if end is not None and date.fromisoformat(end) < start:
            raise RecordRejected("special_procedure", f"{prefix}.end: {end} is before its start {start.isoformat()}",
                                 field=f"{prefix}.end", rule="ends_after_start")


def _normalise_record_texts(record: dict[str, Any]) -> None:
    applicant = record["applicant"]
    applicant["name"] = _name(applicant["name"], "payload.applicant.name", max_length=128)
    for index, procedure in enumerate(record.get("special_procedures") or ()):
        prefix = f"payload.special_procedures.{index}"
        procedure["kind"] = _text(procedure["kind"], f"{prefix}.kind", max_length=64, allow_newlines=False)
        for name in ("reason", "result"):
            if procedure.get(name) is not None:
                procedure[name] = _text(procedure[name], f"{prefix}.{name}", max_length=500)
    result = record.get("result")
    if result:
        for name, limit in (("certificate_name", 128), ("certificate_number", 64)):
            if result.get(name) is not None:
                result[name] = _text(result[name], f"payload.result.{name}", max_length=limit, allow_newlines=False)


def _name(value: str, field: str, *, max_length: int) -> str:
    try:
        return normalize_name(value, max_length=max_length)
    except TextRuleViolation as exc:
        raise RecordRejected("text", f"{field}: {exc.message}", field=field, rule=exc.rule) from None


def _text(value: str, field: str, *, max_length: int, allow_newlines: bool = True) -> str:
    try:
        return normalize_text(value, max_length=max_length, allow_newlines=allow_newlines)
    except TextRuleViolation as exc:
        raise RecordRejected("text", f"{field}: {exc.message}", field=field, rule=exc.rule) from None
