"""Request and response bodies of the HTTP API; requests reject unknown fields."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from broker.messages import ID_FORM, ID_PATTERN
from dispatcher.api.problems import Problem
from store import ActionRecord, HistoryEntry, InstructionRecord, TaskRecord
from store.monitoring import Cursor, DossierSummary
from workers.texts import instruction_text

Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
KindName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_.]{1,64}$")]


class Request(BaseModel):
    """Base of request bodies: unknown fields are an error."""

    model_config = ConfigDict(extra="forbid")


class SubmitRequest(Request):
    """A task to submit; the office is the token's."""

    dossier: Id
    kind: KindName
    payload: dict[str, Any]


class RestartRequest(Request):
    """Restart, optionally with a corrected payload."""

    payload: dict[str, Any] | None = None


class InstructionOut(BaseModel):
    """An instruction with its text in the reader's language."""

    id: str
    task_id: str
    office: str
    dossier: str
    kind: str
    code: str
    severity: str
    status: str
    created_at: datetime
    resolved_at: datetime | None
    title: str
    action: str

    @classmethod
    def of(cls, i: InstructionRecord, language: str) -> InstructionOut:
        """From a record."""
        text = instruction_text(i.code, i.facts, language)
        return cls(
            id=i.id, task_id=i.task_id, office=i.office, dossier=i.dossier, kind=i.kind,
            code=i.code, severity=i.severity, status=i.status.value, created_at=i.created_at,
            resolved_at=i.resolved_at, title=text.title, action=text.action,
        )  # fmt: skip


class TaskOut(BaseModel):
    """A task in a list."""

    id: str
    office: str
    dossier: str
    kind: str
    status: str
    submitted_at: datetime
    finished_at: datetime | None
    attempts: int
    error_code: str | None
    severity: str | None

    @classmethod
    def of(cls, t: TaskRecord) -> TaskOut:
        """From a record."""
        error = t.error or {}
        return cls(
            id=t.id, office=t.office, dossier=t.dossier, kind=t.kind, status=t.status.value,
            submitted_at=t.submitted_at, finished_at=t.finished_at, attempts=t.attempts,
            error_code=error.get("code"), severity=error.get("severity"),
        )  # fmt: skip


class HistoryOut(BaseModel):
    """One step of a task's life."""

    at: datetime
    status: str
    note: str

    @classmethod
    def of(cls, h: HistoryEntry) -> HistoryOut:
        """From a record."""
        return cls(at=h.at, status=h.status.value, note=h.note)


class TaskDetail(TaskOut):
    """A task with its payload, history and instructions."""

    payload: dict[str, Any]
    result: dict[str, Any] | None
    history: list[HistoryOut]
    instructions: list[InstructionOut]


class TaskPage(BaseModel):
    """A page of tasks; pass `next_cursor` as `cursor` for the next one."""

    items: list[TaskOut]
    next_cursor: str | None


class DossierRow(BaseModel):
    """A dossier in the overview: its stripe and counts."""

    office: str
    dossier: str
    stripe: str = Field(description="red: support acts; orange: the accountant acts; empty")
    waiting: int
    running: int
    failed: int
    blocked: bool
    open_instructions: int

    @classmethod
    def of(cls, s: DossierSummary) -> DossierRow:
        """From a summary."""
        return cls(**s.__dict__)


class Overview(BaseModel):
    """Every dossier of an office with its stripe."""

    office: str
    dossiers: list[DossierRow]


class DossierView(BaseModel):
    """One dossier: stripe, counts, recent tasks and open instructions."""

    summary: DossierRow
    tasks: list[TaskOut]
    instructions: list[InstructionOut]


class ActionOut(BaseModel):
    """A requested action and the sequencer's decision (pending until it is taken)."""

    id: str
    task_id: str
    type: str
    status: str
    reason: str

    @classmethod
    def of(cls, a: ActionRecord) -> ActionOut:
        """From a record."""
        return cls(
            id=a.id, task_id=a.task_id, type=a.type.value, status=a.status.value, reason=a.reason
        )


CURSOR_PATTERN = rf"^[0-9]{{1,16}}\.{ID_FORM}$"
"""Every string of this form is a position (so any cursor the schema allows is answered)."""
_CURSOR = re.compile(CURSOR_PATTERN.replace("$", r"\Z"))
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def encode_cursor(cursor: Cursor | None) -> str | None:
    """An opaque cursor: the position after the last task of a page."""
    if cursor is None:
        return None
    at, task_id = cursor
    at = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return f"{(at - _EPOCH) // timedelta(microseconds=1)}.{task_id}"


def decode_cursor(text: str | None) -> Cursor | None:
    """The position a cursor stands for; 422 for a string not of the cursor's form."""
    if not text:
        return None
    if not _CURSOR.match(text):
        raise Problem(422, "invalid-request", "cursor is not one this API gave")
    micros, _, task_id = text.partition(".")
    return _EPOCH + timedelta(microseconds=int(micros)), task_id
