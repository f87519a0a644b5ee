"""Pure approval logic: definitions, state machine, working-day calendar and time limits.

No I/O, database or framework imports here (DESIGN.md §2); the hub stores what these functions
compute.
"""

from workflow.calendar import (
    HolidayNoticeEntry,
    WorkingCalendar,
    overrides_from_notice,
    parse_notice,
)
from workflow.definition import (
    DefinitionError,
    Step,
    Transition,
    WorkflowDefinition,
    load_definition,
    standard_definition,
)
from workflow.errors import ROLE_LABELS, ROLES
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
from workflow.timelimits import (
    allocate_step_deadlines,
    compute_deadline,
    compute_intake_deadline,
    extend_for_suspension,
    is_overdue,
    working_days_left,
)

__all__ = [
    "ROLES",
    "ROLE_LABELS",
    "ActionNotAvailable",
    "ActorNotAllowed",
    "DefinitionError",
    "HolidayNoticeEntry",
    "OncePerStep",
    "OpinionRequired",
    "RoleNotAllowed",
    "Step",
    "Transition",
    "UnknownState",
    "WorkflowDefinition",
    "WorkflowError",
    "WorkingCalendar",
    "allocate_step_deadlines",
    "apply",
    "compute_deadline",
    "compute_intake_deadline",
    "extend_for_suspension",
    "is_overdue",
    "load_definition",
    "overrides_from_notice",
    "parse_notice",
    "standard_definition",
    "working_days_left",
]
