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

- `releases`: one document per task a partition owner released (queued or running),
  written in the batch that releases it, before the task; the owner deletes it in the
  batch where the task leaves flight (done, failed, retry wait). The sweeper looks at the
  old ones to find a release whose work message is gone (a purged or deleted work
  queue, a publish lost with its owner), and deletes those left behind by a crash once
  their task is finished. At most one per dossier is in flight, so it stays small.

All stay proportional to the work in flight, not to history; the sweeper then reads
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
from store.records import TaskRecord
from workers.vocabulary import TaskStatus

SUBMISSIONS = "submissions"
RETRY_TIMERS = "retry_timers"
RELEASES = "releases"
ID_CHUNK = 500  # ids per `_id: {$in}` command
MIGRATIONS = "migrations"
ADOPTED = "outstanding-adopted"
RELEASES_ADOPTED = "releases-adopted"
IN_FLIGHT = (TaskStatus.QUEUED.value, TaskStatus.RUNNING.value)
# A task in one of these is never released again: its release note can go.
FINISHED = (TaskStatus.DONE.value, TaskStatus.CANCELLED.value, TaskStatus.SKIPPED.value)


def timer_id(task_id: str, retry: int, run: int) -> str:
    """A timer's id: one per delayed retry of one release of a task."""
    return f"{task_id}/{retry}/{run}"


def submission_docs(tasks: Iterable[tuple[str, datetime, str]]) -> list[Doc]:
    """The `submissions` documents of new tasks: (task id, submitted at, dossier key).

    The key (`office.dossier`) lets a new partition owner find the tasks of a dossier
    whose commands have not reached it yet (`Sequencing.unaccepted`).
    """
    return [{"_id": task_id, "submitted_at": at, "key": key} for task_id, at, key in tasks]


def release_docs(releases: Iterable[tuple[str, str, int, datetime]]) -> list[Doc]:
    """The `releases` documents of released tasks: (task id, dossier key, run, at)."""
    return [
        {"_id": task_id, "office": key.partition(".")[0], "key": key, "run": run, "at": at}
        for task_id, key, run, at in releases
    ]


class Outstanding(Repository):
    """The sweeper's reads and clean-up of the outstanding-work collections, and their tasks."""

    def __init__(self, db: Database[Doc]) -> None:
        super().__init__(db)
        self._tasks: Collection[Doc] = db["tasks"]
        self._submissions: Collection[Doc] = db[SUBMISSIONS]
        self._timers: Collection[Doc] = db[RETRY_TIMERS]
        self._releases: Collection[Doc] = db[RELEASES]

    def ensure_indexes(self) -> None:
        """The indexes of the sweeper's reads on MongoDB (idempotent)."""
        with mapped():
            self._submissions.create_index([("submitted_at", 1)], name="submitted")
            self._submissions.create_index([("key", 1)], name="dossier")
            self._timers.create_index([("due", 1)], name="due")
            self._releases.create_index([("at", 1)], name="released")

    def adopt(self) -> int:
        """Note the outstanding work stored before these collections existed, once.

        The only read of the tasks by status: run at start-up until it has run once in
        the database (a marker in `migrations`), and never by the sweeper. Idempotent.
        """
        migrations: Collection[Doc] = self._db[MIGRATIONS]
        adopted = self._adopt_releases(migrations)
        with mapped():
            if migrations.find_one({"_id": ADOPTED}) is not None:
                return adopted
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
        return adopted + len(notes) + len(timers)

    def _adopt_releases(self, migrations: Collection[Doc]) -> int:
        """Note, once per database, the tasks in flight released before `releases` existed."""
        with mapped():
            if migrations.find_one({"_id": RELEASES_ADOPTED}) is not None:
                return 0
            flying = list(
                self._tasks.find(
                    {"status": {"$in": list(IN_FLIGHT)}},
                    {"office": 1, "dossier": 1, "run": 1, "queued_at": 1, "submitted_at": 1},
                )
            )
        docs = release_docs(
            (
                str(t["_id"]),
                f"{t['office']}.{t['dossier']}",
                int(t.get("run", 0)),
                t.get("queued_at") or t.get("submitted_at") or datetime.now(UTC),
            )
            for t in flying
        )
        self._insert(self._releases, docs)
        with mapped():
            migrations.update_one(
                {"_id": RELEASES_ADOPTED}, {"$set": {"at": datetime.now(UTC)}}, upsert=True
            )
        return len(docs)

    def _insert(self, coll: Collection[Doc], docs: Sequence[Doc]) -> None:
        """Insert in chunks; a document that exists already is no error."""
        for start in range(0, len(docs), ID_CHUNK):
            with mapped():
                try:
                    coll.insert_many(list(docs[start : start + ID_CHUNK]), ordered=False)
                except BulkWriteError as exc:
                    if any(e.get("code") != 11000 for e in exc.details["writeErrors"]):
                        raise

    def old_releases(self, before: datetime) -> list[Doc]:
        """The release notes written before `before`: tasks that may still be in flight.

        Not limited: at most one task per dossier is in flight, and the owners delete a
        note when its task leaves flight, so this is about the dossiers busy for longer
        than the grace (waiting in a work queue, running long, or stuck).
        """
        with mapped():
            return list(self._releases.find({"at": {"$lt": before}}, {"office": 1, "run": 1}))

    def in_flight(self, notes: Sequence[Doc]) -> list[Doc]:
        """The tasks of some release notes still queued or running (read by `_id`).

        Forgets the notes of tasks that are finished or gone: those are never released
        again. The note of a task failed or waiting stays (its owner deletes it, or a
        later release reuses it): deleting it here could race with that release.
        """
        tasks = self._by_id([str(n["_id"]) for n in notes])
        over = [
            str(n["_id"])
            for n in notes
            if (t := tasks.get(str(n["_id"]))) is None or t["status"] in FINISHED
        ]
        self._forget(self._releases, over)
        return [t for t in tasks.values() if t["status"] in IN_FLIGHT]

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
