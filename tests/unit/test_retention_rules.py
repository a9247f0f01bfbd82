"""What retention may delete, decided from documents alone (no database)."""

from __future__ import annotations

from typing import Any

import pytest

from dossierflow.settings import Settings, SettingsError
from store.retention import chunks, instruction_ids, prunable_mails, prunable_tasks


def _task(tid: str, status: str, seq: int | None, dossier: str = "d1", **more: Any) -> Any:
    return {"_id": tid, "office": "o1", "dossier": dossier, "status": status, "seq": seq, **more}


def _dossier(head: int, blocked: bool = False) -> Any:
    return {"head": head, "blocked": blocked}


def test_only_finished_tasks_before_the_head_of_a_dossier_not_blocked_go() -> None:
    tasks = [
        _task("done", "done", 0),
        _task("cancelled", "cancelled", 1),
        _task("skipped", "skipped", 2),
        _task("failed", "failed", 3),  # blocks its dossier: a person must act
        _task("retry", "retry_wait", 4),
        _task("waiting", "waiting", 5),
        _task("late", "done", 7),  # at or after the head: its document may be stale
        _task("unseen", "done", None),  # never numbered: an odd state, left alone
    ]
    kept = prunable_tasks(tasks, {"o1.d1": _dossier(head=6)})
    assert [t["_id"] for t in kept] == ["done", "cancelled", "skipped"]


def test_nothing_of_a_blocked_or_unknown_dossier_goes() -> None:
    tasks = [_task("a", "done", 0, "blocked"), _task("b", "done", 0, "unknown")]
    assert prunable_tasks(tasks, {"o1.blocked": _dossier(head=5, blocked=True)}) == []


def test_a_task_takes_every_instruction_it_failed_with() -> None:
    tasks = [{"_id": "t1", "failures": 2}, {"_id": "t2", "failures": 0}, {"_id": "t3"}]
    assert instruction_ids(tasks) == ["t1/1", "t1/2"]


def test_mails_about_an_open_instruction_and_pending_mails_stay() -> None:
    mails = [
        {"_id": "m1", "status": "sent", "kind": "digest", "ref": "2026-01-05"},
        {"_id": "m2", "status": "sent", "kind": "instruction", "ref": "t1/1"},
        {"_id": "m3", "status": "marker", "kind": "instruction_fanout", "ref": "t1/1"},
        {"_id": "m4", "status": "failed", "kind": "instruction", "ref": "t2/1"},
        {"_id": "m5", "status": "pending", "kind": "digest", "ref": "2026-01-05"},
    ]
    assert prunable_mails(mails, open_instructions={"t1/1"}) == ["m1", "m4"]


def test_deletes_are_cut_in_bounded_batches() -> None:
    ids = [str(n) for n in range(1201)]
    assert [len(c) for c in chunks(ids, 500)] == [500, 500, 201]
    assert [i for c in chunks(ids, 500) for i in c] == ids


@pytest.mark.parametrize(
    ("name", "value"),
    [("DOSSIERFLOW_RETENTION_DAYS", "-1"), ("DOSSIERFLOW_RETENTION_BATCH", "1001")],
)
def test_bad_retention_settings_are_refused(name: str, value: str) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env({name: value})


def test_retention_defaults_to_90_days_and_0_turns_it_off() -> None:
    assert Settings.from_env({}).retention_days == 90
    assert Settings.from_env({"DOSSIERFLOW_RETENTION_DAYS": "0"}).retention_days == 0
