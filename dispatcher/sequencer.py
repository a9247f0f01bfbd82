"""The sequencer: the per-dossier state machine and the only writer of task and dossier state.

Every command and event of a dossier arrives in that dossier's control partition and is
handled here one after the other. Each handler is idempotent and every step is written
before the next one depends on it, so a sequencer killed at any point and replaced by a
standby (which gets the unacknowledged message again) finishes the work without losing
or duplicating a release: `_repair` completes whatever the previous owner left half done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from broker.messages import Envelope, MessageType, utcnow
from store import DossierRecord, Store, TaskRecord, TaskStatus

log = structlog.get_logger("dossierflow.sequencer")

# Statuses in which a task has been released and not yet finished.
IN_FLIGHT = (TaskStatus.QUEUED, TaskStatus.RUNNING)


@dataclass(frozen=True)
class DeadLetter:
    """Why the broker dead-lettered a work message (from its x-death header)."""

    reason: str
    queue: str
    count: int


class Sequencer:
    """Applies commands and events to the store and releases one task per dossier."""

    def __init__(
        self,
        store: Store,
        release: Callable[[Envelope], None],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._release_fn = release
        self._now = clock

    # -- entry point ----------------------------------------------------------------
    def handle(self, env: Envelope, dead: DeadLetter | None = None) -> None:
        """Apply one message of a dossier, then release its next task if it is free."""
        dossier = self._store.dossier(env.routing_key) or self._store.ensure_dossier(
            env.office, env.dossier, self._now()
        )
        dossier = self._repair(dossier)
        if dead is not None:
            self._dead_lettered(env, dead, dossier)
        elif env.type is MessageType.SUBMITTED:
            self._accept(env, dossier)
        elif env.type is MessageType.STARTED:
            self._started(env)
        elif env.type is MessageType.DONE:
            self._done(env, dossier)
        elif env.type is MessageType.FAILED:
            self._failed(env, dossier, dict(env.data.get("error") or {}))
        else:
            log.warning("sequencer.unexpected_message", type=env.type.value, task_id=env.task_id)
        self._release_next(dossier)

    # -- commands and events ----------------------------------------------------------
    def _accept(self, env: Envelope, dossier: DossierRecord) -> None:
        task = self._store.task(env.task_id)
        if task is None:
            log.error("sequencer.unknown_task", task_id=env.task_id, key=dossier.key)
            return
        if task.status is not TaskStatus.SUBMITTED:
            if task.seq is not None and task.seq >= dossier.next_seq:
                self._advance_next_seq(dossier, task.seq + 1)
            return  # already accepted: a republished or redelivered command
        while True:
            seq = dossier.next_seq
            holder = self._store.claim_slot(dossier.key, seq, task.id)
            if holder == task.id:
                break
            # A previous owner claimed this slot and died before recording it.
            other = self._store.task(holder)
            if other is not None and other.status is TaskStatus.SUBMITTED:
                self._mark_waiting(other, seq)
            self._advance_next_seq(dossier, seq + 1)
        self._mark_waiting(task, seq)
        self._advance_next_seq(dossier, seq + 1)

    def _mark_waiting(self, task: TaskRecord, seq: int) -> None:
        now = self._now()
        self._store.update_task(
            task.id,
            TaskStatus.WAITING,
            now,
            {"seq": seq, "accepted_at": now},
            only_from=[TaskStatus.SUBMITTED],
        )
        log.debug("task.accepted", **_ctx(task), seq=seq)

    def _advance_next_seq(self, dossier: DossierRecord, value: int) -> None:
        self._store.raise_next_seq(dossier.key, value)
        dossier.next_seq = max(dossier.next_seq, value)

    def _started(self, env: Envelope) -> None:
        attempt = int(env.data.get("attempt", 1))
        fields: dict[str, Any] = {"started_at": env.at, "attempts": attempt}
        if worker := env.data.get("worker"):
            fields["worker"] = str(worker)
        self._store.update_task(
            env.task_id,
            TaskStatus.RUNNING,
            self._now(),
            fields,
            only_from=IN_FLIGHT,
            note=f"attempt {attempt}",
        )

    def _done(self, env: Envelope, dossier: DossierRecord) -> None:
        result = env.data.get("result")
        moved = self._store.update_task(
            env.task_id,
            TaskStatus.DONE,
            self._now(),
            {"finished_at": env.at, "result": result if isinstance(result, dict) else {}},
            only_from=IN_FLIGHT,
        )
        if moved:
            log.debug("task.done", task_id=env.task_id, key=dossier.key)
        if dossier.active == env.task_id:
            task = self._store.task(env.task_id)
            if task is not None and task.status.finished:
                self._finish_active(dossier, task)

    def _failed(self, env: Envelope, dossier: DossierRecord, error: dict[str, Any]) -> None:
        moved = self._store.update_task(
            env.task_id,
            TaskStatus.FAILED,
            self._now(),
            {"finished_at": env.at, "error": error},
            only_from=IN_FLIGHT,
            note=str(error.get("code", "")),
        )
        if moved and dossier.active == env.task_id:
            dossier.blocked = True
            self._store.set_dossier(dossier.key, self._now(), blocked=True)
            log.warning(
                "dossier.blocked", key=dossier.key, task_id=env.task_id, code=error.get("code")
            )

    def _dead_lettered(self, env: Envelope, dead: DeadLetter, dossier: DossierRecord) -> None:
        error = {
            "code": "UNREADABLE_MESSAGE",
            "severity": "red",
            "transient": False,
            "message": f"dead-lettered by {dead.queue}: {dead.reason} after {dead.count}",
            "facts": {"reason": dead.reason},
        }
        self._failed(env, dossier, error)

    # -- release ----------------------------------------------------------------------
    def _repair(self, dossier: DossierRecord) -> DossierRecord:
        """Finish what a sequencer that died mid-message left half done."""
        if dossier.active is None:
            return dossier
        task = self._store.task(dossier.active)
        if task is None or task.status.finished:
            self._finish_active(dossier, task)
        elif task.status is TaskStatus.WAITING:
            self._publish_run(task)  # released but died before the publish was confirmed
        return dossier

    def _finish_active(self, dossier: DossierRecord, task: TaskRecord | None) -> None:
        head = (task.seq + 1) if task is not None and task.seq is not None else dossier.head + 1
        dossier.active, dossier.blocked, dossier.head = None, False, max(dossier.head, head)
        self._store.set_dossier(
            dossier.key, self._now(), active=None, blocked=False, head=dossier.head
        )

    def _release_next(self, dossier: DossierRecord) -> None:
        if dossier.active is not None or dossier.blocked:
            return
        while dossier.head < dossier.next_seq:
            task_id = self._store.slot(dossier.key, dossier.head)
            task = self._store.task(task_id) if task_id else None
            if task is None or task.status.finished:
                dossier.head += 1
                self._store.set_dossier(dossier.key, self._now(), head=dossier.head)
                continue
            # Record the intent before publishing: a successor sees `active` and
            # republishes (an idempotent duplicate) instead of releasing a second task.
            dossier.active = task.id
            self._store.set_dossier(dossier.key, self._now(), active=task.id)
            if task.status is TaskStatus.WAITING:
                self._publish_run(task)
            return

    def _publish_run(self, task: TaskRecord) -> None:
        self._release_fn(
            Envelope(
                type=MessageType.RUN,
                task_id=task.id,
                office=task.office,
                dossier=task.dossier,
                at=self._now(),
                data={"kind": task.kind, "payload": task.payload, "seq": task.seq},
            )
        )
        self._store.update_task(
            task.id,
            TaskStatus.QUEUED,
            self._now(),
            {"queued_at": self._now()},
            only_from=[TaskStatus.WAITING],
        )
        log.debug("task.released", **_ctx(task))


def _ctx(task: TaskRecord) -> dict[str, Any]:
    return {
        "office": task.office,
        "dossier": task.dossier,
        "task_id": task.id,
        "kind": task.kind,
        "attempt": task.attempts,
    }
