"""Errors raised when an action on a case is refused.

They live in their own module so that both ``definition`` (which looks transitions up) and
``machine`` (which checks actor, roles and opinion) can raise them without importing each other.
Messages are in Chinese because the service shows them to officers and applicants as they are.
"""

from __future__ import annotations

from collections.abc import Iterable

# Officer roles known to the hub (DESIGN.md §7); definitions may use no others.
# "window": staff of a government service centre who register paper applications on an applicant's behalf
# (hub/window); they act on no case, so no definition names them.
ROLES: frozenset[str] = frozenset({"intake", "reviewer", "approver", "supervisor", "admin", "window"})

ROLE_LABELS: dict[str, str] = {
    "intake": "受理人员",
    "reviewer": "审核人员",
    "approver": "审批人员",
    "supervisor": "监察人员",
    "admin": "系统管理员",
    "window": "窗口人员",
}

ACTOR_LABELS: dict[str, str] = {"officer": "工作人员", "applicant": "申请人"}


class WorkflowError(Exception):
    """Base class: an action was refused by the workflow rules (not a bug in the caller)."""


class UnknownState(WorkflowError):
    """The case is in a state the definition does not declare (stale or corrupted data)."""

    def __init__(self, state: str) -> None:
        self.state = state
        super().__init__(f"流程中没有状态「{state}」")


class ActionNotAvailable(WorkflowError):
    """The action cannot be taken from the current state."""

    def __init__(
        self,
        state: str,
        action: str,
        *,
        state_label: str | None = None,
        action_label: str | None = None,
        message: str | None = None,
    ) -> None:
        self.state = state
        self.action = action
        self.state_label = state_label or state
        self.action_label = action_label or action
        super().__init__(
            message or f"当前状态「{self.state_label}」不能执行「{self.action_label}」"
        )


class ActorNotAllowed(ActionNotAvailable):
    """The action exists in this state but belongs to the other kind of actor.

    A subclass of ``ActionNotAvailable`` because, seen from that actor, the action is simply not
    on offer; callers that only care about "not possible now" need catch one class.
    """

    def __init__(
        self,
        state: str,
        action: str,
        actor: str,
        *,
        state_label: str | None = None,
        action_label: str | None = None,
    ) -> None:
        self.actor = actor
        actor_label = ACTOR_LABELS.get(actor, actor)
        super().__init__(
            state,
            action,
            state_label=state_label,
            action_label=action_label,
            message=f"当前状态「{state_label or state}」下，{actor_label}不能执行"
            f"「{action_label or action}」",
        )


class RoleNotAllowed(WorkflowError):
    """The officer holds none of the roles the transition lists."""

    def __init__(
        self, action: str, required_roles: Iterable[str], *, action_label: str | None = None
    ) -> None:
        self.action = action
        self.required_roles = frozenset(required_roles)
        wanted = "或".join(ROLE_LABELS.get(r, r) for r in sorted(self.required_roles))
        super().__init__(f"执行「{action_label or action}」需要{wanted}角色")


class OpinionRequired(WorkflowError):
    """The transition must be recorded with a written opinion (reasons for refusal, review...)."""

    def __init__(self, action: str, *, action_label: str | None = None) -> None:
        self.action = action
        super().__init__(f"执行「{action_label or action}」必须填写意见")


class OncePerStep(WorkflowError):
    """The action may be taken once per step of a case and was taken in this step already.

    The one-time supplement notice (一次性告知, Administrative Licensing Law Art. 32) is the case in
    point: all missing materials are asked for in one notice, so a second notice in the same step
    (intake or review) is refused — not merely unavailable in the state, which is why this is not an
    ``ActionNotAvailable``.
    """

    def __init__(
        self,
        action: str,
        step: str,
        *,
        action_label: str | None = None,
        step_label: str | None = None,
        legal_basis: str | None = None,
    ) -> None:
        self.action = action
        self.step = step
        self.legal_basis = legal_basis
        basis = f"（依据{legal_basis}）" if legal_basis else ""
        super().__init__(
            f"「{action_label or action}」在「{step_label or step}」环节只能办理一次，"
            f"本环节已经办理过{basis}"
        )


class ClockError(WorkflowError):
    """A time-limit action (extension, special procedure) or an action refused because of the clock.

    ``rule`` names the rule for machines (``already_extended``, ``special_procedure_open``...),
    ``field`` the input at fault when there is one (``data.kind``, ``opinion``...), ``legal_basis``
    the article the rule comes from; the message, in Chinese, says all three to people.
    """

    def __init__(
        self, message: str, *, rule: str, field: str | None = None, legal_basis: str | None = None
    ) -> None:
        self.rule = rule
        self.field = field
        self.legal_basis = legal_basis
        basis = f"（依据{legal_basis}）" if legal_basis else ""
        super().__init__(f"{message}{basis}")


class UnknownBranch(WorkflowError):
    """The case has no branch of that name (or is no joint case at all)."""

    def __init__(self, branch: str) -> None:
        self.branch = branch
        super().__init__(f"本办件没有分支「{branch}」")
