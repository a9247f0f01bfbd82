"""A release whose work message is gone: the sweeper's decision and the owner's rule (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from broker import topology
from broker.messages import Envelope, MessageType, encode, format_ts
from dispatcher import core
from dispatcher.batchwrite import Collector
from dispatcher.inbound import Done, ReleaseLost, Started, Submitted, inbound
from dispatcher.lostwork import IdleWatch, QueueFigures, lost_releases
from workers.vocabulary import TaskStatus

NOW = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)
RULES = core.Rules(retry_delays=(10,))
PART = topology.partition_queue(0)
S = timedelta(seconds=1)


# -- the sweeper: is the office's work queue idle, and since when ---------------------------
def test_a_queue_is_idle_only_with_no_ready_and_no_unacked_message_or_when_it_is_gone() -> None:
    assert QueueFigures.of(None).idle  # deleted: it holds nothing
    assert QueueFigures.of({"messages_ready": 0, "messages_unacknowledged": 0}).idle
    assert not QueueFigures.of({"messages_ready": 1, "messages_unacknowledged": 0}).idle
    assert not QueueFigures.of({"messages_ready": 0, "messages_unacknowledged": 1}).idle
    # No statistics yet (just declared, no leader): not known, so not idle.
    assert not QueueFigures.of({"name": "dossierflow.work.o1"}).idle


def test_the_watch_keeps_when_a_queue_was_first_seen_idle_and_starts_over_when_it_was_not() -> None:
    idle, busy = QueueFigures(True, 0, 0), QueueFigures(True, 0, 1)
    watch = IdleWatch()
    assert watch.observe({"o1": idle, "o2": busy}, NOW) == {"o1": NOW}
    assert watch.observe({"o1": idle, "o2": idle}, NOW + 5 * S) == {"o1": NOW, "o2": NOW + 5 * S}
    # Busy once, unknown once (None), or not looked at: the watch starts over.
    assert watch.observe({"o1": busy, "o2": None}, NOW + 6 * S) == {}
    assert watch.observe({"o1": idle, "o2": idle}, NOW + 7 * S) == {
        "o1": NOW + 7 * S,
        "o2": NOW + 7 * S,
    }
    assert watch.observe({"o2": idle}, NOW + 8 * S) == {"o2": NOW + 7 * S}
    assert watch.observe({"o1": idle, "o2": idle}, NOW + 9 * S) == {
        "o1": NOW + 9 * S,
        "o2": NOW + 7 * S,
    }


def _task(task_id: str, status: str, queued_at: datetime, office: str = "o1") -> dict[str, Any]:
    return {
        "_id": task_id,
        "office": office,
        "dossier": "d1",
        "status": status,
        "run": 2,
        "queued_at": queued_at,
    }


def test_a_release_is_lost_once_its_queue_stayed_idle_for_the_grace_after_it_was_stored() -> None:
    tasks = [
        _task("queued-old", "queued", NOW - 60 * S),
        _task("running-old", "running", NOW - 60 * S),
        _task("queued-young", "queued", NOW - 10 * S),  # released within the grace
        _task("done", "done", NOW - 60 * S),
        _task("busy-office", "queued", NOW - 60 * S, office="o2"),
        _task("waiting", "waiting", NOW - 60 * S),
    ]
    lost = lost_releases(tasks, {"o1": NOW - 40 * S}, NOW, grace_s=30, lag_s=5)
    # The figures are up to 5 s old: the queue was surely empty 5 s ago.
    assert [(x.task_id, x.run, x.empty_at) for x in lost] == [
        ("queued-old", 2, NOW - 5 * S),
        ("running-old", 2, NOW - 5 * S),
    ]
    # The queue seen idle only since less than the grace: not yet.
    assert lost_releases(tasks, {"o1": NOW - 20 * S}, NOW, grace_s=30, lag_s=5) == []


def test_looks_at_figures_that_may_predate_the_release_do_not_count() -> None:
    # The queue was idle long before; the release was stored 34 s ago and the figures lag
    # 5 s: the looks of its first 5 s may not have seen its message yet.
    idle = {"o1": NOW - 300 * S}
    young = [_task("t1", "queued", NOW - 34 * S)]
    assert lost_releases(young, idle, NOW, grace_s=30, lag_s=5) == []
    (lost,) = lost_releases([_task("t1", "queued", NOW - 35 * S)], idle, NOW, grace_s=30, lag_s=5)
    assert lost.empty_at == NOW - 5 * S


# -- the command ---------------------------------------------------------------------------
def test_the_command_carries_the_run_and_when_the_queue_was_surely_empty() -> None:
    data = {"run": 3, "empty_at": format_ts(NOW - 5 * S)}
    env = Envelope(MessageType.RELEASE_LOST, "t1", "o1", "d1", NOW, data)
    got = inbound(encode(env), "t1", "o1.d1", None, redelivered=False).message
    assert got == ReleaseLost("t1", 3, NOW - 5 * S)
    for bad in ({"run": 3}, {"empty_at": format_ts(NOW)}, {"run": 3, "empty_at": "soon"}):
        env = Envelope(MessageType.RELEASE_LOST, "t1", "o1", "d1", NOW, bad)
        assert inbound(encode(env), "t1", "o1.d1", None, redelivered=False).message is None


# -- the owner's rule ----------------------------------------------------------------------
def _released(*ids: str) -> core.Dossier:
    d = core.Dossier("o1", "d1")
    for task_id in ids:
        core.step(d, Submitted(task_id, "dossier.sync", {"dossier_code": "c"}), NOW, RULES)
    return d


def _releases(effects: list[core.Effect]) -> list[tuple[str, int]]:
    return [(e.task.id, e.run) for e in effects if isinstance(e, core.Release)]


def test_a_lost_release_goes_out_again_under_a_new_run_and_the_old_run_is_stale() -> None:
    d = _released("t1", "t2")
    later = NOW + 60 * S
    effects = core.step(d, ReleaseLost("t1", 1, NOW + 10 * S), later, RULES)
    assert _releases(effects) == [("t1", 2)]
    (change,) = [e for e in effects if isinstance(e, core.TaskChange)]
    assert change.fields["status"] == "queued" and change.fields["run"] == 2
    assert change.fields["queued_at"] == later and change.history[0][0] == "t1/queued/r2"
    # The old run's events change nothing; the new run's finish the task and release t2.
    assert core.step(d, Started("t1", 1, 1, "w", later), later, RULES) == []
    assert core.step(d, Done("t1", 1, {}, later), later, RULES) == []
    assert _releases(core.step(d, Done("t1", 2, {}, later), later, RULES)) == [("t2", 1)]


def test_a_running_task_whose_message_is_gone_is_released_again() -> None:
    d = _released("t1")
    core.step(d, Started("t1", 1, 1, "w", NOW), NOW, RULES)
    effects = core.step(d, ReleaseLost("t1", 1, NOW + 10 * S), NOW + 60 * S, RULES)
    assert _releases(effects) == [("t1", 2)] and d.tasks["t1"].status is TaskStatus.QUEUED


def test_a_report_of_an_earlier_run_or_a_task_no_longer_in_flight_changes_nothing() -> None:
    d = _released("t1", "t2")
    assert core.step(d, ReleaseLost("t1", 0, NOW + S), NOW + 60 * S, RULES) == []
    assert core.step(d, ReleaseLost("t2", 0, NOW + S), NOW + 60 * S, RULES) == []  # waiting
    core.step(d, Done("t1", 1, {}, NOW), NOW, RULES)
    assert core.step(d, ReleaseLost("t1", 1, NOW + S), NOW + 60 * S, RULES) == []  # done


def test_a_release_published_again_after_the_queue_was_seen_empty_is_not_released_again() -> None:
    d = _released("t1")
    # Loaded by a new owner that republished it (same run) at takeover, after the queue
    # was seen empty: that publish may still be on its way.
    republished = NOW + 20 * S
    assert _releases(core.repair(d, republished)) == [("t1", 1)]
    assert core.step(d, ReleaseLost("t1", 1, NOW + 10 * S), NOW + 60 * S, RULES) == []
    # Published before the queue was seen empty, or at that very moment: it is gone.
    assert _releases(core.step(d, ReleaseLost("t1", 1, republished), NOW + 60 * S, RULES)) == [
        ("t1", 2)
    ]


def test_a_batch_notes_each_release_before_the_task_and_drops_the_note_when_it_lands() -> None:
    d = core.Dossier("o1", "d1")
    out = Collector(NOW, batch=1)
    for msg in (
        Submitted("t1", "dossier.sync", {"dossier_code": "c"}),
        Submitted("t2", "dossier.sync", {"dossier_code": "c"}),
    ):
        out.add(d, PART, 1, core.step(d, msg, NOW, RULES))
    write = out.finish()
    assert write.releases == [("t1", "o1.d1", 1, NOW)] and write.landed == []
    out = Collector(NOW, batch=2)
    out.add(d, PART, 1, core.step(d, Done("t1", 1, {}, NOW), NOW, RULES))
    write = out.finish()
    assert write.landed == ["t1"] and write.releases == [("t2", "o1.d1", 1, NOW)]
