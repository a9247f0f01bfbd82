"""A dossier's state as its owner keeps it, and the effects of the rules (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from workers.vocabulary import ActionStatus, ActionType, ErrorCode, Severity, TaskStatus

# Where a person may act, per action (the client checks the same rule up front).
ACTIONABLE: Mapping[ActionType, tuple[TaskStatus, ...]] = {
    ActionType.RESTART: (TaskStatus.FAILED, TaskStatus.RETRY_WAIT),
    ActionType.CANCEL: (TaskStatus.WAITING, TaskStatus.FAILED, TaskStatus.RETRY_WAIT),
    ActionType.RESOLVE: (TaskStatus.FAILED,),
}
FINAL = {ActionType.CANCEL: TaskStatus.CANCELLED, ActionType.RESOLVE: TaskStatus.SKIPPED}


@dataclass
class OpenTask:
    """An accepted task that has not finished, as its owner keeps it."""

    id: str
    kind: str
    payload: dict[str, Any]
    seq: int
    status: TaskStatus = TaskStatus.WAITING
    run: int = 0  # releases so far; events of an earlier release are stale
    retries: int = 0
    failures: int = 0
    last_action: str | None = None
    attempts: int = 0  # the latest attempt reported started in this run
    decided: set[str] = field(default_factory=set)  # actions decided on it (applied or refused)
    dead: set[str] = field(default_factory=set)  # digests of unreadable messages handled
    # When this owner last published its release, confirmed (memory only; None: not by
    # this owner). Set to the batch's time by the rules, to the confirm's by the owner.
    published: datetime | None = field(default=None, compare=False)


@dataclass
class Dossier:
    """One dossier's sequencing state: its open tasks in submission order."""

    office: str
    dossier: str
    next_seq: int = 0
    tasks: dict[str, OpenTask] = field(default_factory=dict)  # ordered by seq
    # What its stored document last said for readers (busy, blocked, blocking task);
    # None until it is written. The document is rewritten only when this changes.
    saved: tuple[bool, bool, str | None] | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        """The dossier key `office.dossier`."""
        return f"{self.office}.{self.dossier}"

    @property
    def shape(self) -> tuple[bool, bool, str | None]:
        """What readers of the dossier document care about: busy, blocked, blocking task."""
        return bool(self.tasks), self.blocked, self.active if self.blocked else None

    @property
    def head(self) -> OpenTask | None:
        """The open task with the lowest sequence number: the only one that may run."""
        return next(iter(self.tasks.values()), None)

    @property
    def blocked(self) -> bool:
        """Whether a failed task waits for a person."""
        head = self.head
        return head is not None and head.status is TaskStatus.FAILED

    @property
    def active(self) -> str | None:
        """The released (or failed) head, if any."""
        head = self.head
        return head.id if head is not None and head.status is not TaskStatus.WAITING else None


# -- effects ---------------------------------------------------------------------------
@dataclass
class TaskChange:
    """Fields of a task to set, and the history entries of its transitions."""

    task_id: str
    fields: dict[str, Any]
    history: list[tuple[str, datetime, TaskStatus, str]]  # (entry id, at, status, note)


@dataclass(frozen=True)
class Release:
    """Publish a task to its office's work queue."""

    task: OpenTask
    run: int


@dataclass(frozen=True)
class Timer:
    """Park a retry timer that comes back to the dossier after `delay_s`."""

    task_id: str
    delay_s: int
    retry: int
    run: int


@dataclass(frozen=True)
class Instruct:
    """Create an instruction (its id makes a second insert a no-op)."""

    id: str
    task_id: str
    kind: str
    code: ErrorCode
    severity: Severity
    facts: dict[str, str]
    raw: bytes | None = None


@dataclass(frozen=True)
class CloseInstructions:
    """Resolve the open instructions of a task (ids `<task>/1..failures`)."""

    task_id: str
    failures: int
    resolution: str


@dataclass(frozen=True)
class Decide:
    """Record the outcome of an action (only the first decision counts)."""

    action_id: str
    status: ActionStatus
    reason: str = ""


Effect = TaskChange | Release | Timer | Instruct | CloseInstructions | Decide


@dataclass
class Rules:
    """The deployment's choices the rules depend on."""

    retry_delays: Sequence[int] = (10, 60, 300, 1800)
