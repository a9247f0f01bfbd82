"""What the sequencer does when a task fails: retry later, or block and instruct.

Transient failures (the package did not answer) wait in fixed-delay retry queues while
the dossier keeps its place; when the last delay is used up the task fails with
PACKAGE_UNREACHABLE. A failure for good, and a message no connector can run, blocks
the dossier and creates exactly one instruction per failure: its id is
`<task id>/<failure number>`, so a redelivered failure finds it there already.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import structlog

from broker.messages import RAW_KEEP_BYTES, Envelope, MessageType
from store import DossierRecord, InstructionRecord, InstructionStatus, TaskRecord, TaskStatus
from workers.errors import SEVERITY, ErrorCode

if TYPE_CHECKING:
    from dispatcher.sequencer import Sequencer

log = structlog.get_logger("dossierflow.sequencer")

IN_FLIGHT = (TaskStatus.QUEUED, TaskStatus.RUNNING)


@dataclass(frozen=True)
class DeadLetter:
    """Why the broker dead-lettered a work message (from its x-death header)."""

    reason: str
    queue: str
    count: int
    raw: bytes = b""
    message_id: str = ""


def error_of(code: ErrorCode, message: str, **facts: str) -> dict[str, Any]:
    """A failure as stored on the task and sent in events."""
    return {
        "code": code.value,
        "severity": SEVERITY[code].value,
        "transient": False,
        "message": message,
        "facts": facts,
    }


class FailureHandler:
    """The failure half of the sequencer."""

    def __init__(self, sequencer: Sequencer, retry_delays: tuple[int, ...]) -> None:
        self._seq = sequencer
        self._delays = retry_delays

    def failed(self, env: Envelope, dossier: DossierRecord) -> None:
        """A connector reports a failed attempt."""
        task = self._seq.current(env)
        if task is None:
            return
        if task.status is TaskStatus.FAILED:
            self._instruct(task, dossier)  # a redelivered failure: make sure, create nothing new
            return
        if task.status not in IN_FLIGHT:
            return  # late event of an attempt that no longer matters
        error = dict(env.data.get("error") or {})
        if error.get("transient"):
            if task.retries < len(self._delays):
                self._retry_later(task, error)
                return
            error = error_of(
                ErrorCode.PACKAGE_UNREACHABLE,
                "the accounting package stayed unreachable through every retry",
                attempts=str(task.retries + 1),
            )
        self.fail(task, error, dossier)

    def fail(
        self, task: TaskRecord, error: dict[str, Any], dossier: DossierRecord, raw: bytes = b""
    ) -> None:
        """Fail the task for good, instruct a person and block the dossier."""
        now = self._seq.now()
        failures = task.failures + 1
        moved = self._seq.store.update_task(
            task.id,
            TaskStatus.FAILED,
            now,
            {"finished_at": now, "error": error, "failures": failures},
            only_from=[*IN_FLIGHT, TaskStatus.RETRY_WAIT, TaskStatus.WAITING],
            note=str(error.get("code", "")),
        )
        if not moved:
            return
        task.status, task.error, task.failures = TaskStatus.FAILED, error, failures
        self._instruct(task, dossier, raw)

    def _instruct(self, task: TaskRecord, dossier: DossierRecord, raw: bytes = b"") -> None:
        error = task.error or {}
        code = str(error.get("code", ErrorCode.UNKNOWN_ERROR.value))
        created = self._seq.store.insert_instruction(
            InstructionRecord(
                id=f"{task.id}/{task.failures}",
                task_id=task.id,
                office=task.office,
                dossier=task.dossier,
                kind=task.kind,
                code=code,
                severity=str(error.get("severity", "red")),
                facts={str(k): str(v) for k, v in (error.get("facts") or {}).items()},
                status=InstructionStatus.OPEN,
                created_at=self._seq.now(),
                raw=raw[:RAW_KEEP_BYTES] or None,
            )
        )
        if created:
            log.warning("instruction.created", task_id=task.id, key=dossier.key, code=code)
        if dossier.active in (None, task.id):
            self._seq.block(dossier, task)

    def _retry_later(self, task: TaskRecord, error: dict[str, Any]) -> None:
        retry = task.retries + 1
        delay = self._delays[task.retries]
        now = self._seq.now()
        # Publish the timer first: a successor that gets this failure again publishes a
        # second timer, and `retry_due` ignores whichever comes second.
        self._seq.outbound.retry_later(
            delay,
            Envelope(
                MessageType.RETRY_DUE,
                task.id,
                task.office,
                task.dossier,
                now,
                # The run ties the timer to this release: after a restart it is stale.
                {"retry": retry, "run": task.run},
            ),
        )
        self._seq.store.update_task(
            task.id,
            TaskStatus.RETRY_WAIT,
            now,
            {"retries": retry, "next_attempt_at": now + timedelta(seconds=delay), "error": error},
            only_from=IN_FLIGHT,
            note=f"retry {retry} in {delay} s",
        )

    def retry_due(self, env: Envelope) -> None:
        """A retry timer expired: run the task again if it still waits for this retry."""
        task = self._seq.current(env)
        retry = int(env.data.get("retry", 0))
        if task is None or task.status is not TaskStatus.RETRY_WAIT or task.retries != retry:
            return  # cancelled, restarted meanwhile, or a duplicate timer
        self._seq.publish_run(task, from_status=TaskStatus.RETRY_WAIT)

    def dead_lettered(self, env: Envelope, dead: DeadLetter, dossier: DossierRecord) -> None:
        """A readable work message the broker dead-lettered (rejected or delivery limit)."""
        task = self._seq.store.task(env.task_id)
        if task is None or task.office != env.office or task.dossier != env.dossier:
            self._orphan(env.office, dossier, dead)
            return
        run = env.data.get("run")
        if isinstance(run, int) and run != task.run:
            return  # an earlier release's message: that attempt no longer matters
        if task.status is TaskStatus.FAILED:
            self._instruct(task, dossier)
            return
        if task.status not in IN_FLIGHT:
            return
        why = (
            f"the message made connectors fail {dead.count} times (delivery limit)"
            if dead.reason == "delivery_limit"
            else "no connector could run the message"
        )
        self.fail(
            task,
            error_of(ErrorCode.UNREADABLE_MESSAGE, why, reason=dead.reason),
            dossier,
            dead.raw,
        )

    def unreadable(self, office: str, dossier: DossierRecord, dead: DeadLetter) -> None:
        """A dead-lettered message that is no envelope at all."""
        task = self._seq.store.task(dead.message_id) if dead.message_id else None
        if task is not None and task.office == office and task.dossier == dossier.dossier:
            if task.status in IN_FLIGHT:
                error = error_of(ErrorCode.UNREADABLE_MESSAGE, "unreadable", reason=dead.reason)
                self.fail(task, error, dossier, dead.raw)
            elif task.status is TaskStatus.FAILED:
                self._instruct(task, dossier)
            return
        self._orphan(office, dossier, dead)

    def _orphan(self, office: str, dossier: DossierRecord, dead: DeadLetter) -> None:
        """A bad message tied to no task of ours: support sees it, nothing is blocked."""
        digest = hashlib.sha256(dead.raw + dead.message_id.encode()).hexdigest()[:24]
        created = self._seq.store.insert_instruction(
            InstructionRecord(
                id=f"message/{dossier.key}/{digest}",
                task_id="",
                office=office,
                dossier=dossier.dossier,
                kind="",
                code=ErrorCode.UNREADABLE_MESSAGE.value,
                severity=SEVERITY[ErrorCode.UNREADABLE_MESSAGE].value,
                facts={"reason": dead.reason, "queue": dead.queue},
                status=InstructionStatus.OPEN,
                created_at=self._seq.now(),
                raw=dead.raw[:RAW_KEEP_BYTES] or b"(empty)",
            )
        )
        if created:
            log.warning("instruction.unreadable_message", key=dossier.key, reason=dead.reason)
