"""What the page shows of tasks: rows with their instruction, allowed actions and fields.

Reads go through the shared `reads.Reads`, never through the HTTP API's route functions,
so the API can change its wire format without touching the page.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from dispatcher.api.auth import Principal
from dispatcher.api.corrections import Field, fields_for
from dispatcher.api.i18n import Speaker
from dispatcher.api.problems import Problem
from dispatcher.api.service import allowed
from store import InstructionRecord, Role, TaskRecord
from store.monitoring import Cursor
from workers.texts import InstructionText
from workers.vocabulary import ActionType, Severity, TaskStatus

PAGE_SIZE = 50


@dataclass(frozen=True)
class Row:
    """One task as a list shows it: status left, instruction and actions right."""

    task: TaskRecord
    severity: Severity | Literal[""]  # "" when no open instruction and not failed
    instruction: InstructionRecord | None
    text: InstructionText | None
    can_restart: bool
    can_cancel: bool
    can_resolve: bool
    fields: list[Field] = field(default_factory=list)

    @property
    def support_acts(self) -> bool:
        """A red failure: support acts, the office waits."""
        return self.severity == Severity.RED


def row_of(
    who: Principal,
    task: TaskRecord,
    instruction: InstructionRecord | None,
    text: InstructionText | None,
) -> Row:
    """A row with what this user may do to the task."""
    error = task.error or {}
    severity: Severity | Literal[""] = instruction.severity if instruction else task.severity or ""
    if not instruction and task.status is not TaskStatus.FAILED:
        severity = ""
    can_restart = allowed(who, task, ActionType.RESTART)
    fields = fields_for(task.kind, error.get("code"), task.payload) if can_restart else []
    return Row(
        task=task,
        severity=severity,
        instruction=instruction,
        text=text,
        can_restart=can_restart,
        can_cancel=allowed(who, task, ActionType.CANCEL),
        can_resolve=who.role is Role.SUPPORT and allowed(who, task, ActionType.RESOLVE),
        fields=fields,
    )


def rows_of(
    who: Principal,
    tasks: list[TaskRecord],
    instructions: Mapping[str, InstructionRecord],
    speaker: Speaker,
) -> list[Row]:
    """Rows of a page of tasks, given their open instructions by task id."""
    rows = []
    for task in tasks:
        instruction = instructions.get(task.id)
        text = speaker.instruction(instruction.code, instruction.facts) if instruction else None
        rows.append(row_of(who, task, instruction, text))
    return rows


def encode_cursor(cursor: Cursor | None) -> str | None:
    """An opaque position in a list, for the URL."""
    if cursor is None:
        return None
    raw = json.dumps([cursor[0].isoformat(), cursor[1]]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str | None) -> Cursor | None:
    """The position a cursor of this page stands for; 422 for anything else."""
    if not text:
        return None
    try:
        raw = base64.urlsafe_b64decode(text[:300] + "=" * (-len(text[:300]) % 4))
        at, task_id = json.loads(raw)
        return datetime.fromisoformat(at), str(task_id)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise Problem(422, "invalid-request", "the page position is not valid") from exc
