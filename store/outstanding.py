"""Outstanding work, found without reading the tasks by anything but `_id`.

The sweeper looks for two kinds of work that may have been lost: a submitted task whose
command the sequencer never saw, and a delayed retry whose timer message was lost. Both
used to be read from the tasks collection by status, which on the FerretDB test server
(filters other than `_id` scan) costs in proportion to every task ever kept. Two small
collections now hold only what is outstanding:

- `submissions`: one document per task the API stored and the sequencer has not yet
  accepted. The API writes it before the task; the partition owner deletes it in the
  batch that accepts the task; the sweeper deletes those left behind (an owner that died
  between its task write and that delete, a client that died before its task insert).
- `retry_timers`: one document per retry timer a partition owner parked, written in the
  batch that parks it. The sweeper deletes it once its task has moved on.

Both stay proportional to the work in flight, not to history; the sweeper then reads
the tasks they name by `_id`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError

from store.base import Doc, Repository, mapped
from store.mapping import task_record
from store.records import TaskRecord, TaskStatus

SUBMISSIONS = "submissions"
RETRY_TIMERS = "retry_timers"
ID_CHUNK = 500  # ids per `_id: {$in}` command
MIGRATIONS = "migrations"
ADOPTED = "outstanding-adopted"


def timer_id(task_id: str, retry: int, run: int) -> str:
    """A timer's id: one per delayed retry of one release of a task."""
    return f"{task_id}/{retry}/{run}"


def submission_docs(tasks: Iterable[tuple[str, datetime, str]]) -> list[Doc]:
    """The `submissions` documents of new tasks: (task id, submitted at, dossier key).

    The key (`office.dossier`) lets a new partition owner find the tasks of a dossier
    whose commands have not reached it yet (`Sequencing.unaccepted`).
    """
    return [{"_id": task_id, "submitted_at": at, "key": key} for task_id, at, key in tasks]


class Outstanding(Repository):
    """The sweeper's reads and clean-up of the two collections, and the tasks they name."""

    def __init__(self, db: Database[Doc]) -> None:
        super().__init__(db)
        self._tasks: Collection[Doc] = db["tasks"]
        self._submissions: Collection[Doc] = db[SUBMISSIONS]
        self._timers: Collection[Doc] = db[RETRY_TIMERS]

    def ensure_indexes(self) -> None:
        """The indexes of the sweeper's reads on MongoDB (idempotent)."""
        with mapped():
            self._submissions.create_index([("submitted_at", 1)], name="submitted")
            self._submissions.create_index([("key", 1)], name="dossier")
            self._timers.create_index([("due", 1)], name="due")

    def adopt(self) -> int:
        """Note the outstanding work stored before these collections existed, once.

        The only read of the tasks by status: run at start-up until it has run once in
        the database (a marker in `migrations`), and never by the sweeper. Idempotent.
        """
        migrations: Collection[Doc] = self._db[MIGRATIONS]
        with mapped():
            if migrations.find_one({"_id": ADOPTED}) is not None:
                return 0
            waiting = list(
                self._tasks.find(
                    {"status": TaskStatus.SUBMITTED.value},
                    {"submitted_at": 1, "office": 1, "dossier": 1},
                )
            )
            retrying = list(
                self._tasks.find(
                    {"status": TaskStatus.RETRY_WAIT.value},
                    {"retries": 1, "run": 1, "next_attempt_at": 1},
                )
            )
        notes = submission_docs(
            (str(t["_id"]), t["submitted_at"], f"{t['office']}.{t['dossier']}") for t in waiting
        )
        timers = [
            {
                "_id": timer_id(str(t["_id"]), int(t.get("retries", 0)), int(t.get("run", 0))),
                "task_id": str(t["_id"]),
                "retry": int(t.get("retries", 0)),
                "run": int(t.get("run", 0)),
                "due": t.get("next_attempt_at") or datetime.now(UTC),
            }
            for t in retrying
        ]
        for coll, docs in ((self._submissions, notes), (self._timers, timers)):
            for start in range(0, len(docs), ID_CHUNK):
                with mapped():
                    try:
                        coll.insert_many(docs[start : start + ID_CHUNK], ordered=False)
                    except BulkWriteError as exc:
                        if any(e.get("code") != 11000 for e in exc.details["writeErrors"]):
                            raise
        with mapped():
            migrations.update_one(
                {"_id": ADOPTED}, {"$set": {"at": datetime.now(UTC)}}, upsert=True
            )
        return len(notes) + len(timers)

    def stale_submitted(self, before: datetime, limit: int = 500) -> list[TaskRecord]:
        """Tasks still `submitted` since before `before` (the sweeper republishes them).

        Found through the notes of outstanding submissions, then read by `_id`; forgets
        the notes of tasks accepted or absent.
        """
        with mapped():
            marks = list(self._submissions.find({"submitted_at": {"$lt": before}}, limit=limit))
        tasks = self._by_id([str(m["_id"]) for m in marks])
        stale = [t for t in tasks.values() if t["status"] == TaskStatus.SUBMITTED.value]
        self._forget(self._submissions, [str(m["_id"]) for m in marks if _gone(m["_id"], tasks)])
        return [task_record(t) for t in stale]

    def stale_retry_wait(self, before: datetime, limit: int = 500) -> list[TaskRecord]:
        """Tasks whose delayed retry was due before `before` (its timer may be lost).

        Found through the parked timers, then read by `_id`: never a scan of the tasks.
        Forgets the timers of the past.
        """
        with mapped():
            timers = list(self._timers.find({"due": {"$lt": before}}, limit=limit))
        tasks = self._by_id(sorted({str(t["task_id"]) for t in timers}))
        stale: dict[str, Doc] = {}
        over: list[str] = []
        for timer in timers:
            task = tasks.get(str(timer["task_id"]))
            if (
                task is not None
                and task["status"] == TaskStatus.RETRY_WAIT.value
                and int(task.get("retries", 0)) == int(timer["retry"])
                and int(task.get("run", 0)) == int(timer["run"])
            ):
                stale[task["_id"]] = task
            else:
                over.append(str(timer["_id"]))  # fired, restarted, cancelled or gone
        self._forget(self._timers, over)
        return [task_record(t) for t in stale.values()]

    def _by_id(self, ids: Sequence[str]) -> dict[str, Doc]:
        found: dict[str, Doc] = {}
        for start in range(0, len(ids), ID_CHUNK):
            with mapped():
                for doc in self._tasks.find({"_id": {"$in": list(ids[start : start + ID_CHUNK])}}):
                    found[str(doc["_id"])] = doc
        return found

    def _forget(self, coll: Collection[Doc], ids: Sequence[str]) -> None:
        for start in range(0, len(ids), ID_CHUNK):
            with mapped():
                coll.delete_many({"_id": {"$in": list(ids[start : start + ID_CHUNK])}})


def _gone(task_id: Any, tasks: dict[str, Doc]) -> bool:
    """Whether a submission needs no sweeping: its task was accepted, or never stored."""
    task = tasks.get(str(task_id))
    return task is None or task["status"] != TaskStatus.SUBMITTED.value
