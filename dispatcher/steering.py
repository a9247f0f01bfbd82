"""Restart, cancel and resolve, applied by the sequencer in the dossier's order.

An action is recorded by its requester (`actions` collection) and announced with a
command; the sequencer decides it once, in order with everything else of the dossier.
Every apply marks the task with the action id in its first write, so a successor that
gets the command again finishes the same action instead of refusing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from broker.messages import Envelope, MessageType
from dispatcher.actions import state_refusal
from store import (
    Actions,
    ActionStatus,
    ActionType,
    DossierRecord,
    InstructionStatus,
    TaskRecord,
    TaskStatus,
)

if TYPE_CHECKING:
    from dispatcher.sequencer import Sequencer

log = structlog.get_logger("dossierflow.sequencer")

COMMANDS = {
    MessageType.RESTART: ActionType.RESTART,
    MessageType.CANCEL: ActionType.CANCEL,
    MessageType.RESOLVE: ActionType.RESOLVE,
}


class ActionHandler:
    """The action half of the sequencer."""

    def __init__(self, sequencer: Sequencer) -> None:
        self._seq = sequencer
        self._actions = Actions(sequencer.store)

    def apply(self, env: Envelope, dossier: DossierRecord) -> None:
        """Decide and apply one action command."""
        action = self._actions.get(str(env.data.get("action_id", "")))
        task = self._seq.store.task(env.task_id)
        if action is None or task is None or action.task_id != task.id:
            log.error("action.unknown", task_id=env.task_id, action_id=env.data.get("action_id"))
            return
        if action.status is not ActionStatus.PENDING:
            return  # decided before: a redelivered command
        resuming = task.last_action == action.id
        reason = None if resuming else state_refusal(task, action.type)
        if reason is None and action.type is ActionType.RESTART and dossier.active != task.id:
            reason = f"task {task.id} is not the task holding its dossier"
        if reason is not None:
            self._actions.decide(action.id, ActionStatus.REFUSED, reason, self._seq.now())
            log.info("action.refused", task_id=task.id, action=action.type.value, reason=reason)
            return
        if action.type is ActionType.RESTART:
            self._restart(task, dossier, action.id, action.payload, resuming)
        else:
            final = TaskStatus.CANCELLED if action.type is ActionType.CANCEL else TaskStatus.SKIPPED
            self._finish(task, dossier, action.id, final, resuming)
        self._close_instructions(task, action.type.value)
        self._actions.decide(action.id, ActionStatus.APPLIED, "", self._seq.now())
        log.info("action.applied", task_id=task.id, action=action.type.value, key=dossier.key)

    def _restart(
        self,
        task: TaskRecord,
        dossier: DossierRecord,
        action_id: str,
        payload: dict[str, object] | None,
        resuming: bool,
    ) -> None:
        now = self._seq.now()
        if not resuming:
            fields: dict[str, object] = {
                "last_action": action_id,
                "error": None,
                "retries": 0,
                "next_attempt_at": None,
                "finished_at": None,
            }
            if payload is not None:
                fields["payload"] = payload
                task.payload = dict(payload)
            self._seq.store.update_task(
                task.id,
                TaskStatus.WAITING,
                now,
                fields,
                only_from=[TaskStatus.FAILED, TaskStatus.RETRY_WAIT],
                note="restarted" + (" with a corrected payload" if payload is not None else ""),
            )
            task.status = TaskStatus.WAITING
        dossier.blocked = False
        self._seq.store.set_dossier(dossier.key, now, blocked=False, active=task.id)
        fresh = self._seq.store.task(task.id)
        if fresh is not None and fresh.status is TaskStatus.WAITING:
            self._seq.publish_run(fresh)

    def _finish(
        self,
        task: TaskRecord,
        dossier: DossierRecord,
        action_id: str,
        final: TaskStatus,
        resuming: bool,
    ) -> None:
        now = self._seq.now()
        if not resuming:
            self._seq.store.update_task(
                task.id,
                final,
                now,
                {"last_action": action_id, "finished_at": now},
                only_from=[TaskStatus.WAITING, TaskStatus.FAILED, TaskStatus.RETRY_WAIT],
                note=final.value,
            )
            task.status = final
        if dossier.active == task.id:
            self._seq.finish_active(dossier, task)

    def _close_instructions(self, task: TaskRecord, resolution: str) -> None:
        for instruction in self._seq.store.find_instructions(
            task_id=task.id, status=InstructionStatus.OPEN
        ):
            self._seq.store.resolve_instruction(instruction.id, self._seq.now(), resolution)
