"""The partition owner's store: bulk reads on takeover, one fenced bulk write per batch.

A batch of the sequencer costs a constant number of commands however many messages it
holds: a handful of bulk writes, one per collection. Every task and dossier write is
conditional on the owner's epoch (a number taken in the store each time an owner becomes
active), so an owner that lost its partition and wakes up later cannot overwrite what
its successor wrote: its bulk write matches less than it expects and raises Fenced.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pymongo
from pymongo import InsertOne, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, OperationFailure

from store.base import Doc, Repository, mapped
from store.errors import Conflict, Fenced, StoreUnavailable
from store.load import OfficeLoad
from store.mapping import instruction_doc
from store.outstanding import (
    ID_CHUNK,
    RELEASES,
    RETRY_TIMERS,
    SUBMISSIONS,
    release_docs,
    timer_id,
)
from store.records import InstructionRecord
from workers.vocabulary import ActionStatus, InstructionStatus, TaskStatus

OPEN = (
    TaskStatus.WAITING,
    TaskStatus.QUEUED,
    TaskStatus.RUNNING,
    TaskStatus.RETRY_WAIT,
    TaskStatus.FAILED,
)
PARTITIONS = "partitions"
DUPLICATE_KEY = 11000
# Statements per bulk command (MongoDB takes 100,000). FerretDB v1.24.2 hangs on an
# update command of 100 or more statements unless its build is patched, as
# deploy/local/services.sh does: against an unpatched one, no chunk size above 99 is safe.
BULK_CHUNK = 1000


@dataclass(frozen=True)
class HistoryRow:
    """One transition of a task; its id is fixed per transition, so a retry adds nothing."""

    id: str
    at: datetime
    status: TaskStatus
    note: str

    def doc(self) -> Doc:
        """As kept in the task's `history` array."""
        return {"id": self.id, "at": self.at, "status": self.status.value, "note": self.note}


@dataclass
class BatchWrite:
    """Everything one batch of the sequencer writes, in the order it is written."""

    instructions: list[InstructionRecord] = field(default_factory=list)
    closes: list[tuple[str, str, datetime]] = field(default_factory=list)  # (id, why, at)
    decisions: list[tuple[str, ActionStatus, str, datetime]] = field(default_factory=list)
    # (task id, epoch, fields to set, transitions to append to its history)
    tasks: list[tuple[str, int, Doc, list[HistoryRow]]] = field(default_factory=list)
    dossiers: list[tuple[str, int, Doc]] = field(default_factory=list)  # (key, epoch, $set)
    # Retry timers parked: (task id, retry, run, due); the sweeper finds lost ones by them.
    timers: list[tuple[str, int, int, datetime]] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)  # tasks accepted: no longer outstanding
    # Tasks finished (done, cancelled, skipped) by (office, partition): `store.load`.
    finished: dict[tuple[str, str], int] = field(default_factory=dict)
    # Tasks released: (task id, dossier key, run, at); the sweeper finds lost ones by them.
    releases: list[tuple[str, str, int, datetime]] = field(default_factory=list)
    landed: list[str] = field(default_factory=list)  # tasks that left flight: notes to drop

    def __bool__(self) -> bool:
        return any(
            (
                self.instructions,
                self.closes,
                self.decisions,
                self.tasks,
                self.dossiers,
                self.timers,
                self.releases,
            )
        )


# The server's answer to an operator it does not have (FerretDB: `$max` in `$group`).
NOT_IMPLEMENTED = 238


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _not_after(epoch: int) -> Doc:
    # `$not` also matches a document written before epochs existed (no field).
    return {"$not": {"$gt": epoch}}


class Sequencing(Repository):
    """Reads and writes of the partition owners."""

    def __init__(self, db: Database[Doc], chunk: int = BULK_CHUNK) -> None:
        super().__init__(db)
        self._tasks: Collection[Doc] = db["tasks"]
        self._dossiers: Collection[Doc] = db["dossiers"]
        self._instructions: Collection[Doc] = db["instructions"]
        self._actions: Collection[Doc] = db["actions"]
        self._partitions: Collection[Doc] = db[PARTITIONS]
        self._submissions: Collection[Doc] = db[SUBMISSIONS]
        self._timers: Collection[Doc] = db[RETRY_TIMERS]
        self._load = OfficeLoad(db)
        self._releases: Collection[Doc] = db[RELEASES]
        self._chunk = chunk
        self._group_max = True  # until the server says it has no `$max` (`last_seqs`)

    # -- ownership ----------------------------------------------------------------------
    def acquire(self, partition: str, owner: str, at: datetime) -> int:
        """Become the partition's owner: a new epoch, higher than any before."""
        with mapped():
            doc = self._partitions.find_one_and_update(
                {"_id": partition},
                {"$inc": {"epoch": 1}, "$set": {"owner": owner, "since": at}},
                upsert=True,
                return_document=pymongo.ReturnDocument.AFTER,
            )
        assert doc is not None  # upserted
        return int(doc["epoch"])

    def lease(self, name: str, owner: str, now: datetime, until: datetime) -> bool:
        """Hold the lease `name` until `until` if it is free, expired or already ours."""
        try:
            with mapped():
                self._partitions.update_one(
                    {"_id": name, "$or": [{"owner": owner}, {"until": {"$lt": now}}]},
                    {"$set": {"owner": owner, "until": until}},
                    upsert=True,
                )
        except Conflict:
            return False  # held by another owner: the upsert's insert met its document
        return True

    def partitions(self, names: Iterable[str]) -> dict[str, Doc]:
        """The ownership documents of some partitions."""
        with mapped():
            return {d["_id"]: d for d in self._partitions.find({"_id": {"$in": list(names)}})}

    def confirm(self, marks: dict[str, tuple[int, int]]) -> None:
        """Record, per partition and epoch, the last batch whose publishes were all confirmed.

        Kept per epoch (`confirmed.<epoch>`): a task stamped by an owner that lost its
        partition before confirming (a zombie's write landing late) must never look
        confirmed by its successor's marks.
        """
        ops = [
            UpdateOne({"_id": p, "epoch": epoch}, {"$max": {f"confirmed.{epoch}": batch}})
            for p, (epoch, batch) in marks.items()
        ]
        self._bulk(self._partitions, ops)

    # -- reads on takeover --------------------------------------------------------------
    def dossiers(self, keys: Iterable[str]) -> dict[str, Doc]:
        """Dossier documents by key (absent for dossiers never seen)."""
        with mapped():
            return {d["_id"]: d for d in self._dossiers.find({"_id": {"$in": list(keys)}})}

    def open_tasks(self, keys: Iterable[str]) -> list[Doc]:
        """The accepted, unfinished tasks of some dossiers."""
        pairs = {tuple(k.split(".", 1)) for k in keys}
        query: Doc = {
            "office": {"$in": sorted({o for o, _ in pairs})},
            "dossier": {"$in": sorted({d for _, d in pairs})},
            "status": {"$in": [s.value for s in OPEN]},
        }
        with mapped():
            docs = list(self._tasks.find(query))
        return [d for d in docs if (d["office"], d["dossier"]) in pairs]

    def last_seqs(self, keys: Iterable[str]) -> dict[str, int]:
        """The highest sequence number any task of each dossier ever got (absent: none).

        One command for all of them: a server that scans the tasks for a filter (the
        FerretDB test server does) scans once, not once per dossier, so an owner reading
        the dossiers of a takeover batch does not hold its thread for minutes. MongoDB
        groups on the server; a server without `$max` in `$group` (FerretDB v1 has only
        `$count` and `$sum`) sends the numbers of those dossiers' tasks instead.
        """
        pairs = {tuple(k.split(".", 1)) for k in keys}
        if not pairs:
            return {}
        match: Doc = {
            "office": {"$in": sorted({o for o, _ in pairs})},
            "dossier": {"$in": sorted({d for _, d in pairs})},
            "seq": {"$exists": True},
        }
        group: Doc = {"_id": {"office": "$office", "dossier": "$dossier"}, "seq": {"$max": "$seq"}}
        with mapped():
            if self._group_max:
                try:
                    docs = [
                        {**d["_id"], "seq": d["seq"]}
                        for d in self._tasks.aggregate([{"$match": match}, {"$group": group}])
                    ]
                except OperationFailure as exc:
                    if exc.code != NOT_IMPLEMENTED:
                        raise
                    self._group_max = False
            if not self._group_max:
                projection = {"_id": 0, "office": 1, "dossier": 1, "seq": 1}
                docs = list(self._tasks.find(match, projection))
        found: dict[str, int] = {}
        for doc in docs:
            if (doc["office"], doc["dossier"]) in pairs and doc.get("seq") is not None:
                key = f"{doc['office']}.{doc['dossier']}"
                found[key] = max(found.get(key, -1), int(doc["seq"]))
        return found

    def tasks(self, ids: Iterable[str]) -> dict[str, Doc]:
        """Task documents by id."""
        with mapped():
            return {d["_id"]: d for d in self._tasks.find({"_id": {"$in": list(ids)}})}

    def unaccepted(self, keys: Iterable[str]) -> dict[str, list[str]]:
        """The noted tasks of these dossiers whose acceptance is not written yet, by key.

        Read from the small `submissions` collection (one note per task between its
        submission and its acceptance), by dossier key, task ids in submission order.
        """
        found: dict[str, list[str]] = {}
        with mapped():
            for d in self._submissions.find({"key": {"$in": list(keys)}}, {"key": 1}):
                found.setdefault(str(d["key"]), []).append(str(d["_id"]))
        return {k: sorted(ids) for k, ids in found.items()}

    # -- the batch write ----------------------------------------------------------------
    def write(self, batch: BatchWrite) -> None:
        """Write a batch in an order that a replay after a crash at any point completes.

        The offices' finished totals come first: a replay counts them again (the cap on
        waiting tasks errs on the lenient side) rather than never. Then instructions,
        their closing and action decisions (inserts with fixed ids and conditional
        updates: written twice, they change nothing), then tasks with their history (one
        update each) and dossiers, fenced by epoch. A released task's note is written
        before the task (a task in flight always has one) and deleted after the task has
        left flight; a batch adds at most these two commands.
        """
        self._load.finished(batch.finished)
        self._insert(
            self._instructions, [InsertOne(instruction_doc(i)) for i in batch.instructions]
        )
        self._insert(self._releases, [InsertOne(d) for d in release_docs(batch.releases)])
        self._insert(
            self._timers,
            [
                InsertOne(
                    {"_id": timer_id(t, r, run), "task_id": t, "retry": r, "run": run, "due": due}
                )
                for t, r, run, due in batch.timers
            ],
        )
        open_ = InstructionStatus.OPEN.value
        self._bulk(
            self._instructions,
            [
                UpdateOne(
                    {"_id": i, "status": open_},
                    {
                        "$set": {
                            "status": InstructionStatus.RESOLVED.value,
                            "resolved_at": at,
                            "resolution": why,
                        }
                    },
                )
                for i, why, at in batch.closes
            ],
        )
        pending = ActionStatus.PENDING.value
        self._bulk(
            self._actions,
            [
                UpdateOne(
                    {"_id": a, "status": pending},
                    {"$set": {"status": s.value, "reason": r, "decided_at": at}},
                )
                for a, s, r, at in batch.decisions
            ],
        )
        ops = [_task_update(t, e, fields, history) for t, e, fields, history in batch.tasks]
        if self._bulk(self._tasks, ops) != len(ops):
            raise Fenced("a task was written by a newer owner of its partition")
        ops = [
            UpdateOne({"_id": k, "epoch": _not_after(e)}, {"$set": {**s, "epoch": e}}, upsert=True)
            for k, e, s in batch.dossiers
        ]
        self._bulk(self._dossiers, ops, "a dossier was written by a newer owner of its partition")
        # Last: until the tasks say accepted, the sweeper must still find them.
        for chunk in _chunks(batch.accepted, ID_CHUNK):
            with mapped():
                self._submissions.delete_many({"_id": {"$in": list(chunk)}})
        for chunk in _chunks(batch.landed, ID_CHUNK):
            with mapped():
                self._releases.delete_many({"_id": {"$in": list(chunk)}})

    def _bulk(self, coll: Collection[Doc], ops: Sequence[Any], fenced: str = "") -> int:
        """Unordered bulk writes in chunks; the number of documents matched or upserted.

        With `fenced`, a duplicate key (an upsert whose conditional filter missed an
        existing document) raises Fenced with that text.
        """
        matched = 0
        for chunk in _chunks(ops, self._chunk):
            with mapped():
                try:
                    result = coll.bulk_write(list(chunk), ordered=False)
                except BulkWriteError as exc:
                    if fenced and _duplicates_only(exc):
                        raise Fenced(fenced) from exc
                    raise
                except KeyError as exc:
                    # FerretDB answers an update command with write errors without its
                    # counts (a newer owner's document under a fenced upsert), and so does
                    # a server shutting down: pymongo fails to read either. The caller
                    # retries, and tells the two apart by the partition's epoch.
                    raise StoreUnavailable(f"bulk write reply without counts: {exc}") from exc
            matched += result.matched_count + result.upserted_count
        return matched

    def _insert(self, coll: Collection[Doc], ops: Sequence[Any]) -> None:
        """Unordered inserts; a document that exists already (a replay) is no error."""
        for chunk in _chunks(ops, self._chunk):
            with mapped():
                try:
                    coll.bulk_write(list(chunk), ordered=False)
                except BulkWriteError as exc:
                    if not _duplicates_only(exc):
                        raise


def _task_update(task_id: str, epoch: int, fields: Doc, history: list[HistoryRow]) -> UpdateOne:
    """A fenced task update; its transitions join its history (each once, by value)."""
    update: Doc = {"$set": {**fields, "epoch": epoch}}
    if history:
        update["$addToSet"] = {"history": {"$each": [h.doc() for h in history]}}
    return UpdateOne({"_id": task_id, "epoch": _not_after(epoch)}, update)


def _duplicates_only(exc: BulkWriteError) -> bool:
    errors = exc.details.get("writeErrors", [])
    return bool(errors) and all(e.get("code") == DUPLICATE_KEY for e in errors)
