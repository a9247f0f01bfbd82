"""Which action applies to which task state, and who may take it (pure rules)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dispatcher.actions import refusal, role_refusal, state_refusal
from store import Role, TaskRecord
from workers.vocabulary import ActionType, TaskStatus


def task(
    status: TaskStatus, kind: str = "booking_proposal.process", severity: str = ""
) -> TaskRecord:
    error = {"severity": severity} if severity else None
    return TaskRecord(
        id="t1",
        office="o",
        dossier="d",
        kind=kind,
        payload={},
        status=status,
        submitted_at=datetime(2024, 1, 1, tzinfo=UTC),
        error=error,
    )


@pytest.mark.parametrize("status", list(TaskStatus))
@pytest.mark.parametrize("action", list(ActionType))
def test_every_state_and_action_has_a_decision(status: TaskStatus, action: ActionType) -> None:
    reason = state_refusal(task(status), action)
    allowed = {
        ActionType.RESTART: {TaskStatus.FAILED, TaskStatus.RETRY_WAIT},
        ActionType.CANCEL: {TaskStatus.WAITING, TaskStatus.FAILED, TaskStatus.RETRY_WAIT},
        ActionType.RESOLVE: {TaskStatus.FAILED},
    }[action]
    assert (reason is None) == (status in allowed)
    if reason is not None:
        assert status.value in reason and action.value in reason


def test_an_office_cancels_activations_only_and_support_anything() -> None:
    assert role_refusal(task(TaskStatus.FAILED), ActionType.CANCEL, Role.ADMIN)
    assert (
        role_refusal(task(TaskStatus.FAILED, "dossier.activate"), ActionType.CANCEL, Role.ADMIN)
        is None
    )
    assert role_refusal(task(TaskStatus.FAILED), ActionType.CANCEL, Role.SUPPORT) is None


def test_only_support_acts_on_a_red_instruction() -> None:
    red = task(TaskStatus.FAILED, severity="red")
    assert "only support" in (refusal(red, ActionType.RESTART, Role.ADMIN) or "")
    assert refusal(red, ActionType.RESTART, Role.SUPPORT) is None
    assert (
        refusal(
            task(TaskStatus.FAILED, severity="orange"), ActionType.RESTART, Role.DOSSIER_MANAGER
        )
        is None
    )


def test_state_is_checked_before_role() -> None:
    reason = refusal(task(TaskStatus.DONE), ActionType.CANCEL, Role.ADMIN)
    assert reason is not None and "is done" in reason
