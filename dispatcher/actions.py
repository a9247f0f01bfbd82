"""Which action a person may take on a task in which state (pure rules, no I/O).

The client checks them before publishing so a bad request is refused at once with a
clear reason; the sequencer checks the state again when the command's turn comes, since
the task may have moved in between.
"""

from __future__ import annotations

from store import Role, TaskRecord
from workers.vocabulary import IN_FLIGHT, ActionType, Severity, TaskStatus

ACTIVATION = "dossier.activate"

ALLOWED_FROM: dict[ActionType, tuple[TaskStatus, ...]] = {
    ActionType.RESTART: (TaskStatus.FAILED, TaskStatus.RETRY_WAIT),
    ActionType.CANCEL: (TaskStatus.WAITING, TaskStatus.FAILED, TaskStatus.RETRY_WAIT),
    ActionType.RESOLVE: (TaskStatus.FAILED,),
}


def state_refusal(task: TaskRecord, action: ActionType) -> str | None:
    """Why `action` cannot be applied to the task in its current state, or None."""
    allowed = ALLOWED_FROM[action]
    if task.status in allowed:
        return None
    names = ", ".join(s.value for s in allowed)
    if task.status in IN_FLIGHT:
        return (
            f"task {task.id} is {task.status.value} on a connector; {action.value} "
            f"applies to a task that is {names}"
        )
    return (
        f"task {task.id} is {task.status.value}; {action.value} applies to a task that is {names}"
    )


def role_refusal(task: TaskRecord, action: ActionType, role: Role) -> str | None:
    """Why a user with `role` may not take `action` on this task, or None."""
    if role is Role.SUPPORT:
        return None
    if action is ActionType.CANCEL and task.kind != ACTIVATION:
        return f"only support may cancel a {task.kind} task; an office may cancel activations"
    if task.severity is Severity.RED:
        return "this task has a red instruction: only support may act on it"
    if role is Role.PLATFORM:
        return "a platform service cannot act on tasks"
    return None


def refusal(task: TaskRecord, action: ActionType, role: Role) -> str | None:
    """The first reason to refuse, state before role, or None when allowed."""
    return state_refusal(task, action) or role_refusal(task, action, role)
