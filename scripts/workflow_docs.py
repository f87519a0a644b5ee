#!/usr/bin/env python3
"""Writes docs/workflows.md from the workflow definitions themselves (workflow/definitions/*.json).

Each definition the registry knows (``workflow.registry.workflow_ids``) becomes a section: a Mermaid state
diagram (states with their Chinese labels, every transition labelled with its action's label and who takes it,
a parallel block drawn as a concurrent state with one region per branch, each region the branch's own
definition), its steps with their time allocation, its transitions with their clock effect and legal basis, and
the articles of the Administrative Licensing Law its time rules come from. The rules every definition shares
(limits, extension, special procedures, after-hours receipt) are read from ``workflow.clock``.

Usage: python scripts/workflow_docs.py [--check] [--output PATH]
  without --check: (re)writes PATH (default docs/workflows.md);
  --check: writes nothing, exits 1 when PATH differs from what the definitions give (the doc is stale).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python scripts/workflow_docs.py`
    sys.path.insert(0, str(ROOT))

from workflow import clock  # noqa: E402
from workflow.definition import Transition, WorkflowDefinition  # noqa: E402
from workflow.process import (  # noqa: E402
    CLOCK_ACTION_LABELS,
    CLOCK_ACTION_ROLES,
    END_SPECIAL,
    EXTEND,
    START_SPECIAL,
    handling_of,
)
from workflow.registry import get_definition, workflow_ids  # noqa: E402

DOC = ROOT / "docs" / "workflows.md"
LAW = "《中华人民共和国行政许可法》"

# Who takes an action, as the diagrams say it: officers by their role ids (the API's), the others by name.
ACTOR_NAMES = {"applicant": "申请人", "system": "系统"}
CLOCK_EFFECTS = {
    "start": "starts (accepted: Art. 42 limit counts from this day)",
    "suspend": "suspends (the days until the resume are not counted)",
    "resume": "resumes",
    "stop": "stops",
    "none": "—",
}
# The articles the rules come from, in the law's order, with the numeral a legal-basis string cites them by.
ARTICLES = {
    "Art. 26": ("二十六", "joint (联合/统一/集中) handling: when several departments decide on one matter, one of them "
                "receives the application and sends it on to the others, or they handle it together."),
    "Art. 32": ("三十二", "incomplete materials are asked for in ONE notice, on the spot or within "
                f"{clock.INTAKE_NOTICE_DAYS} days; otherwise the application counts as accepted on the day the "
                "materials were received."),
    "Art. 38": ("三十八", "the decision: a licence is granted in writing when the application meets the statutory "
                "conditions; a denial gives its reasons and the applicant's right to administrative review or "
                "litigation."),
    "Art. 42": ("四十二", "decision within {} days of acceptance (an item may promise fewer), extendable once by {} "
                "with the agency head's recorded reasons; joint handling (Art. 26) {}, extendable by {}.".format(
                    *clock.LAW_LIMITS["single"], *clock.LAW_LIMITS["joint"])),
    "Art. 44": ("四十四", "the certificate is issued or served within 10 days of the decision."),
    "Art. 45": ("四十五", "the time of a hearing, tendering, auction, testing, inspection, quarantine, appraisal or "
                "expert review is not counted; the applicant is told in writing how long it will take."),
    "Art. 82": ("八十二", "the limits are working days, statutory holidays excluded, counted in whole days."),
}


# --- reading the definitions --------------------------------------------------------------------------------


def description_of(workflow_id: str) -> str:
    """The definition file's free-text description (not kept on the loaded definition)."""
    text = resources.files("workflow.definitions").joinpath(f"{workflow_id}.json").read_text("utf-8")
    return str(json.loads(text).get("description", "")).strip()


def who(transition: Transition) -> str:
    if transition.actor in ACTOR_NAMES:
        return ACTOR_NAMES[transition.actor]
    return " / ".join(sorted(transition.roles))


def edge_label(transition: Transition) -> str:
    # Mermaid ends a transition label at the line's end and reads ':' and ';' itself: keep them out.
    text = f"{transition.label}（{who(transition)}）"
    return text.replace(":", "：").replace(";", "；")


def state_line(node: str, label: str, indent: str) -> str:
    return f'{indent}state "{label}" as {node}'


# --- the diagram --------------------------------------------------------------------------------------------


def mermaid(definition: WorkflowDefinition) -> list[str]:
    """A ``stateDiagram-v2`` of ``definition``; its parallel block's state holds one region per branch."""
    lines = ["```mermaid", "stateDiagram-v2"]
    parallel = definition.parallel
    for name, label in definition.states.items():
        if parallel is not None and name == parallel.state:
            lines += concurrent_state(definition, indent="    ")
        else:
            lines.append(state_line(name, label, "    "))
    lines += machine_arrows(definition, prefix="", indent="    ")
    lines.append("```")
    return lines


def machine_arrows(definition: WorkflowDefinition, *, prefix: str, indent: str) -> list[str]:
    """[*] into the initial state, one arrow per transition, terminal states out to [*]."""
    lines = [f"{indent}[*] --> {prefix}{definition.initial_state}"]
    for transition in definition.transitions:  # one arrow each: the same action from two states is two
        lines.append(f"{indent}{prefix}{transition.source} --> {prefix}{transition.target}: {edge_label(transition)}")
    for state in sorted(definition.terminal_states, key=list(definition.states).index):
        lines.append(f"{indent}{prefix}{state} --> [*]")
    return lines


def concurrent_state(definition: WorkflowDefinition, *, indent: str) -> list[str]:
    """The parallel block's state: one concurrent region (``--``) per branch, each its own definition.

    A region holds the branch's states directly, each label prefixed with the branch's: Mermaid does not
    draw the label of a composite state nested in another one."""
    parallel = definition.parallel
    assert parallel is not None
    lines = [f'{indent}state "{definition.states[parallel.state]}" as {parallel.state} {{']
    inner = indent + "    "
    for index, branch in enumerate(parallel.branches):
        if index:
            lines.append(f"{inner}--")
        branch_definition = get_definition(branch.workflow_id)
        prefix = f"{branch.name}__"
        for name, label in branch_definition.states.items():
            lines.append(state_line(prefix + name, f"{branch.label}：{label}", inner))
        lines += machine_arrows(branch_definition, prefix=prefix, indent=inner)
    lines.append(f"{indent}}}")
    return lines


# --- the tables ---------------------------------------------------------------------------------------------


def steps_table(definition: WorkflowDefinition) -> list[str]:
    """Steps and their time: the intake step's days run from receipt; the later steps share the limit."""
    starts = [t for t in definition.transitions if t.clock == "start"]
    intake = starts[0].step if starts else None
    names = [step.name for step in definition.steps]
    after = names[names.index(intake) + 1:] if intake in names else names
    total = sum(step.time_allocation_days for step in definition.steps if step.name in after) or 1
    lines = ["| step | label | time allocation |", "|---|---|---|"]
    cumulative = 0
    for step in definition.steps:
        if step.name == intake:
            time = f"{step.time_allocation_days} working day(s) from receipt to the intake decision"
        elif step.name in after:
            cumulative += step.time_allocation_days
            time = f"weight {step.time_allocation_days}: due when {cumulative}/{total} of the limit has run"
        else:
            time = f"{step.time_allocation_days}"
        lines.append(f"| `{step.name}` | {step.label} | {time} |")
    return lines


def transitions_table(definition: WorkflowDefinition) -> list[str]:
    lines = [
        "| action | label | from → to | taken by | opinion | clock | legal basis |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in definition.transitions:
        flags = "required" if t.requires_opinion else ""
        if t.once_per_step:
            flags = (flags + ", " if flags else "") + "once per step"
        lines.append(
            f"| `{t.action}` | {t.label} | {definition.states[t.source]} → {definition.states[t.target]} "
            f"| {who(t)} | {flags or '—'} | {CLOCK_EFFECTS[t.clock]} | {t.legal_basis or '—'} |"
        )
    return lines


def parallel_table(definition: WorkflowDefinition) -> list[str]:
    parallel = definition.parallel
    assert parallel is not None
    lines = [
        f"Parallel block in state **{definition.states[parallel.state]}** (`{parallel.state}`): acceptance opens "
        "one child case per branch, all running at the same time; the join is a system action of the parent that "
        f"fires once, when every branch is final — `{parallel.join_granted}` when all granted, "
        f"`{parallel.join_denied}` when any denied (with every denying department's reasons). Supplements asked "
        f"by several branches go to the applicant as one merged notice (`{parallel.notify_supplement}`, Art. 32) "
        "and stop the clocks of the parent and of every open branch until the applicant supplements.",
        "",
        "| branch | label | definition | time allocation (working days) | form part |",
        "|---|---|---|---|---|",
    ]
    for branch in parallel.branches:
        part = ", ".join(f"`{field}`" for field in branch.form_part) or "—"
        lines.append(f"| `{branch.name}` | {branch.label} | `{branch.workflow_id}` | {branch.time_allocation_days} "
                     f"| {part} |")
    return lines


def articles_of(definition: WorkflowDefinition) -> list[str]:
    """The articles this definition's rules come from, each with where it applies."""
    kind = handling_of(definition)
    limit, extension = clock.LAW_LIMITS[kind]
    where: dict[str, list[str]] = {
        "Art. 42": [f"decision limit {limit}, `{EXTEND}` by {extension}"],
        "Art. 45": [f"`{START_SPECIAL}` / `{END_SPECIAL}`"],
        "Art. 82": ["every limit in whole working days"],
    }
    if definition.parallel is not None:
        where.setdefault("Art. 26", []).append(f"the parallel block (`{definition.parallel.state}`)")
    elif kind == "joint":
        where.setdefault("Art. 26", []).append("a branch of a joint case")
    for transition in definition.transitions:
        for article, (numeral, _) in ARTICLES.items():
            action = f"`{transition.action}`"
            if transition.legal_basis and f"第{numeral}条" in transition.legal_basis \
                    and action not in where.setdefault(article, []):
                where[article].append(action)
    return [f"* **{article}** ({LAW}第{numeral}条): {'; '.join(where[article])}"
            for article, (numeral, _) in ARTICLES.items() if where.get(article)]


def definition_section(workflow_id: str) -> list[str]:
    definition = get_definition(workflow_id)
    kind = handling_of(definition)
    limit, extension = clock.LAW_LIMITS[kind]
    lines = [f"## `{workflow_id}` — {definition_label(workflow_id)}", ""]
    description = description_of(workflow_id)
    if description:
        lines += [description, ""]
    lines += mermaid(definition)
    lines += ["", "### Time rules", ""]
    if definition.initial_clock == "running":  # a branch: opened by the parent's acceptance
        lines += [
            f"* Handling: **{kind}**, as a branch of a joint case: its statutory deadline is the parent's "
            f"(min(item's statutory limit, {limit}) working days from the parent's acceptance), its promised limit "
            "the branch's allocation in the parent's parallel block; `extend` on the branch adds "
            f"{extension} once.",
            "* The clock runs from the branch's creation, counted from the parent's acceptance.",
            "",
        ]
    else:
        lines += [
            f"* Handling: **{kind}** — decision limit min(item's statutory limit, {limit}) working days, extendable "
            f"once by {extension} (`extend`, approver, reason required); the item's promised limit is never longer.",
            "* The clock starts at acceptance.",
            "",
        ]
    lines += steps_table(definition)
    if definition.parallel is not None:
        lines += ["", "### Branches", ""]
        lines += parallel_table(definition)
    lines += ["", "### Transitions", ""]
    lines += transitions_table(definition)
    lines += ["", "### Articles", ""]
    lines += articles_of(definition)
    lines.append("")
    return lines


def definition_label(workflow_id: str) -> str:
    text = resources.files("workflow.definitions").joinpath(f"{workflow_id}.json").read_text("utf-8")
    return str(json.loads(text).get("label", workflow_id))


def clock_action(action: str) -> str:
    """An action every definition accepts on its clock, with its label and roles (workflow.process)."""
    return f"`{action}` {CLOCK_ACTION_LABELS[action]}（{' / '.join(sorted(CLOCK_ACTION_ROLES[action]))}）"


def common_rules() -> list[str]:
    procedures = "、".join(f"{name}（`{kind}`）" for kind, name in clock.SPECIAL_PROCEDURES.items())
    single, joint = clock.LAW_LIMITS["single"], clock.LAW_LIMITS["joint"]
    end = clock.END_OF_WORKING_DAY.strftime("%H:%M")
    return [
        "## Time rules every definition shares",
        "",
        "Deadlines are derived from the facts recorded on a case (`workflow/clock.py`): the day it was accepted, "
        "its limits, the one extension, every suspension — never a running total, so loading a holiday notice "
        "recomputes them exactly. The day-by-day rules, with worked dates, are in [time-rules.md](time-rules.md).",
        "",
        "* **Whole working days** (Art. 82): the acceptance day is not counted; the N-th working day after it is "
        "the deadline.",
        f"* **Decision limit** (Art. 42): single handling min(item, {single[0]}) working days, joint handling "
        f"(Art. 26) min(item, {joint[0]}); the item's promised limit is at most the statutory one.",
        f"* **Extension** (Art. 42): once per case, by {single[1]} (single) or {joint[1]} (joint) working days, "
        f"action {clock_action(EXTEND)} with the reason as opinion; the event records the old and new deadline.",
        f"* **Special procedures** (Art. 45): {clock_action(START_SPECIAL)} (data `kind`, `declared_days` > 0; "
        f"reason as opinion) stops the clock until {clock_action(END_SPECIAL)} (data `result`); while one is open "
        f"no other action but the applicant's withdrawal is taken. Kinds: {procedures}. On a branch, the parent's "
        "clock stops too while any branch has one open.",
        f"* **One supplement notice** (Art. 32): at intake within {clock.INTAKE_NOTICE_DAYS} working days of "
        "receipt, once per step; later, the application counts as accepted on the day the materials arrived. "
        "During review a supplement request suspends the clock until the applicant supplements.",
        f"* **Outside working hours**: an application submitted on a working day at or after {end}, or on a "
        "weekend or holiday, counts as received on the next working day (`workflow.clock.received_on`); its "
        "intake period runs from that day.",
        "* Clock actions never change the state; every case and branch shows its statutory deadline, promised "
        "deadline, working days used, days suspended and days remaining.",
        "",
    ]


def render() -> str:
    ids = workflow_ids()
    lines = [
        "# Workflow definitions",
        "",
        "<!-- Generated by scripts/workflow_docs.py from workflow/definitions/*.json: do not edit by hand. After "
        "changing a definition run `.venv/bin/python scripts/workflow_docs.py`; the test "
        "tests/unit/workflow/test_workflow_docs.py fails while this file is stale. -->",
        "",
        "Every case follows a versioned definition (`items.workflow_id`; a running case keeps the version it "
        "started with). Diagrams: states with their Chinese labels; each arrow is an action, labelled with its "
        "label and who takes it — officer role ids (`intake`, `reviewer`, `approver`), 申请人 (the applicant) or "
        "系统 (the engine itself); `[*]` marks the start and the final states. A parallel block is drawn as a "
        "concurrent state, one region per branch (each branch is a child case on its own definition).",
        "",
        "Definitions: " + ", ".join(f"[`{i}`](#{anchor(i, definition_label(i))})" for i in ids) + ".",
        "",
    ]
    lines += common_rules()
    for workflow_id in ids:
        lines += definition_section(workflow_id)
    lines += ["## The articles", ""]
    lines += [f"* **{article}** {LAW}第{numeral}条 — {text}" for article, (numeral, text) in ARTICLES.items()]
    return "\n".join(lines) + "\n"


def anchor(workflow_id: str, label: str) -> str:
    """GitHub's heading anchor for ``## `id` — label``: lower case, punctuation dropped, spaces to hyphens."""
    heading = f"{workflow_id} — {label}".lower()
    kept = "".join(c for c in heading if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the doc is stale; write nothing")
    parser.add_argument("--output", type=Path, default=DOC, help="the doc (default docs/workflows.md)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    expected = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != expected:
            print(f"{args.output} is stale: run .venv/bin/python scripts/workflow_docs.py", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.write_text(expected, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
