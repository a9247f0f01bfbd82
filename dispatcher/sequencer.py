"""The sequencer: the per-dossier state machine and the only writer of task and dossier state.

Every command and event of a dossier arrives in that dossier's control partition and is
handled here one after the other. Each handler is idempotent and every step is written
before the next one depends on it, so a sequencer killed at any point and replaced by a
standby (which gets the unacknowledged message again) finishes the work without losing
or duplicating a release: `_repair` completes whatever the previous owner left half done.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

import structlog

from broker.messages import Envelope, MessageType, utcnow
from dispatcher.failures import DeadLetter, FailureHandler
from dispatcher.steering import ActionHandler
from store import DossierRecord, Store, TaskRecord, TaskStatus

log = structlog.get_logger("dossierflow.sequencer")

# Statuses in which a task has been released and not yet finished.
IN_FLIGHT = (TaskStatus.QUEUED, TaskStatus.RUNNING)


class Outbound(Protocol):
    """Where the sequencer sends work and timers."""

    def run(self, env: Envelope) -> None:
        """Release a task to its office's work queue (confirmed)."""

    def retry_later(self, delay_s: int, env: Envelope) -> None:
        """Park a retry timer that comes back to the dossier's partition after `delay_s`."""


class Sequencer:
    """Applies commands and events to the store and releases one task per dossier."""

    def __init__(
        self,
        store: Store,
        outbound: Outbound,
        retry_delays: Sequence[int] = (10, 60, 300, 1800),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.outbound = outbound
        self.now = clock
        self.failures = FailureHandler(self, tuple(retry_delays))
        self.actions = ActionHandler(self)

    # -- entry point ----------------------------------------------------------------
    def handle(self, env: Envelope, dead: DeadLetter | None = None) -> None:
        """Apply one message of a dossier, then release its next task if it is free."""
        dossier = self.store.dossier(env.routing_key) or self.store.ensure_dossier(
            env.office, env.dossier, self.now()
        )
        self._repair(dossier)
        if dead is not None:
            self.failures.dead_lettered(env, dead, dossier)
        elif env.type is MessageType.SUBMITTED:
            self._accept(env, dossier)
        elif env.type is MessageType.STARTED:
            self._started(env)
        elif env.type is MessageType.DONE:
            self._done(env, dossier)
        elif env.type is MessageType.FAILED:
            self.failures.failed(env, dossier)
        elif env.type is MessageType.RETRY_DUE:
            self.failures.retry_due(env)
        elif env.type in (MessageType.RESTART, MessageType.CANCEL, MessageType.RESOLVE):
            self.actions.apply(env, dossier)
        else:
            log.warning("sequencer.unexpected_message", type=env.type.value, task_id=env.task_id)
        self.release_next(dossier)

    def handle_unreadable(self, office: str, dossier_id: str, dead: DeadLetter) -> None:
        """A dead-lettered message whose bytes are no envelope: record it for support."""
        dossier = self.store.dossier(f"{office}.{dossier_id}") or self.store.ensure_dossier(
            office, dossier_id, self.now()
        )
        self.failures.unreadable(office, dossier, dead)
        self.release_next(dossier)

    # -- commands and events ----------------------------------------------------------
    def _accept(self, env: Envelope, dossier: DossierRecord) -> None:
        task = self.store.task(env.task_id)
        if task is None:
            log.error("sequencer.unknown_task", task_id=env.task_id, key=dossier.key)
            return
        if task.status is not TaskStatus.SUBMITTED:
            if task.seq is not None and task.seq >= dossier.next_seq:
                self._advance_next_seq(dossier, task.seq + 1)
            return  # already accepted: a republished or redelivered command
        while True:
            seq = dossier.next_seq
            holder = self.store.claim_slot(dossier.key, seq, task.id)
            if holder == task.id:
                break
            # A previous owner claimed this slot and died before recording it.
            other = self.store.task(holder)
            if other is not None and other.status is TaskStatus.SUBMITTED:
                self._mark_waiting(other, seq)
            self._advance_next_seq(dossier, seq + 1)
        self._mark_waiting(task, seq)
        self._advance_next_seq(dossier, seq + 1)

    def _mark_waiting(self, task: TaskRecord, seq: int) -> None:
        now = self.now()
        self.store.update_task(
            task.id,
            TaskStatus.WAITING,
            now,
            {"seq": seq, "accepted_at": now},
            only_from=[TaskStatus.SUBMITTED],
            known=task.status,
        )

    def _advance_next_seq(self, dossier: DossierRecord, value: int) -> None:
        self.store.raise_next_seq(dossier.key, value)
        dossier.next_seq = max(dossier.next_seq, value)

    def current(self, env: Envelope) -> TaskRecord | None:
        """The task an event is about, if the event is about its current release.

        An event of another office or dossier than the task's (a misbehaving connector),
        or of an earlier release (a duplicate run after a crash, reporting after a
        restart), must not change the task: it would be a second writer or a stale fact.
        """
        task = self.store.task(env.task_id)
        if task is None or (task.office, task.dossier) != (env.office, env.dossier):
            log.error("sequencer.foreign_event", task_id=env.task_id, key=env.routing_key)
            return None
        run = env.data.get("run")
        if isinstance(run, int) and run != task.run:
            log.info("sequencer.stale_event", task_id=task.id, run=run, current=task.run)
            return None
        return task

    def _started(self, env: Envelope) -> None:
        task = self.current(env)
        if task is None:
            return
        attempt = int(env.data.get("attempt", 1))
        fields: dict[str, Any] = {"started_at": env.at, "attempts": attempt}
        if worker := env.data.get("worker"):
            fields["worker"] = str(worker)
        self.store.update_task(
            env.task_id,
            TaskStatus.RUNNING,
            self.now(),
            fields,
            only_from=IN_FLIGHT,
            note=f"attempt {attempt}",
            known=task.status,
        )

    def _done(self, env: Envelope, dossier: DossierRecord) -> None:
        task = self.current(env)
        if task is None:
            return
        result = env.data.get("result")
        if self.store.update_task(
            env.task_id,
            TaskStatus.DONE,
            self.now(),
            {"finished_at": env.at, "result": result if isinstance(result, dict) else {}},
            only_from=IN_FLIGHT,
            known=task.status,
        ):
            task.status = TaskStatus.DONE
        if dossier.active == task.id and task.status.finished:
            self.finish_active(dossier, task)

    # -- release ----------------------------------------------------------------------
    def _repair(self, dossier: DossierRecord) -> None:
        """Finish what a sequencer that died mid-message left half done."""
        if dossier.active is None:
            return
        task = self.store.task(dossier.active)
        if task is None or task.status.finished:
            self.finish_active(dossier, task)
        elif task.status is TaskStatus.WAITING:
            self.publish_run(task)  # released but died before the publish was confirmed
        elif task.status is TaskStatus.FAILED and not dossier.blocked:
            self.block(dossier, task)

    def finish_active(self, dossier: DossierRecord, task: TaskRecord | None) -> None:
        """The active task is over: unblock the dossier and move its head past it."""
        head = (task.seq + 1) if task is not None and task.seq is not None else dossier.head + 1
        dossier.active, dossier.blocked, dossier.head = None, False, max(dossier.head, head)
        self.store.set_dossier(
            dossier.key, self.now(), active=None, blocked=False, head=dossier.head
        )

    def block(self, dossier: DossierRecord, task: TaskRecord) -> None:
        """Nothing more of this dossier runs until its failed task is acted on."""
        dossier.active, dossier.blocked = task.id, True
        self.store.set_dossier(dossier.key, self.now(), active=task.id, blocked=True)
        log.warning("dossier.blocked", key=dossier.key, task_id=task.id)

    def release_next(self, dossier: DossierRecord) -> None:
        """Release the dossier's next waiting task unless one is active."""
        if dossier.active is not None or dossier.blocked:
            return
        while dossier.head < dossier.next_seq:
            task_id = self.store.slot(dossier.key, dossier.head)
            task = self.store.task(task_id) if task_id else None
            if task is None or task.status.finished:
                dossier.head += 1
                self.store.set_dossier(dossier.key, self.now(), head=dossier.head)
                continue
            # Record the intent before publishing: a successor sees `active` and
            # republishes (an idempotent duplicate) instead of releasing a second task.
            dossier.active = task.id
            self.store.set_dossier(dossier.key, self.now(), active=task.id)
            if task.status is TaskStatus.WAITING:
                self.publish_run(task)
            return

    def publish_run(self, task: TaskRecord, from_status: TaskStatus = TaskStatus.WAITING) -> None:
        """Send the task to its office's work queue, then mark it queued (a new release)."""
        run = task.run + 1
        self.outbound.run(
            Envelope(
                type=MessageType.RUN,
                task_id=task.id,
                office=task.office,
                dossier=task.dossier,
                at=self.now(),
                data={"kind": task.kind, "payload": task.payload, "seq": task.seq, "run": run},
            )
        )
        self.store.update_task(
            task.id,
            TaskStatus.QUEUED,
            self.now(),
            {"queued_at": self.now(), "next_attempt_at": None, "run": run},
            only_from=[from_status],
            known=task.status,
        )
        log.debug("task.released", **task_context(task))


def task_context(task: TaskRecord) -> dict[str, Any]:
    """The fields every log line about a task carries."""
    return {
        "office": task.office,
        "dossier": task.dossier,
        "task_id": task.id,
        "kind": task.kind,
        "attempt": task.attempts,
    }
