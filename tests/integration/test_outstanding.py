"""The sweeper finds outstanding work through small collections, reading tasks by `_id` only."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pymongo import monitoring

from broker.messages import utcnow
from dossierflow.settings import Settings
from store import Store, TaskRecord
from store.outstanding import MIGRATIONS, RELEASES, RETRY_TIMERS, SUBMISSIONS, timer_id
from store.sequencing import BatchWrite
from workers.vocabulary import TaskStatus

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _submitted(task_id: str, seconds_ago: float) -> TaskRecord:
    return TaskRecord(
        id=task_id,
        office="o1",
        dossier="d1",
        kind="dossier.sync",
        payload={"dossier_code": "c"},
        status=TaskStatus.SUBMITTED,
        submitted_at=utcnow() - timedelta(seconds=seconds_ago),
    )


def _ids(store: Store, name: str) -> set[str]:
    return {str(d["_id"]) for d in store.collection(name).find({}, {"_id": 1})}


class _TaskReads(monitoring.CommandListener):
    """The filter of every command on the tasks collection."""

    def __init__(self) -> None:
        self.filters: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        cmd = event.command
        if cmd.get(event.command_name) == "tasks":
            self.filters.append(dict(cmd.get("filter", {})))
            for stmt in cmd.get("deletes", []) + cmd.get("updates", []):
                self.filters.append(dict(stmt["q"]))
            if event.command_name in ("aggregate", "count"):
                self.filters.append({"pipeline or count": True})

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_a_submission_is_outstanding_until_the_batch_that_accepts_it(store: Store) -> None:
    store.tasks.insert_many([_submitted("t1", 60), _submitted("t2", 60), _submitted("t3", 1)])
    assert _ids(store, SUBMISSIONS) == {"t1", "t2", "t3"}
    cutoff = utcnow() - timedelta(seconds=30)
    assert {t.id for t in store.outstanding.stale_submitted(cutoff)} == {"t1", "t2"}

    # The owner accepts t1: the task and its note change in the same batch write.
    store.tasks.update("t1", TaskStatus.WAITING, utcnow(), {"seq": 0, "accepted_at": utcnow()})
    store.sequencing.write(BatchWrite(accepted=["t1"]))
    assert _ids(store, SUBMISSIONS) == {"t2", "t3"}
    assert [t.id for t in store.outstanding.stale_submitted(cutoff)] == ["t2"]


def test_the_sweeper_drops_notes_an_owner_or_a_client_left_behind(store: Store) -> None:
    store.tasks.insert_many([_submitted("t1", 60)])
    # An owner accepted it and died before deleting the note.
    store.tasks.update("t1", TaskStatus.WAITING, utcnow(), {"seq": 0})
    # A client noted a task and died before inserting it.
    store.collection("submissions").insert_one(
        {"_id": "never", "submitted_at": utcnow() - timedelta(hours=1)}
    )
    assert store.outstanding.stale_submitted(utcnow() - timedelta(seconds=30)) == []
    assert _ids(store, SUBMISSIONS) == set()


def test_a_parked_timer_is_found_while_due_and_dropped_once_its_task_moved_on(
    store: Store,
) -> None:
    seq = store.sequencing
    store.tasks.insert_many([_submitted("t1", 60)])
    due = utcnow() - timedelta(seconds=60)
    store.tasks.update(
        "t1", TaskStatus.RETRY_WAIT, utcnow(), {"retries": 1, "run": 2, "next_attempt_at": due}
    )
    seq.write(BatchWrite(timers=[("t1", 1, 2, due)]))
    seq.write(BatchWrite(timers=[("t1", 1, 2, due)]))  # a replayed batch adds nothing
    assert _ids(store, RETRY_TIMERS) == {timer_id("t1", 1, 2)}
    cutoff = utcnow() - timedelta(seconds=30)
    assert [t.id for t in store.outstanding.stale_retry_wait(cutoff)] == ["t1"]
    assert [t.id for t in store.outstanding.stale_retry_wait(utcnow() - timedelta(hours=1))] == []

    store.tasks.update("t1", TaskStatus.WAITING, utcnow())  # its retry came due
    assert store.outstanding.stale_retry_wait(cutoff) == []
    assert _ids(store, RETRY_TIMERS) == set()


def test_the_sweeper_reads_tasks_by_id_only(settings: Settings, store: Store) -> None:
    store.tasks.insert_many([_submitted(f"t{n}", 60) for n in range(5)])
    store.tasks.update("t0", TaskStatus.WAITING, utcnow(), {"seq": 0})
    due = utcnow() - timedelta(seconds=60)
    store.tasks.update("t1", TaskStatus.RETRY_WAIT, utcnow(), {"retries": 1})
    store.sequencing.write(BatchWrite(timers=[("t1", 1, 0, due), ("gone", 1, 0, due)]))
    reads = _TaskReads()
    watched = Store.connect(settings.mongo_url, settings.mongo_db, listeners=[reads])
    try:
        cutoff = utcnow() - timedelta(seconds=30)
        assert {t.id for t in watched.outstanding.stale_submitted(cutoff)} == {"t2", "t3", "t4"}
        assert [t.id for t in watched.outstanding.stale_retry_wait(cutoff)] == ["t1"]
    finally:
        watched.close()
    assert reads.filters, "the sweeper read no task at all"
    assert all(set(f) == {"_id"} for f in reads.filters), reads.filters


def test_work_stored_before_the_notes_existed_is_adopted_once(store: Store) -> None:
    old = utcnow() - timedelta(minutes=5)
    store.collection(MIGRATIONS).delete_many({})  # a database of the previous version
    store.collection("tasks").insert_many(
        [
            {"_id": "legacy1", "office": "o1", "dossier": "d1", "kind": "dossier.sync",
             "payload": {}, "status": "submitted", "submitted_at": old},
            {"_id": "legacy2", "office": "o1", "dossier": "d2", "kind": "dossier.sync",
             "payload": {}, "status": "retry_wait", "submitted_at": old, "seq": 0,
             "retries": 2, "run": 1, "next_attempt_at": old},
        ]
    )  # fmt: skip
    store.ensure_indexes()
    cutoff = utcnow() - timedelta(seconds=30)
    assert [t.id for t in store.outstanding.stale_submitted(cutoff)] == ["legacy1"]
    assert [t.id for t in store.outstanding.stale_retry_wait(cutoff)] == ["legacy2"]
    store.collection("submissions").delete_many({})
    store.ensure_indexes()  # adopted already: reads the tasks no more
    assert store.outstanding.stale_submitted(cutoff) == []


def test_a_release_is_noted_until_its_task_lands_and_read_by_id_only(
    settings: Settings, store: Store
) -> None:
    old = utcnow() - timedelta(minutes=5)
    store.tasks.insert_many([_submitted(f"t{n}", 600) for n in range(4)])
    for n in range(4):
        store.tasks.update(f"t{n}", TaskStatus.QUEUED, old, {"seq": 0, "run": 1, "queued_at": old})
    seq = store.sequencing
    seq.write(BatchWrite(releases=[(f"t{n}", f"o1.d{n}", 1, old) for n in range(4)]))
    seq.write(BatchWrite(releases=[("t0", "o1.d0", 2, utcnow())]))  # again: the note stays
    assert _ids(store, RELEASES) == {"t0", "t1", "t2", "t3"}
    # t1 lands with its batch; t2 finished but its owner died before dropping the note; t3
    # failed (a person may restart it: its note stays until it is finished).
    seq.write(BatchWrite(landed=["t1"]))
    store.tasks.update("t2", TaskStatus.DONE, utcnow())
    store.tasks.update("t3", TaskStatus.FAILED, utcnow())
    reads = _TaskReads()
    watched = Store.connect(settings.mongo_url, settings.mongo_db, listeners=[reads])
    try:
        outstanding = watched.outstanding
        notes = outstanding.old_releases(utcnow() - timedelta(seconds=30))
        assert {str(n["_id"]) for n in notes} == {"t0", "t2", "t3"}
        assert {n["office"] for n in notes} == {"o1"}
        assert [t["_id"] for t in outstanding.in_flight(notes)] == ["t0"]
    finally:
        watched.close()
    assert _ids(store, RELEASES) == {"t0", "t3"}
    assert reads.filters and all(set(f) == {"_id"} for f in reads.filters), reads.filters


def test_tasks_in_flight_before_the_release_notes_existed_are_noted_once(store: Store) -> None:
    old = utcnow() - timedelta(minutes=5)
    store.collection(MIGRATIONS).delete_many({})  # a database of the previous version
    store.collection("tasks").insert_many(
        [
            {"_id": "q", "office": "o1", "dossier": "d1", "kind": "dossier.sync", "payload": {},
             "status": "queued", "submitted_at": old, "queued_at": old, "run": 3},
            {"_id": "r", "office": "o2", "dossier": "d1", "kind": "dossier.sync", "payload": {},
             "status": "running", "submitted_at": old, "queued_at": old, "run": 1},
            {"_id": "w", "office": "o1", "dossier": "d2", "kind": "dossier.sync", "payload": {},
             "status": "waiting", "submitted_at": old},
        ]
    )  # fmt: skip
    store.ensure_indexes()
    notes = {str(n["_id"]): n for n in store.collection(RELEASES).find()}
    assert set(notes) == {"q", "r"} and notes["q"]["key"] == "o1.d1" and notes["q"]["run"] == 3
    store.collection(RELEASES).delete_many({})
    store.ensure_indexes()  # adopted already: reads the tasks no more
    assert _ids(store, RELEASES) == set()
