"""The approval state machine: may this actor take this action on a case in this state?

``apply`` only decides and returns the transition; recording the new state, the event and the
clock effect is the service's job, in its own transaction.
"""

from __future__ import annotations

from collections.abc import Collection

from workflow.definition import Transition, WorkflowDefinition
from workflow.errors import (
    ActionNotAvailable,
    ActorNotAllowed,
    OncePerStep,
    OpinionRequired,
    RoleNotAllowed,
    UnknownState,
    WorkflowError,
)

__all__ = [
    "ActionNotAvailable",
    "ActorNotAllowed",
    "OncePerStep",
    "OpinionRequired",
    "RoleNotAllowed",
    "UnknownState",
    "WorkflowError",
    "apply",
]

ACTORS = frozenset({"officer", "applicant"})


def apply(
    definition: WorkflowDefinition,
    state: str,
    action: str,
    *,
    actor: str,
    roles: Collection[str],
    opinion: str | None,
    taken: Collection[tuple[str, str]] = (),
) -> Transition:
    """Check that ``action`` may be taken now and return the transition to record.

    Checks, in order: the action exists from ``state``; it belongs to this kind of actor; an
    officer holds one of its roles (applicants are identified by tracking number and query code
    instead, so their roles are ignored); a once-per-step action is not in ``taken`` for its step
    — ``taken`` holds the (step, action) pairs the case has recorded so far; a required opinion is
    not blank.
    """
    if actor not in ACTORS:
        # A caller bug, not a refused action: fail loudly rather than as a workflow error.
        raise ValueError(f"actor must be one of {sorted(ACTORS)}, got {actor!r}")
    transition = definition.transition_for(state, action)
    if transition.actor != actor:
        raise ActorNotAllowed(
            state,
            action,
            actor,
            state_label=definition.states[state],
            action_label=transition.label,
        )
    if actor == "officer" and transition.roles.isdisjoint(roles):
        raise RoleNotAllowed(action, transition.roles, action_label=transition.label)
    if transition.used_up(taken):
        raise OncePerStep(
            action,
            transition.step,
            action_label=transition.label,
            step_label=definition.step(transition.step).label,
            legal_basis=transition.legal_basis,
        )
    if transition.requires_opinion and not (opinion and opinion.strip()):
        raise OpinionRequired(action, action_label=transition.label)
    return transition
