"""The tasks: stored by the API, moved through their life, read by everyone.

Besides `tasks` itself, the repository writes the two small collections a submission
touches: `submissions` (the note that a task waits for the sequencer, see
store/outstanding.py) and `coalescing` (each dossier's latest coalescible submission).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from store.base import Doc, Repository, mapped
from store.mapping import task_record
from store.outstanding import SUBMISSIONS, submission_docs
from store.records import HistoryEntry, TaskRecord
from store.sequencing import BULK_CHUNK
from workers.vocabulary import TaskStatus

TASKS = "tasks"
COALESCING = "coalescing"


class Tasks(Repository):
    """The `tasks` collection, with the submission notes and coalescing keys of new tasks."""

    def __init__(self, db: Database[Doc]) -> None:
        super().__init__(db)
        self._docs: Collection[Doc] = db[TASKS]
        # Dossier key -> its latest submission and that one's coalescing key (by _id).
        self._coalescing: Collection[Doc] = db[COALESCING]
        # Tasks stored and not yet accepted by the sequencer (see store/outstanding.py).
        self._submissions: Collection[Doc] = db[SUBMISSIONS]

    def ensure_indexes(self) -> None:
        """The indexes of the reads by dossier and by status (idempotent)."""
        with mapped():
            self._docs.create_index(
                [("office", 1), ("dossier", 1), ("status", 1)], name="office_dossier_status"
            )
            self._docs.create_index([("status", 1), ("submitted_at", 1)], name="status_submitted")
            self._docs.create_index(
                [("office", 1), ("dossier", 1), ("submitted_at", 1)], name="dossier_submitted"
            )

    def insert(self, task: TaskRecord) -> None:
        """Store a new task; Conflict if its id exists."""
        self._mark_submitted([task])
        with mapped():
            self._docs.insert_one(_new_task(task))

    def insert_many(self, tasks: Sequence[TaskRecord]) -> None:
        """Store new tasks in one command; ids that exist already (a retry) are skipped."""
        if not tasks:
            return
        self._mark_submitted(tasks)
        with mapped():
            try:
                self._docs.insert_many([_new_task(t) for t in tasks], ordered=False)
            except BulkWriteError as exc:
                if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                    raise

    def _mark_submitted(self, tasks: Sequence[TaskRecord]) -> None:
        """Note new tasks as outstanding, before they are stored (a retry adds nothing).

        First: a client that dies between the two writes leaves a note without a task,
        which the sweeper drops, never a task the sweeper cannot find.
        """
        docs = submission_docs(
            (t.id, t.submitted_at, f"{t.office}.{t.dossier}")
            for t in tasks
            if t.status is TaskStatus.SUBMITTED
        )
        if not docs:
            return
        with mapped():
            try:
                self._submissions.insert_many(docs, ordered=False)
            except BulkWriteError as exc:
                if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                    raise

    def history(self, task_id: str) -> list[HistoryEntry]:
        """Every transition of a task, oldest first (its submission first of all).

        Transitions live in the task document (`history`), written in the same update as
        the state they lead to: one read by `_id`, and never out of step with the task.
        """
        with mapped():
            doc = self._docs.find_one({"_id": task_id}, {"submitted_at": 1, "history": 1})
        if doc is None:
            return []
        return [HistoryEntry(at=doc["submitted_at"], status=TaskStatus.SUBMITTED)] + [
            HistoryEntry(at=h["at"], status=TaskStatus(h["status"]), note=h.get("note", ""))
            for h in doc.get("history") or ()
        ]

    def get(self, task_id: str) -> TaskRecord | None:
        """One task by id."""
        with mapped():
            doc = self._docs.find_one({"_id": task_id})
        return task_record(doc) if doc else None

    def update(
        self,
        task_id: str,
        status: TaskStatus,
        at: datetime,
        fields: Mapping[str, Any] | None = None,
        *,
        note: str = "",
        only_from: Sequence[TaskStatus] | None = None,
        inc: Mapping[str, int] | None = None,
        known: TaskStatus | None = None,
    ) -> bool:
        """Move a task to `status` (recorded in its history); False if `only_from` failed.

        Task state has one writer (the sequencer of the task's dossier), so checking the
        current status and then writing by `_id` alone is safe, and keeps the hot path on
        `_id` lookups (a compound filter is a collection scan on the FerretDB test server).
        `known` is the status the writer read while handling this same message: with one
        writer it is still current, and saves the read.
        """
        if only_from is not None:
            if known is None:
                with mapped():
                    doc = self._docs.find_one({"_id": task_id}, {"status": 1})
                if doc is None:
                    return False
                known = TaskStatus(doc["status"])
            if known not in only_from:
                return False
        entry = {"id": uuid.uuid4().hex, "at": at, "status": status.value, "note": note}
        update: Doc = {
            "$set": {"status": status.value, **(fields or {})},
            "$push": {"history": entry},
        }
        if inc:
            update["$inc"] = dict(inc)
        with mapped():
            return self._docs.update_one({"_id": task_id}, update).matched_count == 1

    def waiting_latest(self, keys: Iterable[str]) -> dict[str, TaskRecord]:
        """Per dossier key, its latest submission if that one is coalescible and unreleased.

        Only the latest submission of a dossier may absorb an equal one: a sync submitted
        after a booking must run after that booking, so it may not merge into an equal
        sync that waits before it. `coalescing` names a dossier's latest submission while
        that one is coalescible (`remember_latest`; any other submission removes the
        dossier, `forget_latest`). The caller compares the task's `coalesce_key` with its
        own. Two reads by `_id` for a whole batch of submissions, and only batches with a
        coalescible kind pay for them.
        """
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        with mapped():
            latest = {
                str(d["_id"]): (str(d["task"]), d.get("key"))
                for d in self._coalescing.find({"_id": {"$in": wanted}})
            }
        if not latest:
            return {}
        with mapped():
            docs = list(self._docs.find({"_id": {"$in": sorted(t for t, _ in latest.values())}}))
        waiting: dict[str, TaskRecord] = {}
        for doc in docs:
            task = task_record(doc)
            key = f"{task.office}.{task.dossier}"
            if latest.get(key) == (task.id, task.coalesce_key) and task.status in (
                TaskStatus.SUBMITTED,
                TaskStatus.WAITING,
            ):
                waiting[key] = task
        return waiting

    def forget_latest(self, keys: Iterable[str]) -> None:
        """These dossiers' latest submissions are not coalescible: nothing may merge into
        an earlier one. Written before the new tasks: a client that dies in between only
        loses a chance to coalesce."""
        wanted = sorted(set(keys))
        for start in range(0, len(wanted), BULK_CHUNK):
            with mapped():
                self._coalescing.delete_many({"_id": {"$in": wanted[start : start + BULK_CHUNK]}})

    def remember_latest(self, latest: Mapping[str, tuple[str, str]]) -> None:
        """Record dossiers' latest coalescible submissions: key -> (task id, coalescing key)."""
        ops = [
            UpdateOne({"_id": key}, {"$set": {"task": task, "key": ckey}}, upsert=True)
            for key, (task, ckey) in latest.items()
        ]
        for start in range(0, len(ops), BULK_CHUNK):
            with mapped():
                self._coalescing.bulk_write(ops[start : start + BULK_CHUNK], ordered=False)

    def find(
        self,
        *,
        office: str | None = None,
        dossier: str | None = None,
        statuses: Sequence[TaskStatus] | None = None,
        limit: int = 0,
    ) -> list[TaskRecord]:
        """Tasks matching every filter given, in submission order."""
        query: Doc = {}
        if office is not None:
            query["office"] = office
        if dossier is not None:
            query["dossier"] = dossier
        if statuses is not None:
            query["status"] = {"$in": [s.value for s in statuses]}
        with mapped():
            cursor = self._docs.find(query, limit=limit).sort([("submitted_at", 1), ("_id", 1)])
            return [task_record(d) for d in cursor]

    def unfinished(self, task_ids: Sequence[str], chunk: int = 500) -> list[str]:
        """Those of the tasks that have not finished (done, cancelled or skipped), by id."""
        final = [s.value for s in TaskStatus if s.finished]
        left: list[str] = []
        for start in range(0, len(task_ids), chunk):
            part = list(task_ids[start : start + chunk])
            with mapped():
                docs = self._docs.find({"_id": {"$in": part}}, {"status": 1})
                done = {d["_id"] for d in docs if d["status"] in final}
            left.extend(t for t in part if t not in done)
        return left

    def statuses(self, task_ids: Sequence[str], chunk: int = 500) -> dict[str, str]:
        """The status of each of these tasks that exists, read by `_id` in chunks."""
        found: dict[str, str] = {}
        for start in range(0, len(task_ids), chunk):
            part = list(task_ids[start : start + chunk])
            with mapped():
                for d in self._docs.find({"_id": {"$in": part}}, {"status": 1}):
                    found[str(d["_id"])] = str(d["status"])
        return found

    def count(self, statuses: Sequence[TaskStatus] | None = None) -> dict[str, int]:
        """Number of tasks per status (only the statuses asked, else all)."""
        query: Doc = {}
        if statuses is not None:
            query["status"] = {"$in": [s.value for s in statuses]}
        with mapped():
            rows = self._docs.aggregate(
                [{"$match": query}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
            )
            return {str(r["_id"]): int(r["n"]) for r in rows}


def _new_task(task: TaskRecord) -> Doc:
    doc: Doc = {
        "_id": task.id,
        "office": task.office,
        "dossier": task.dossier,
        "kind": task.kind,
        "payload": task.payload,
        "status": task.status.value,
        "submitted_at": task.submitted_at,
        "attempts": 0,
        "epoch": 0,  # no partition owner has written it yet (see store/sequencing.py)
    }
    if task.coalesce_key:
        doc["coalesce_key"] = task.coalesce_key
    return doc
