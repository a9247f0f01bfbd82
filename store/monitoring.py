"""Monitoring queries: task lists with filters and cursor paging, the office overview.

Every query takes a `Scope` (the office and, for a dossier manager, the dossiers a user may
see) so no caller can forget it. Queries stay within what FerretDB evaluates: no
`$lookup`, `$group` with `$sum` only; the overview joins tasks, dossiers and instructions
in Python. Filter values are typed by the caller (ids, enums, datetimes) and used only as
values, never as query documents.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pymongo.collection import Collection
from pymongo.database import Database

from store.base import Doc, Repository, mapped
from store.mapping import instruction_record, task_record
from store.records import InstructionRecord, TaskRecord
from workers.vocabulary import InstructionStatus, Severity, TaskStatus, severity_of, worst

ID_CHUNK = 500  # ids per `_id: {$in}` read (the test server uses its index up to 900)


WAITING = (TaskStatus.SUBMITTED, TaskStatus.WAITING, TaskStatus.QUEUED, TaskStatus.RETRY_WAIT)
"""Statuses counted as waiting in the overview: not finished, not on a connector."""


@dataclass(frozen=True)
class Scope:
    """What a reader may see: one office (None: every office) and maybe only some dossiers."""

    office: str | None
    dossiers: tuple[str, ...] | None = None

    def query(self) -> Doc:
        """The scope as a filter on documents with `office` and `dossier` fields."""
        query: Doc = {}
        if self.office is not None:
            query["office"] = self.office
        if self.dossiers is not None:
            query["dossier"] = {"$in": list(self.dossiers)}
        return query


@dataclass(frozen=True)
class TaskFilter:
    """Filters of the task list; `needs_attention` is the default: failed or instructed."""

    statuses: tuple[TaskStatus, ...] = ()
    kind: str | None = None
    dossier: str | None = None
    has_instruction: bool | None = None
    severity: Severity | None = None
    submitted_from: datetime | None = None
    submitted_to: datetime | None = None
    needs_attention: bool = False


Cursor = tuple[datetime, str]
"""Position in a task list: (submitted_at, task id) of the last task returned."""


@dataclass(frozen=True)
class DossierSummary:
    """One row of the office overview."""

    office: str
    dossier: str
    stripe: Severity | Literal[""]  # who must act: red support, orange an accountant; "" none
    waiting: int = 0
    running: int = 0
    failed: int = 0
    blocked: bool = False
    open_instructions: int = 0


@dataclass
class _Counts:
    by_status: dict[str, int] = field(default_factory=dict)
    severities: set[Severity] = field(default_factory=set)
    open_instructions: int = 0
    blocked: bool = False


class Monitoring(Repository):
    """Read-only queries of the monitoring API and page."""

    def __init__(self, db: Database[Doc]) -> None:
        super().__init__(db)
        self._tasks: Collection[Doc] = db["tasks"]
        self._dossiers: Collection[Doc] = db["dossiers"]
        self._instructions: Collection[Doc] = db["instructions"]

    def instructed_task_ids(self, scope: Scope, severity: Severity | None = None) -> list[str]:
        """Ids of the tasks with an open instruction (of one severity)."""
        query = {**scope.query(), "status": InstructionStatus.OPEN.value}
        if severity is not None:
            query["severity"] = severity
        with mapped():
            docs = self._instructions.find(query, {"task_id": 1})
            return sorted({str(d["task_id"]) for d in docs if d.get("task_id")})

    def _instruction_clauses(self, scope: Scope, f: TaskFilter) -> list[Doc]:
        if f.has_instruction is None and f.severity is None and not f.needs_attention:
            return []
        ids = self.instructed_task_ids(scope, f.severity)
        clauses: list[Doc] = []
        if f.has_instruction is False:
            clauses.append({"_id": {"$nin": ids}})
        elif f.has_instruction or f.severity is not None:
            clauses.append({"_id": {"$in": ids}})
        if f.needs_attention:
            clauses.append({"$or": [{"status": TaskStatus.FAILED.value}, {"_id": {"$in": ids}}]})
        return clauses

    def _task_query(self, scope: Scope, f: TaskFilter) -> Doc:
        query: Doc = scope.query()
        clauses: list[Doc] = []
        if f.dossier is not None:
            clauses.append({"dossier": f.dossier})
        if f.statuses:
            query["status"] = {"$in": [s.value for s in f.statuses]}
        if f.kind is not None:
            query["kind"] = f.kind
        period: Doc = {}
        if f.submitted_from is not None:
            period["$gte"] = f.submitted_from
        if f.submitted_to is not None:
            period["$lt"] = f.submitted_to
        if period:
            query["submitted_at"] = period
        clauses.extend(self._instruction_clauses(scope, f))
        if clauses:
            query["$and"] = clauses
        return query

    def tasks(
        self, scope: Scope, f: TaskFilter, after: Cursor | None = None, limit: int = 50
    ) -> tuple[list[TaskRecord], Cursor | None]:
        """One page of tasks, newest first, and the cursor of the next page (None: last)."""
        query = self._task_query(scope, f)
        if after is not None:
            at, task_id = after
            page: Doc = {
                "$or": [
                    {"submitted_at": {"$lt": at}},
                    {"submitted_at": at, "_id": {"$lt": task_id}},
                ]
            }
            query = {"$and": [query, page]}
        with mapped():
            cursor = self._tasks.find(query, limit=limit + 1)
            found = [task_record(d) for d in cursor.sort([("submitted_at", -1), ("_id", -1)])]
        more = len(found) > limit
        found = found[:limit]
        return found, ((found[-1].submitted_at, found[-1].id) if more and found else None)

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
        query = scope.query()
        if dossier is not None:
            query = {"$and": [query, {"dossier": dossier}]}
        if status is not None:
            query["status"] = status.value
        if severity is not None:
            query["severity"] = severity
        with mapped():
            cursor = self._instructions.find(query, limit=limit)
            return [instruction_record(d) for d in cursor.sort([("created_at", -1), ("_id", -1)])]

    def open_instructions_of(
        self, scope: Scope, task_ids: list[str]
    ) -> dict[str, InstructionRecord]:
        """The newest open instruction of each listed task: one query for a page of tasks."""
        if not task_ids:
            return {}
        query = {
            **scope.query(),
            "status": InstructionStatus.OPEN.value,
            "task_id": {"$in": task_ids},
        }
        newest: dict[str, InstructionRecord] = {}
        with mapped():
            for d in self._instructions.find(query):
                i = instruction_record(d)
                known = newest.get(i.task_id)
                if known is None or (i.created_at, i.id) > (known.created_at, known.id):
                    newest[i.task_id] = i
        return newest

    def everything(
        self, scope: Scope
    ) -> tuple[list[TaskRecord], list[InstructionRecord], set[tuple[str, str]]]:
        """Every task, every open instruction and the blocked dossiers in scope, in 3 reads.

        For a reader that keeps a copy and filters it itself (the page's snapshot): on a
        server that cannot use the indexes, one scan is cheaper than one per filter.
        """
        open_query = {**scope.query(), "status": InstructionStatus.OPEN.value}
        with mapped():
            tasks = [task_record(d) for d in self._tasks.find(scope.query())]
            instructions = [instruction_record(d) for d in self._instructions.find(open_query)]
            blocked = {
                (str(d["office"]), str(d["dossier"]))
                for d in self._dossiers.find(
                    scope.query(), {"office": 1, "dossier": 1, "blocked": 1}
                )
                if d.get("blocked")
            }
        return tasks, instructions, blocked

    def tasks_by_id(self, ids: list[str]) -> list[TaskRecord]:
        """The tasks with these ids (those that exist), read by `_id` in chunks."""
        found: list[TaskRecord] = []
        with mapped():
            for start in range(0, len(ids), ID_CHUNK):
                chunk = ids[start : start + ID_CHUNK]
                found.extend(task_record(d) for d in self._tasks.find({"_id": {"$in": chunk}}))
        return found

    def open_instructions(self, scope: Scope) -> list[InstructionRecord]:
        """Every open instruction in scope (a small collection: pruned once resolved)."""
        query = {**scope.query(), "status": InstructionStatus.OPEN.value}
        with mapped():
            return [instruction_record(d) for d in self._instructions.find(query)]

    def blocked_among(self, office: str, dossiers: list[str]) -> set[str]:
        """Which of these dossiers of `office` are blocked now, read by `_id`."""
        blocked: set[str] = set()
        keys = [f"{office}.{d}" for d in dossiers]
        with mapped():
            for start in range(0, len(keys), ID_CHUNK):
                query = {"_id": {"$in": keys[start : start + ID_CHUNK]}}
                for d in self._dossiers.find(query, {"dossier": 1, "blocked": 1}):
                    if d.get("blocked"):
                        blocked.add(str(d["dossier"]))
        return blocked

    def overview(self, scope: Scope) -> list[DossierSummary]:
        """Every dossier in scope with its stripe and its waiting, running and failed counts."""
        rows: dict[tuple[str, str], _Counts] = defaultdict(_Counts)
        counted = [*WAITING, TaskStatus.RUNNING, TaskStatus.FAILED]
        match = {**scope.query(), "status": {"$in": [s.value for s in counted]}}
        group = {"_id": {"o": "$office", "d": "$dossier", "s": "$status"}, "n": {"$sum": 1}}
        with mapped():
            for r in self._tasks.aggregate([{"$match": match}, {"$group": group}]):
                key = (str(r["_id"]["o"]), str(r["_id"]["d"]))
                rows[key].by_status[str(r["_id"]["s"])] = int(r["n"])
            for d in self._dossiers.find(scope.query(), {"office": 1, "dossier": 1, "blocked": 1}):
                rows[(str(d["office"]), str(d["dossier"]))].blocked = bool(d.get("blocked"))
            open_query = {**scope.query(), "status": InstructionStatus.OPEN.value}
            for i in self._instructions.find(
                open_query, {"office": 1, "dossier": 1, "severity": 1}
            ):
                counts = rows[(str(i["office"]), str(i["dossier"]))]
                counts.severities.add(severity_of(i.get("severity")) or Severity.RED)
                counts.open_instructions += 1
        return [_summary(office, dossier, c) for (office, dossier), c in sorted(rows.items())]


def _summary(office: str, dossier: str, c: _Counts) -> DossierSummary:
    stripe: Severity | Literal[""] = worst(c.severities) or ""
    return DossierSummary(
        office=office,
        dossier=dossier,
        stripe=stripe,
        waiting=sum(c.by_status.get(s.value, 0) for s in WAITING),
        running=c.by_status.get(TaskStatus.RUNNING.value, 0),
        failed=c.by_status.get(TaskStatus.FAILED.value, 0),
        blocked=c.blocked,
        open_instructions=c.open_instructions,
    )
