"""What the API and the page read, behind access control: one service both front ends use.

Each read takes the user and plain typed arguments and returns store records. The routes
turn them into JSON models, the page into template context; neither reads the store
itself, and neither calls the other's handlers, so either can change its wire format or
its HTML without touching the other. The page passes its in-memory copy of an office (an
`OfficeCopy`, see `snapshot.py`) where it has one, so a page view reads no more than it
did before; the API, which passes none, reads the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from dispatcher.api.auth import Principal
from dispatcher.api.problems import Problem
from store import HistoryEntry, InstructionRecord, OfficeRecord, Store, TaskRecord
from store.monitoring import Cursor, DossierSummary, Monitoring, Scope, TaskFilter
from workers.vocabulary import InstructionStatus, Severity, TaskStatus

DOSSIER_TASKS = 50  # the latest tasks a dossier's view lists


class OfficeCopy(Protocol):
    """An office's tasks held in memory, answering lists as `Monitoring` does."""

    @property
    def instructions(self) -> Mapping[str, InstructionRecord]:
        """The newest open instruction of each task, by task id."""
        ...

    def page(
        self, scope: Scope, f: TaskFilter, after: Cursor | None, limit: int
    ) -> tuple[list[TaskRecord], Cursor | None]:
        """A page of the tasks matching the filter."""
        ...

    def dossiers(self, scope: Scope) -> list[DossierSummary]:
        """The overview's rows a scope may see."""
        ...


@dataclass(frozen=True)
class TaskQuery:
    """The task list's filters as a person gives them.

    None of statuses, has_instruction, severity or show_all: what needs a person (failed
    tasks and tasks with an open instruction).
    """

    statuses: tuple[TaskStatus, ...] = ()
    kind: str | None = None
    dossier: str | None = None
    has_instruction: bool | None = None
    severity: Severity | None = None
    submitted_from: datetime | None = None
    submitted_to: datetime | None = None
    show_all: bool = False

    def filter(self) -> TaskFilter:
        """The store's filter."""
        chosen = self.show_all or self.statuses or self.has_instruction is not None
        return TaskFilter(
            statuses=self.statuses,
            kind=self.kind,
            dossier=self.dossier,
            has_instruction=self.has_instruction,
            severity=self.severity,
            submitted_from=self.submitted_from,
            submitted_to=self.submitted_to,
            needs_attention=not (chosen or self.severity is not None),
        )


@dataclass(frozen=True)
class TaskWithHistory:
    """One task with its history and every instruction it had."""

    task: TaskRecord
    history: list[HistoryEntry]
    instructions: list[InstructionRecord]


@dataclass(frozen=True)
class DossierContents:
    """One dossier: its stripe and counts, latest tasks and open instructions."""

    summary: DossierSummary
    tasks: list[TaskRecord]
    instructions: list[InstructionRecord]


class Reads:
    """The reads of one user, with the access rules applied."""

    def __init__(self, store: Store, monitoring: Monitoring) -> None:
        self._store = store
        self._monitoring = monitoring

    def task(self, who: Principal, task_id: str) -> TaskRecord:
        """A task the user may see; 404 for one that is absent or not theirs alike."""
        task = self._store.tasks.get(task_id)
        if task is None or not who.sees(task.office, task.dossier):
            raise Problem(404, "not-found", f"no task {task_id}")
        return task

    def check_dossier(self, who: Principal, office: str, dossier: str) -> None:
        """404 for a dossier outside the user's scope."""
        if not who.sees(office, dossier):
            raise Problem(404, "not-found", f"no dossier {dossier}")

    def list_scope(self, who: Principal, office: str | None, dossier: str | None = None) -> Scope:
        """What a list may show the user (`office`: support's choice); 404 for a foreign dossier."""
        scope = who.scope(office)
        if dossier is not None and scope.office is not None:
            self.check_dossier(who, scope.office, dossier)
        return scope

    def dossier_scope(self, who: Principal, office: str | None, dossier: str) -> Scope:
        """One dossier of the office, when the user may see it (support names the office)."""
        scope = who.scope(office, need_office=True)
        assert scope.office is not None
        self.check_dossier(who, scope.office, dossier)
        return Scope(scope.office, (dossier,))

    def tasks(
        self,
        scope: Scope,
        f: TaskFilter,
        after: Cursor | None,
        limit: int,
        copy: OfficeCopy | None = None,
    ) -> tuple[list[TaskRecord], Cursor | None]:
        """A page of tasks newest first, and the position after it (None: the last page)."""
        if copy is not None:
            return copy.page(scope, f, after, limit)
        return self._monitoring.tasks(scope, f, after, limit)

    def open_instructions_of(
        self, scope: Scope, tasks: list[TaskRecord], copy: OfficeCopy | None = None
    ) -> Mapping[str, InstructionRecord]:
        """The newest open instruction of each of these tasks, by task id."""
        if copy is not None:
            return copy.instructions
        return self._monitoring.open_instructions_of(scope, [t.id for t in tasks])

    def dossiers(self, scope: Scope, copy: OfficeCopy | None = None) -> list[DossierSummary]:
        """Every dossier in scope with its stripe and its waiting, running and failed counts."""
        if copy is not None:
            return copy.dossiers(scope)
        return self._monitoring.overview(scope)

    def instructions(
        self,
        scope: Scope,
        *,
        dossier: str | None = None,
        status: InstructionStatus | None = InstructionStatus.OPEN,
        severity: Severity | None = None,
        limit: int = 200,
    ) -> list[InstructionRecord]:
        """Instructions in scope, newest first."""
        return self._monitoring.instructions(
            scope, dossier=dossier, status=status, severity=severity, limit=limit
        )

    def history(self, task: TaskRecord) -> list[HistoryEntry]:
        """Every step of a task's life (a scan on a server without indexes)."""
        return self._store.tasks.history(task.id)

    def task_with_history(self, who: Principal, task_id: str) -> TaskWithHistory:
        """A task the user may see, with its history and every instruction it had."""
        task = self.task(who, task_id)
        instructions = self._store.instructions.find(task_id=task.id)
        return TaskWithHistory(task, self._store.tasks.history(task.id), instructions)

    def dossier_contents(self, who: Principal, office: str | None, dossier: str) -> DossierContents:
        """A dossier the user may see: its stripe and counts, latest tasks, open instructions."""
        scope = who.scope(office, need_office=True)
        mine = self.dossier_scope(who, office, dossier)
        # Counted over this dossier only: the office's overview costs a scan of all its tasks.
        rows = self._monitoring.overview(mine)
        if not rows:
            raise Problem(404, "not-found", f"no dossier {dossier}")
        tasks, _ = self._monitoring.tasks(scope, TaskFilter(dossier=dossier), None, DOSSIER_TASKS)
        instructions = self._monitoring.instructions(scope, dossier=dossier)
        return DossierContents(rows[0], tasks, instructions)

    def office(self, name: str) -> OfficeRecord | None:
        """An office's record (its language and time zone)."""
        return self._store.offices.get(name)

    def offices(self) -> list[OfficeRecord]:
        """Every office, for support to choose one."""
        return self._store.offices.all()
