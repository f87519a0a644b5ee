"""Pure approval logic: definitions, state machine, processes (single and joint), working-day calendar,
the law's clock and time limits.

No I/O, database or framework imports here (DESIGN.md §2); the hub stores what these functions
compute.
"""

from workflow.calendar import (
    HolidayNoticeEntry,
    WorkingCalendar,
    overrides_from_notice,
    parse_notice,
)
from workflow.clock import (
    LAW_LIMITS,
    SPECIAL_PROCEDURES,
    SUPPLEMENT,
    ClockFacts,
    Suspension,
)
from workflow.definition import (
    Branch,
    DefinitionError,
    ParallelBlock,
    Step,
    Transition,
    WorkflowDefinition,
    load_definition,
    standard_definition,
)
from workflow.errors import ROLE_LABELS, ROLES, ClockError, UnknownBranch
from workflow.machine import (
    ActionNotAvailable,
    ActorNotAllowed,
    OncePerStep,
    OpinionRequired,
    RoleNotAllowed,
    UnknownState,
    WorkflowError,
    apply,
)
from workflow.process import (
    CLOCK_ACTION_LABELS,
    CLOCK_ACTION_ROLES,
    CLOCK_ACTIONS,
    Move,
    Outcome,
    Process,
    advance,
    handling_of,
    start,
)
from workflow.registry import UnknownDefinition, get_definition, workflow_ids
from workflow.timelimits import (
    allocate_step_deadlines,
    compute_deadline,
    compute_intake_deadline,
    extend_for_suspension,
    is_overdue,
    working_days_left,
)

__all__ = [
    "CLOCK_ACTIONS",
    "CLOCK_ACTION_LABELS",
    "CLOCK_ACTION_ROLES",
    "LAW_LIMITS",
    "ROLES",
    "ROLE_LABELS",
    "SPECIAL_PROCEDURES",
    "SUPPLEMENT",
    "ActionNotAvailable",
    "ActorNotAllowed",
    "Branch",
    "ClockError",
    "ClockFacts",
    "DefinitionError",
    "HolidayNoticeEntry",
    "Move",
    "OncePerStep",
    "OpinionRequired",
    "Outcome",
    "ParallelBlock",
    "Process",
    "RoleNotAllowed",
    "Step",
    "Suspension",
    "Transition",
    "UnknownBranch",
    "UnknownDefinition",
    "UnknownState",
    "WorkflowDefinition",
    "WorkflowError",
    "WorkingCalendar",
    "advance",
    "allocate_step_deadlines",
    "apply",
    "compute_deadline",
    "compute_intake_deadline",
    "extend_for_suspension",
    "get_definition",
    "handling_of",
    "is_overdue",
    "load_definition",
    "overrides_from_notice",
    "parse_notice",
    "standard_definition",
    "start",
    "workflow_ids",
    "working_days_left",
]
