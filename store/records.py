"""Records of the store: dataclasses and str enums, no I/O.

The statuses and severities they hold are the shared vocabulary (`workers.vocabulary`),
the one module of an upper layer the store may import.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from workers.vocabulary import (
    ActionStatus,
    ActionType,
    InstructionStatus,
    Severity,
    TaskStatus,
    severity_of,
)


@dataclass
class ActionRecord:
    """A requested action; inserted by the requester, decided by the sequencer."""

    id: str
    task_id: str
    type: ActionType
    requested_by: str
    requested_at: datetime
    status: ActionStatus = ActionStatus.PENDING
    payload: dict[str, Any] | None = None
    reason: str = ""
    decided_at: datetime | None = None


class Role(StrEnum):
    """What a user may see and do."""

    ADMIN = "admin"
    DOSSIER_MANAGER = "dossier_manager"
    SUPPORT = "support"
    PLATFORM = "platform"


@dataclass(frozen=True)
class HistoryEntry:
    """One step of a task's life."""

    at: datetime
    status: TaskStatus
    note: str = ""


@dataclass
class TaskRecord:
    """A task as stored; `_id` is the task id."""

    id: str
    office: str
    dossier: str
    kind: str
    payload: dict[str, Any]
    status: TaskStatus
    submitted_at: datetime
    seq: int | None = None
    accepted_at: datetime | None = None
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: int = 0
    worker: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    retries: int = 0  # delayed retries used
    failures: int = 0  # times it failed for good (numbers its instructions)
    next_attempt_at: datetime | None = None
    coalesce_key: str | None = None
    last_action: str | None = None  # the action that last changed it (makes applying idempotent)
    run: int = 0  # releases so far; events of an earlier release are stale

    @property
    def key(self) -> str:
        """The dossier key `office.dossier`."""
        return f"{self.office}.{self.dossier}"

    @property
    def severity(self) -> Severity | None:
        """Who must act on its failure, as its stored error says; None without one."""
        return severity_of((self.error or {}).get("severity"))


@dataclass
class DossierRecord:
    """A dossier's sequencing state, written only by the sequencer; `_id` is its key.

    Tasks get consecutive sequence numbers from `next_seq`; `head` is the sequence of the
    front task (running, blocking or next to release); `active` is the task released and
    not yet finished, or the failed task that blocks the dossier.
    """

    key: str
    office: str
    dossier: str
    next_seq: int = 0
    head: int = 0
    active: str | None = None
    blocked: bool = False
    updated_at: datetime | None = None


@dataclass(frozen=True)
class OfficeRecord:
    """A tenant: an accountancy office."""

    id: str
    name: str
    timezone: str = "Europe/Brussels"
    language: str = "nl"
    contact: str = ""  # the office's contact e-mail for ops; "" = none given


@dataclass(frozen=True)
class DossierProfile:
    """What people call a dossier and its code in the accounting package (not its state)."""

    office: str
    id: str
    name: str
    code: str


@dataclass(frozen=True)
class UserRecord:
    """A person or machine acting on one office (support: on all)."""

    id: str
    office: str | None
    role: Role
    email: str = ""
    language: str = ""  # "" = not chosen: the page follows the browser, then the office
    dossiers: tuple[str, ...] = ()
    disabled: bool = False  # `dossierflow users disable`: no token, no session works


@dataclass
class InstructionRecord:
    """What a person must do so a failed task can run again; written by the sequencer.

    `id` is `<task id>/<failure number>`, so a redelivered failure cannot create a second
    instruction. `task_id` is empty for a message that named no known task. Texts are
    rendered from `code` and `facts` in the reader's language (nl, fr, en).
    """

    id: str
    task_id: str
    office: str
    dossier: str
    kind: str
    code: str
    severity: Severity  # orange: the accountant acts; red: support acts
    facts: dict[str, str]
    status: InstructionStatus
    created_at: datetime
    resolved_at: datetime | None = None
    resolution: str = ""
    raw: bytes | None = None  # an unreadable message, truncated to a bound
