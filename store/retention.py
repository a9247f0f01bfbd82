"""Retention: what may be deleted, and deleting it in bounded batches by `_id`.

Finished tasks (done, cancelled, skipped) leave the store with their history (kept in
the task document), their resolved instructions and the sent mails about those, once
older than the cutoff. Deletes are always `delete_many` with one `_id $in` filter of at
most `batch` ids: a single statement, whatever the server (FerretDB v1 wedges on write
commands of 100 or more statements).

What is never deleted:
- anything of a blocked dossier (its failed task and every task and instruction of it);
- a task that is not finished: submitted, waiting, queued, running, retry_wait, failed;
- a task at or after its dossier's stored `head` (the dossier document is rewritten only
  when its readers' view changes: after a crash it may count from an older task, and
  the owner then learns how far numbering went from the tasks themselves);
- an open instruction, and a mail about one (its outbox key stops it being mailed again);
- a pending mail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pymongo.collection import Collection
from pymongo.database import Database

from store.base import Doc, Repository, mapped
from store.outbox import OUTBOX, OutboxStatus
from workers.vocabulary import InstructionStatus, TaskStatus

FINISHED = tuple(s.value for s in TaskStatus if s.finished)
# Mails that are over: accepted by SMTP, refused for good, or a marker of a decision.
MAILS_OVER = (OutboxStatus.SENT.value, OutboxStatus.FAILED.value, OutboxStatus.MARKER.value)
# Outbox kinds whose `ref` is an instruction id: kept while that instruction is open.
ABOUT_INSTRUCTION = ("instruction", "instruction_fanout")
TASK_FIELDS = {"office": 1, "dossier": 1, "seq": 1, "failures": 1, "status": 1}


@dataclass
class PruneReport:
    """What a pass deleted (or, in a dry run, would delete)."""

    tasks: int = 0
    instructions: int = 0
    mails: int = 0
    batches: list[int] = field(default_factory=list)  # ids per delete command, in order
    complete: bool = True  # False: the pass stopped at its bound; more is left

    def as_dict(self) -> dict[str, Any]:
        """For logs and JSON output."""
        return {
            "tasks": self.tasks,
            "instructions": self.instructions,
            "mails": self.mails,
            "deletes": len(self.batches),
            "largest_delete": max(self.batches, default=0),
            "complete": self.complete,
        }


# -- the rules (pure) --------------------------------------------------------------------
def prunable_tasks(tasks: Iterable[Mapping[str, Any]], dossiers: Mapping[str, Doc]) -> list[Doc]:
    """The finished tasks that may go, given their dossiers' documents by key."""
    keep: list[Doc] = []
    for task in tasks:
        if task.get("status") not in FINISHED or task.get("seq") is None:
            continue
        doc = dossiers.get(f"{task['office']}.{task['dossier']}")
        if doc is None or doc.get("blocked"):
            continue  # a dossier never written is an odd state: leave it to a person
        head = doc.get("head")
        if head is None or int(task["seq"]) >= int(head):
            continue
        keep.append(dict(task))
    return keep


def instruction_ids(tasks: Iterable[Mapping[str, Any]]) -> list[str]:
    """The ids of the instructions of some tasks: `<task id>/<failure number>`."""
    return [f"{t['_id']}/{n}" for t in tasks for n in range(1, int(t.get("failures") or 0) + 1)]


def prunable_mails(mails: Iterable[Mapping[str, Any]], open_instructions: set[str]) -> list[str]:
    """Ids of mails that are over and not about an instruction still open."""
    return [
        str(m["_id"])
        for m in mails
        if m.get("status") in MAILS_OVER
        and not (m.get("kind") in ABOUT_INSTRUCTION and m.get("ref") in open_instructions)
    ]


def chunks(ids: Sequence[str], size: int) -> list[list[str]]:
    """Ids in lists of at most `size`."""
    return [list(ids[i : i + size]) for i in range(0, len(ids), size)]


# -- the store side -----------------------------------------------------------------------
class Retention(Repository):
    """Finds what is older than a cutoff and deletes it by `_id`, `batch` ids at a time.

    Finding old finished work reads the tasks by status and finish time (an index on
    MongoDB; a scan on FerretDB), at most `scan` documents per pass and only their ids
    and ordering fields; everything after that goes by `_id`. A pass calls `pause`
    between deletes so the writers of the hot path keep the database, and stops when
    `pause` returns False (the process is stopping or the pass is out of time).
    """

    def __init__(self, db: Database[Doc], batch: int = 500, scan: int = 10_000) -> None:
        if not 1 <= batch <= 1000:
            raise ValueError("a retention batch holds 1 to 1000 ids")
        super().__init__(db)
        self._tasks: Collection[Doc] = db["tasks"]
        self._dossiers: Collection[Doc] = db["dossiers"]
        self._instructions: Collection[Doc] = db["instructions"]
        self._mails: Collection[Doc] = db[OUTBOX]
        self._batch = batch
        self._scan = scan
        # Per collection, where the next pass goes on when one stopped at `scan` documents
        # (those it read were kept: a long-blocked dossier must not hide the rest).
        self._after: dict[str, tuple[datetime, str]] = {}

    def ensure_indexes(self) -> None:
        """The indexes the candidate reads use on MongoDB (idempotent)."""
        with mapped():
            self._tasks.create_index([("status", 1), ("finished_at", 1)], name="status_finished")
            self._instructions.create_index(
                [("status", 1), ("resolved_at", 1)], name="status_resolved"
            )

    def prune(
        self, cutoff: datetime, pause: Callable[[], bool] = lambda: True, *, dry_run: bool = False
    ) -> PruneReport:
        """Delete what finished before `cutoff`; with `dry_run`, only count it."""
        report = PruneReport()
        steps: list[tuple[Collection[Doc], list[str], Doc, str]] = []
        tasks = self._task_candidates(cutoff)
        # A task's instructions go first: a pass cut short leaves a task without its
        # resolved instructions (the next pass deletes it), never an instruction whose
        # task is gone for good.
        for part in chunks([str(t["_id"]) for t in tasks], self._batch):
            owned = instruction_ids([t for t in tasks if t["_id"] in set(part)])
            for ids in chunks(owned, self._batch):
                steps.append((self._instructions, ids, _resolved(), "instructions"))
            steps.append((self._tasks, part, {"status": {"$in": list(FINISHED)}}, "tasks"))
        for ids in chunks(self._orphan_instructions(cutoff), self._batch):
            steps.append((self._instructions, ids, _resolved(), "instructions"))
        for ids in chunks(self._mail_candidates(cutoff), self._batch):
            steps.append((self._mails, ids, {"status": {"$in": list(MAILS_OVER)}}, "mails"))
        for n, (coll, ids, guard, what) in enumerate(steps):
            if n and not dry_run and not pause():
                # What this pass read and did not delete yet is read again from the start.
                self._after.clear()
                report.complete = False
                break
            deleted = len(ids) if dry_run else self._delete(coll, ids, guard)
            report.batches.append(len(ids))
            setattr(report, what, getattr(report, what) + deleted)
        if self._after:
            report.complete = False
        return report

    def _delete(self, coll: Collection[Doc], ids: list[str], guard: Doc) -> int:
        # The guard re-checks, in the same statement, what the ids were chosen for.
        with mapped():
            return coll.delete_many({"_id": {"$in": ids}, **guard}).deleted_count

    def _window(
        self, coll: Collection[Doc], query: Doc, at: str, cutoff: datetime, fields: Doc
    ) -> list[Doc]:
        """Up to `scan` documents matching `query` with `at` before the cutoff, oldest first.

        Goes on after where the previous pass stopped reading (by `at`, then `_id`).
        """
        span: Doc = {**query, at: {"$lt": cutoff}}
        after = self._after.pop(coll.name, None)
        if after is not None:
            since, last = after
            later: Doc = {"$or": [{at: {"$gt": since}}, {at: since, "_id": {"$gt": last}}]}
            span = {"$and": [span, later]}
        with mapped():
            cursor = coll.find(span, {**fields, at: 1}, limit=self._scan)
            found = list(cursor.sort([(at, 1), ("_id", 1)]))
        if len(found) >= self._scan:
            self._after[coll.name] = (found[-1][at], str(found[-1]["_id"]))
        return found

    def _task_candidates(self, cutoff: datetime) -> list[Doc]:
        query: Doc = {"status": {"$in": list(FINISHED)}}
        found = self._window(self._tasks, query, "finished_at", cutoff, TASK_FIELDS)
        keys = {f"{t['office']}.{t['dossier']}" for t in found}
        return prunable_tasks(found, self._dossier_docs(keys))

    def _dossier_docs(self, keys: Iterable[str]) -> dict[str, Doc]:
        out: dict[str, Doc] = {}
        for part in chunks(sorted(keys), self._batch):
            with mapped():
                for doc in self._dossiers.find({"_id": {"$in": part}}, {"blocked": 1, "head": 1}):
                    out[str(doc["_id"])] = doc
        return out

    def _orphan_instructions(self, cutoff: datetime) -> list[str]:
        """Resolved instructions whose task is gone (or that named none), of open dossiers."""
        found = self._window(
            self._instructions,
            _resolved(),
            "resolved_at",
            cutoff,
            {"task_id": 1, "office": 1, "dossier": 1},
        )
        present: set[str] = set()
        for part in chunks(
            sorted({str(i["task_id"]) for i in found if i.get("task_id")}), self._batch
        ):
            with mapped():
                present |= {
                    str(d["_id"]) for d in self._tasks.find({"_id": {"$in": part}}, {"_id": 1})
                }
        dossiers = self._dossier_docs({f"{i['office']}.{i['dossier']}" for i in found})
        return [
            str(i["_id"])
            for i in found
            if i.get("task_id", "") not in present
            and not dossiers.get(f"{i['office']}.{i['dossier']}", {}).get("blocked")
        ]

    def _mail_candidates(self, cutoff: datetime) -> list[str]:
        query: Doc = {"status": {"$in": list(MAILS_OVER)}}
        fields: Doc = {"status": 1, "kind": 1, "ref": 1}
        found = self._window(self._mails, query, "created_at", cutoff, fields)
        refs = sorted({str(m["ref"]) for m in found if m.get("kind") in ABOUT_INSTRUCTION})
        still_open: set[str] = set()
        for part in chunks(refs, self._batch):
            with mapped():
                still_open |= {
                    str(d["_id"])
                    for d in self._instructions.find({"_id": {"$in": part}}, {"status": 1})
                    if d.get("status") == InstructionStatus.OPEN.value
                }
        return prunable_mails(found, still_open)


def _resolved() -> Doc:
    return {"status": InstructionStatus.RESOLVED.value}
