"""Retention on the real server: what goes, what stays, in bounded deletes, by one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
from pymongo import monitoring

from broker.messages import utcnow
from dispatcher.retention import RETENTION_LEASE, Pruner
from dispatcher.service import SWEEPER_LEASE, Dispatcher
from dossierflow.settings import Settings
from store import Store
from store.outbox import OUTBOX

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NOW = utcnow()
OLD = NOW - timedelta(days=100)
RECENT = NOW - timedelta(days=10)


def _task(tid: str, key: str, seq: int | None, status: str, at: datetime, **more: Any) -> Any:
    office, dossier = key.split(".")
    doc = {
        "_id": tid,
        "office": office,
        "dossier": dossier,
        "kind": "dossier.sync",
        "payload": {"dossier_code": "c"},
        "status": status,
        "submitted_at": at,
        "finished_at": at if status in ("done", "cancelled", "skipped", "failed") else None,
        "history": [{"id": f"{tid}/h", "at": at, "status": status, "note": ""}],
        "failures": 0,
        **more,
    }
    if seq is not None:
        doc["seq"] = seq
    return doc


def _dossier(key: str, head: int, next_seq: int, *, blocked: bool = False, open_: int = 0) -> Any:
    office, dossier = key.split(".")
    return {
        "_id": key,
        "office": office,
        "dossier": dossier,
        "head": head,
        "next_seq": next_seq,
        "blocked": blocked,
        "open": open_,
        "active": None,
    }


def _instruction(iid: str, key: str, status: str, at: datetime) -> Any:
    office, dossier = key.split(".")
    task_id = iid.rsplit("/", 1)[0] if "/" in iid else ""
    return {
        "_id": iid,
        "task_id": task_id,
        "office": office,
        "dossier": dossier,
        "code": "WRONG_PERIOD",
        "severity": "orange",
        "status": status,
        "created_at": at,
        "resolved_at": at if status == "resolved" else None,
    }


def _mail(mid: str, kind: str, status: str, at: datetime, ref: str = "") -> Any:
    return {
        "_id": mid,
        "kind": kind,
        "office": "o1",
        "status": status,
        "created_at": at,
        "ref": ref,
    }


def _history_store(store: Store) -> None:
    """Four dossiers: idle, blocked, busy, and busy with a document a crash left behind."""
    store.collection("dossiers").insert_many(
        [
            _dossier("o1.idle", head=6, next_seq=6),
            _dossier("o1.blocked", head=2, next_seq=3, blocked=True, open_=1),
            _dossier("o1.busy", head=3, next_seq=5, open_=2),
            # Written when task 0 started; task 1 finished after, the write that said so lost.
            _dossier("o1.stale", head=1, next_seq=2, open_=1),
        ]
    )
    store.collection("tasks").insert_many(
        [
            _task("idle0", "o1.idle", 0, "done", OLD),
            _task("idle1", "o1.idle", 1, "done", OLD),
            # Failed, restarted, then done: its instruction was resolved by the restart.
            _task("idle2", "o1.idle", 2, "done", OLD, failures=1),
            _task("idle3", "o1.idle", 3, "skipped", OLD, failures=1),
            # Failed, then cancelled: finished, like a done one.
            _task("idle4", "o1.idle", 4, "cancelled", OLD, failures=2),
            _task("idle5", "o1.idle", 5, "done", RECENT),
            _task("blocked0", "o1.blocked", 0, "done", OLD),
            _task("blocked1", "o1.blocked", 1, "cancelled", OLD, failures=1),
            _task("blocked2", "o1.blocked", 2, "failed", OLD, failures=1),
            _task("busy0", "o1.busy", 0, "done", OLD),
            _task("busy1", "o1.busy", 1, "cancelled", OLD),
            _task("busy2", "o1.busy", 2, "done", OLD),
            _task("busy3", "o1.busy", 3, "running", OLD),
            _task("busy4", "o1.busy", 4, "waiting", OLD),
            _task("busy5", "o1.busy", None, "submitted", OLD),
            _task("stale0", "o1.stale", 0, "done", OLD),
            _task("stale1", "o1.stale", 1, "done", OLD),
        ]
    )
    store.collection("instructions").insert_many(
        [
            _instruction("idle2/1", "o1.idle", "resolved", OLD),
            _instruction("idle3/1", "o1.idle", "resolved", OLD),
            _instruction("idle4/1", "o1.idle", "resolved", OLD),
            _instruction("idle4/2", "o1.idle", "resolved", OLD),
            _instruction("unreadable-1", "o1.idle", "resolved", OLD),  # named no task
            _instruction("unreadable-2", "o1.idle", "resolved", RECENT),
            _instruction("gone/1", "o1.idle", "resolved", OLD),  # its task pruned before
            _instruction("blocked1/1", "o1.blocked", "resolved", OLD),
            _instruction("blocked2/1", "o1.blocked", "open", OLD),
            _instruction("unreadable-3", "o1.blocked", "resolved", OLD),
        ]
    )
    store.collection(OUTBOX).insert_many(
        [
            _mail("digest:u1:old", "digest", "sent", OLD),
            _mail("digest:u1:recent", "digest", "sent", RECENT),
            _mail("digest:u2:old", "digest", "failed", OLD),
            _mail("digest:u3:old", "digest", "pending", OLD),
            _mail("instruction:idle4/1:u1", "instruction", "sent", OLD, "idle4/1"),
            _mail("instruction:idle4/1", "instruction_fanout", "marker", OLD, "idle4/1"),
            # About an instruction still open: without it, the next pass would mail it again.
            _mail("instruction:blocked2/1:u1", "instruction", "sent", OLD, "blocked2/1"),
            _mail("instruction:blocked2/1", "instruction_fanout", "marker", OLD, "blocked2/1"),
        ]
    )


def _ids(store: Store, name: str) -> set[str]:
    return {str(d["_id"]) for d in store.collection(name).find({}, {"_id": 1})}


class _Deletes(monitoring.CommandListener):
    """Records every delete command: its statements and the ids of each."""

    def __init__(self) -> None:
        self.commands: list[list[int]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "delete":
            sizes = [len(d["q"]["_id"]["$in"]) for d in event.command["deletes"]]
            self.commands.append(sizes)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def test_prune_removes_old_finished_work_and_keeps_the_rest(
    settings: Settings, store: Store
) -> None:
    _history_store(store)
    deletes = _Deletes()
    watched = Store.connect(settings.mongo_url, settings.mongo_db, listeners=[deletes])
    try:
        report = watched.retention(batch=2).prune(NOW - timedelta(days=90))
    finally:
        watched.close()

    assert _ids(store, "tasks") == {
        "idle5",  # recent
        "blocked0", "blocked1", "blocked2",  # a blocked dossier keeps everything
        "busy3", "busy4", "busy5",  # open: running, waiting, not yet accepted
        "stale1",  # at or after the head its stale document names
    }  # fmt: skip
    assert _ids(store, "instructions") == {
        "unreadable-2",
        "blocked1/1",
        "blocked2/1",
        "unreadable-3",
    }
    assert _ids(store, OUTBOX) == {
        "digest:u1:recent",
        "digest:u3:old",
        "instruction:blocked2/1:u1",
        "instruction:blocked2/1",
    }
    assert (report.tasks, report.instructions, report.mails) == (9, 6, 4)
    assert report.complete
    # One statement per delete command, never more ids than the batch.
    assert deletes.commands and all(c == [n] and n <= 2 for c in deletes.commands for n in c)
    assert [n for c in deletes.commands for n in c] == report.batches


def test_dry_run_counts_and_deletes_nothing(store: Store) -> None:
    _history_store(store)
    before = {name: _ids(store, name) for name in ("tasks", "instructions", OUTBOX)}
    report = store.retention().prune(NOW - timedelta(days=90), dry_run=True)
    assert (report.tasks, report.mails) == (9, 4)
    assert {name: _ids(store, name) for name in before} == before


def test_a_pass_stops_when_told_and_the_next_goes_on(store: Store) -> None:
    store.collection("dossiers").insert_one(_dossier("o1.many", head=30, next_seq=30))
    store.collection("tasks").insert_many(
        [_task(f"t{n:02}", "o1.many", n, "done", OLD) for n in range(30)]
    )
    retention = store.retention(batch=5, scan=12)
    calls: list[int] = []

    def pause() -> bool:
        calls.append(1)
        return len(calls) < 2  # one pause allowed: two deletes

    first = retention.prune(NOW - timedelta(days=90), pause)
    assert first.tasks == 10 and not first.complete
    assert len(_ids(store, "tasks")) == 20
    while not retention.prune(NOW - timedelta(days=90)).complete:
        pass
    assert retention.prune(NOW - timedelta(days=90)).complete
    assert _ids(store, "tasks") == set()


def test_a_long_blocked_dossier_does_not_hide_older_work_beyond_the_scan(store: Store) -> None:
    store.collection("dossiers").insert_many(
        [_dossier("o1.stuck", head=20, next_seq=21, blocked=True), _dossier("o1.idle", 5, 5)]
    )
    stuck = [_task(f"s{n:02}", "o1.stuck", n, "done", OLD - timedelta(days=9)) for n in range(20)]
    idle = [_task(f"i{n}", "o1.idle", n, "done", OLD) for n in range(5)]
    store.collection("tasks").insert_many(stuck + idle)
    retention = store.retention(batch=5, scan=8)
    for _ in range(6):
        retention.prune(NOW - timedelta(days=90))
    assert _ids(store, "tasks") == {t["_id"] for t in stuck}


def test_only_the_retention_lease_holder_prunes(settings: Settings, store: Store) -> None:
    settings = replace(settings, retention_days=90, retention_pause_ms=0)
    _history_store(store)
    seq = store.sequencing
    assert seq.lease(RETENTION_LEASE, "other", utcnow(), utcnow() + timedelta(minutes=5))
    pruner = Pruner(settings, store, "me", threading.Event())
    assert pruner.run() is None
    assert len(_ids(store, "tasks")) == 17

    # The other holder's lease runs out: now this one prunes.
    assert seq.lease(RETENTION_LEASE, "other", utcnow(), utcnow() - timedelta(seconds=1))
    report = pruner.run()
    assert report is not None and report.tasks == 9


def test_the_sweeper_prunes_only_while_it_holds_the_sweeper_lease(
    settings: Settings, store: Store
) -> None:
    settings = replace(settings, retention_days=90, retention_pause_ms=0)
    _history_store(store)
    seq = store.sequencing
    dispatcher = Dispatcher(settings, store, threading.Event())
    assert seq.lease(SWEEPER_LEASE, "other", utcnow(), utcnow() + timedelta(minutes=5))
    dispatcher._sweep_if_due()
    assert len(_ids(store, "tasks")) == 17, "pruned without the sweeper lease"

    assert seq.lease(SWEEPER_LEASE, "other", utcnow(), utcnow() - timedelta(seconds=1))
    dispatcher._next_sweep = 0.0
    # No broker connection: the sweep itself fails; retention needs only the store.
    dispatcher._sweep_if_due()
    assert len(_ids(store, "tasks")) == 8


def test_zero_days_keeps_everything(settings: Settings, store: Store) -> None:
    _history_store(store)
    pruner = Pruner(replace(settings, retention_days=0), store, "me", threading.Event())
    assert pruner.run_if_due() is None
    assert len(_ids(store, "tasks")) == 17


def test_prune_command_counts_then_deletes(settings: Settings, store: Store) -> None:
    _history_store(store)
    env = {
        **os.environ,
        "DOSSIERFLOW_MONGO_URL": settings.mongo_url,
        "DOSSIERFLOW_MONGO_DB": settings.mongo_db,
        "DOSSIERFLOW_RETENTION_PAUSE_MS": "0",
        "DOSSIERFLOW_LOG_LEVEL": "warning",
    }

    def prune(*args: str) -> dict[str, Any]:
        command = [sys.executable, "-m", "dossierflow", "prune", "--json", *args]
        run = {"env": env, "capture_output": True, "text": True, "timeout": 60}
        done = subprocess.run(command, check=False, **run)
        assert done.returncode == 0, done.stderr
        out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return out

    dry = prune("--dry-run")
    assert (dry["dry_run"], dry["tasks"], dry["mails"]) == (True, 9, 4)
    assert len(_ids(store, "tasks")) == 17
    done = prune("--days", "90")
    assert (done["tasks"], done["instructions"], done["mails"]) == (9, 6, 4)
    assert done["complete"] and len(_ids(store, "tasks")) == 8
