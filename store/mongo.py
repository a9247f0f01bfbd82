"""The MongoDB adapter: the only module that imports pymongo.

The sequencer's hot path reads and writes single documents by `_id`; the few queries on
other fields (sweeper, monitoring) have indexes on MongoDB and stay within what the
FerretDB test server evaluates.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from pymongo import MongoClient, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from store.actions import Actions
from store.base import Doc, mapped
from store.directory import DirectoryMixin
from store.instructions import InstructionsMixin
from store.mapping import task_record
from store.monitoring import Monitoring
from store.outbox import Outbox
from store.outstanding import SUBMISSIONS, Outstanding, submission_docs
from store.profiles import Profiles
from store.records import DossierRecord, HistoryEntry, TaskRecord, TaskStatus
from store.retention import Retention
from store.sequencing import BULK_CHUNK, Sequencing
from store.sessions import Sessions
from store.tokens import IdempotencyKeys, Tokens

__all__ = ["Actions", "Doc", "Store"]

TASKS, DOSSIERS, OFFICES, USERS = "tasks", "dossiers", "offices", "users"
INSTRUCTIONS = "instructions"


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


def _dossier(doc: Mapping[str, Any]) -> DossierRecord:
    return DossierRecord(
        key=doc["_id"],
        office=doc["office"],
        dossier=doc["dossier"],
        next_seq=doc.get("next_seq", 0),
        head=doc.get("head", 0),
        active=doc.get("active"),
        blocked=doc.get("blocked", False),
        updated_at=doc.get("updated_at"),
    )


class Store(InstructionsMixin, DirectoryMixin):
    """Collections of dossierflow in one database."""

    def __init__(self, client: MongoClient[Doc], database: str) -> None:
        self._client = client
        self._db: Database[Doc] = client[database]
        self.tasks: Collection[Doc] = self._db[TASKS]
        self.dossiers: Collection[Doc] = self._db[DOSSIERS]
        self.offices: Collection[Doc] = self._db[OFFICES]
        self.users: Collection[Doc] = self._db[USERS]
        self.instructions: Collection[Doc] = self._db[INSTRUCTIONS]
        # Dossier key -> its latest submission and that one's coalescing key (by _id).
        self.coalescing: Collection[Doc] = self._db["coalescing"]
        # Tasks stored and not yet accepted by the sequencer (see store/outstanding.py).
        self.submissions: Collection[Doc] = self._db[SUBMISSIONS]
        # The repositories of the other collections (and of the partition owners' writes).
        self.actions = Actions(self._db)
        self.outbox = Outbox(self._db)
        self.profiles = Profiles(self._db)
        self.tokens = Tokens(self._db)
        self.idempotency = IdempotencyKeys(self._db)
        self.monitoring = Monitoring(self._db)
        self.outstanding = Outstanding(self._db)
        self.sequencing = Sequencing(self._db)

    @classmethod
    def connect(
        cls,
        url: str,
        database: str,
        timeout_ms: int = 10_000,
        listeners: Sequence[object] = (),
    ) -> Store:
        """Open a client (lazy: the first operation connects) with UTC-aware datetimes."""
        client: MongoClient[Doc] = MongoClient(
            url,
            tz_aware=True,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            retryWrites=True,
            appname="dossierflow",
            event_listeners=list(listeners),  # pymongo monitoring, e.g. store.counting
        )
        return cls(client, database)

    @property
    def database(self) -> Database[Doc]:
        """The database, for the store modules of other owners."""
        return self._db

    def collection(self, name: str) -> Collection[Doc]:
        """A collection of this database, for the store modules of other owners."""
        return self._db[name]

    def sessions(self, idle: timedelta, longest: timedelta) -> Sessions:
        """The page's logins, ending after `idle` without a request or `longest` after login."""
        return Sessions(self._db, idle, longest)

    def retention(self, batch: int = 500, scan: int = 10_000) -> Retention:
        """A pruner deleting `batch` ids per command, reading at most `scan` per pass."""
        return Retention(self._db, batch=batch, scan=scan)

    def ping(self) -> None:
        """Fail with StoreUnavailable unless the server answers."""
        with mapped():
            self._client.admin.command("ping")

    def ensure_indexes(self) -> None:
        """Create the indexes (idempotent); called by every process at start-up."""
        with mapped():
            self.tasks.create_index(
                [("office", 1), ("dossier", 1), ("status", 1)], name="office_dossier_status"
            )
            self.tasks.create_index([("status", 1), ("submitted_at", 1)], name="status_submitted")
            self.tasks.create_index(
                [("office", 1), ("dossier", 1), ("submitted_at", 1)], name="dossier_submitted"
            )
            self.dossiers.create_index([("office", 1)], name="office")
            self.users.create_index([("office", 1)], name="office")
            # Every submission and corrected restart that names a dossier code looks it up.
            self.collection("dossier_profiles").create_index([("code", 1)], name="code")
            self.instructions.create_index(
                [("office", 1), ("status", 1), ("severity", 1)], name="office_status_severity"
            )
            self.instructions.create_index([("task_id", 1)], name="task")
        self.outstanding.ensure_indexes()
        # Once per database: outstanding work stored before `submissions` and `retry_timers`.
        self.outstanding.adopt()

    def drop(self) -> None:
        """Drop the whole database (tests and the demo)."""
        with mapped():
            self._client.drop_database(self._db.name)

    def close(self) -> None:
        """Close the client."""
        self._client.close()

    # -- tasks ----------------------------------------------------------------------
    def insert_task(self, task: TaskRecord) -> None:
        """Store a new task; Conflict if its id exists."""
        self._mark_submitted([task])
        with mapped():
            self.tasks.insert_one(_new_task(task))

    def insert_tasks(self, tasks: Sequence[TaskRecord]) -> None:
        """Store new tasks in one command; ids that exist already (a retry) are skipped."""
        if not tasks:
            return
        self._mark_submitted(tasks)
        with mapped():
            try:
                self.tasks.insert_many([_new_task(t) for t in tasks], ordered=False)
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
                self.submissions.insert_many(docs, ordered=False)
            except BulkWriteError as exc:
                if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                    raise

    def history(self, task_id: str) -> list[HistoryEntry]:
        """Every transition of a task, oldest first (its submission first of all).

        Transitions live in the task document (`history`), written in the same update as
        the state they lead to: one read by `_id`, and never out of step with the task.
        """
        with mapped():
            doc = self.tasks.find_one({"_id": task_id}, {"submitted_at": 1, "history": 1})
        if doc is None:
            return []
        return [HistoryEntry(at=doc["submitted_at"], status=TaskStatus.SUBMITTED)] + [
            HistoryEntry(at=h["at"], status=TaskStatus(h["status"]), note=h.get("note", ""))
            for h in doc.get("history") or ()
        ]

    def task(self, task_id: str) -> TaskRecord | None:
        """One task by id."""
        with mapped():
            doc = self.tasks.find_one({"_id": task_id})
        return task_record(doc) if doc else None

    def update_task(
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
                    doc = self.tasks.find_one({"_id": task_id}, {"status": 1})
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
            return self.tasks.update_one({"_id": task_id}, update).matched_count == 1

    def waiting_equal(self, key: str, coalesce_key: str) -> TaskRecord | None:
        """The dossier's latest coalescible submission if it is equal and still the latest.

        Only the latest submission of the dossier may absorb an equal one: a sync
        submitted after a booking must run after that booking, so it may not merge into
        an equal sync that waits before it. Equal and not yet released, and no task of
        the dossier submitted since (a lookup only coalescible submissions pay for).
        """
        with mapped():
            doc = self.coalescing.find_one({"_id": key})
        if doc is None or doc.get("key") != coalesce_key:
            return None
        task = self.task(str(doc["task"]))
        if task is None or task.status not in (TaskStatus.SUBMITTED, TaskStatus.WAITING):
            return None
        with mapped():
            later = self.tasks.find_one(
                {
                    "office": task.office,
                    "dossier": task.dossier,
                    "submitted_at": {"$gte": task.submitted_at},
                    "_id": {"$ne": task.id},
                },
                {"_id": 1},
            )
        return task if later is None else None

    def remember_latest(self, latest: Mapping[str, tuple[str, str]]) -> None:
        """Record dossiers' latest coalescible submissions: key -> (task id, coalescing key)."""
        ops = [
            UpdateOne({"_id": key}, {"$set": {"task": task, "key": ckey}}, upsert=True)
            for key, (task, ckey) in latest.items()
        ]
        for start in range(0, len(ops), BULK_CHUNK):
            with mapped():
                self.coalescing.bulk_write(ops[start : start + BULK_CHUNK], ordered=False)

    def stale_retry_wait(self, before: datetime, limit: int = 500) -> list[TaskRecord]:
        """Tasks whose delayed retry was due before `before` (its timer may be lost).

        Found through the parked timers, then read by `_id`: never a scan of the tasks.
        """
        return [task_record(d) for d in self.outstanding.stale_retry_wait(before, limit)]

    def stale_submitted(self, before: datetime, limit: int = 500) -> list[TaskRecord]:
        """Tasks still `submitted` since before `before` (the sweeper republishes them).

        Found through the notes of outstanding submissions, then read by `_id`.
        """
        return [task_record(d) for d in self.outstanding.stale_submitted(before, limit)]

    def find_tasks(
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
            cursor = self.tasks.find(query, limit=limit).sort([("submitted_at", 1), ("_id", 1)])
            return [task_record(d) for d in cursor]

    def unfinished(self, task_ids: Sequence[str], chunk: int = 500) -> list[str]:
        """Those of the tasks that have not finished (done, cancelled or skipped), by id."""
        final = [s.value for s in TaskStatus if s.finished]
        left: list[str] = []
        for start in range(0, len(task_ids), chunk):
            part = list(task_ids[start : start + chunk])
            with mapped():
                docs = self.tasks.find({"_id": {"$in": part}}, {"status": 1})
                done = {d["_id"] for d in docs if d["status"] in final}
            left.extend(t for t in part if t not in done)
        return left

    def statuses(self, task_ids: Sequence[str], chunk: int = 500) -> dict[str, str]:
        """The status of each of these tasks that exists, read by `_id` in chunks."""
        found: dict[str, str] = {}
        for start in range(0, len(task_ids), chunk):
            part = list(task_ids[start : start + chunk])
            with mapped():
                for d in self.tasks.find({"_id": {"$in": part}}, {"status": 1}):
                    found[str(d["_id"])] = str(d["status"])
        return found

    def count_tasks(self, statuses: Sequence[TaskStatus] | None = None) -> dict[str, int]:
        """Number of tasks per status (only the statuses asked, else all)."""
        query: Doc = {}
        if statuses is not None:
            query["status"] = {"$in": [s.value for s in statuses]}
        with mapped():
            rows = self.tasks.aggregate(
                [{"$match": query}, {"$group": {"_id": "$status", "n": {"$sum": 1}}}]
            )
            return {str(r["_id"]): int(r["n"]) for r in rows}

    # -- dossiers -------------------------------------------------------------------
    def dossier(self, key: str) -> DossierRecord | None:
        """A dossier's sequencing state by key."""
        with mapped():
            doc = self.dossiers.find_one({"_id": key})
        return _dossier(doc) if doc else None

    def ensure_dossier(self, office: str, dossier: str, at: datetime) -> DossierRecord:
        """The dossier's state, created empty on first use."""
        key = f"{office}.{dossier}"
        with mapped():
            self.dossiers.update_one(
                {"_id": key},
                {
                    "$setOnInsert": {
                        "office": office,
                        "dossier": dossier,
                        "next_seq": 0,
                        "head": 0,
                        "active": None,
                        "blocked": False,
                        "updated_at": at,
                    }
                },
                upsert=True,
            )
            doc = self.dossiers.find_one({"_id": key})
        assert doc is not None
        return _dossier(doc)

    def dossiers_blocked(self, office: str | None = None) -> list[DossierRecord]:
        """Dossiers whose failed task waits for a person."""
        query: Doc = {"blocked": True}
        if office is not None:
            query["office"] = office
        with mapped():
            return [_dossier(d) for d in self.dossiers.find(query).sort("_id", 1)]

    def set_dossier(self, key: str, at: datetime, **fields: Any) -> None:
        """Set fields of a dossier's state."""
        with mapped():
            self.dossiers.update_one({"_id": key}, {"$set": {**fields, "updated_at": at}})
