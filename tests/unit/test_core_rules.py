"""Each rule of the per-dossier core (`dispatcher.core`), by example."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dispatcher import core
from dispatcher.inbound import (
    Act,
    DeadLettered,
    Done,
    Failed,
    Message,
    RetryDue,
    Started,
    Submitted,
    Unreadable,
    reported,
)
from workers.vocabulary import (
    SEVERITY,
    ActionStatus,
    ActionType,
    ErrorCode,
    Failure,
    Severity,
    TaskStatus,
)

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
RULES = core.Rules(retry_delays=(10, 60))
QUEUE = "dossierflow.work.o"


def transient() -> Failure:
    code = ErrorCode.PACKAGE_UNREACHABLE
    return reported(
        Failure(code, SEVERITY[code], True, "unreachable", {"error": "Timeout"}).to_dict()
    )


def permanent(
    code: ErrorCode = ErrorCode.INVALID_PERIOD, severity: Severity | None = None
) -> Failure:
    """A connector's report as the dispatcher decodes it where it enters (`inbound.reported`)."""
    sev = severity or SEVERITY[code]
    return reported(Failure(code, sev, False, "refused", {"period": "2026-13"}).to_dict())


def step(d: core.Dossier, msg: Message, now: datetime = NOW) -> list[core.Effect]:
    return core.step(d, msg, now, RULES)


def submit(d: core.Dossier, *ids: str) -> list[core.Effect]:
    out: list[core.Effect] = []
    for task_id in ids:
        out += step(d, Submitted(task_id, "booking_proposal.process", {"id": task_id}))
    return out


def released(effects: list[core.Effect]) -> list[tuple[str, int]]:
    return [(e.task.id, e.run) for e in effects if isinstance(e, core.Release)]


def of_type(effects: list[core.Effect], kind: type) -> list[Any]:
    return [e for e in effects if isinstance(e, kind)]


def statuses(d: core.Dossier) -> dict[str, TaskStatus]:
    return {t.id: t.status for t in d.tasks.values()}


def failed_head(task_id: str = "t1", *more: str) -> core.Dossier:
    """A dossier whose head failed for good (run 1) and blocks `more`."""
    d = core.Dossier("o", "d")
    submit(d, task_id, *more)
    step(d, Failed(task_id, 1, permanent()))
    return d


# -- accepting and releasing ------------------------------------------------------------------
def test_first_accepted_task_is_released_at_once_with_run_one() -> None:
    d = core.Dossier("o", "d")
    effects = submit(d, "t1")
    assert released(effects) == [("t1", 1)]
    waiting, queued = of_type(effects, core.TaskChange)
    assert waiting.fields == {"status": "waiting", "seq": 0, "accepted_at": NOW}
    assert queued.fields == {
        "status": "queued",
        "queued_at": NOW,
        "next_attempt_at": None,
        "run": 1,
        "attempts": 0,  # a new release starts counting its attempts again
    }
    assert d.active == "t1" and not d.blocked


def test_later_tasks_wait_until_the_head_is_done_then_go_in_submission_order() -> None:
    d = core.Dossier("o", "d")
    assert released(submit(d, "t1", "t2", "t3")) == [("t1", 1)]
    assert [t.seq for t in d.tasks.values()] == [0, 1, 2]
    assert statuses(d) == {"t1": "queued", "t2": "waiting", "t3": "waiting"}
    assert released(step(d, Done("t1", 1, {}, NOW))) == [("t2", 1)]
    assert released(step(d, Done("t2", 1, {}, NOW))) == [("t3", 1)]
    assert released(step(d, Done("t3", 1, {}, NOW))) == [] and d.head is None


def test_a_seen_or_already_accepted_submission_is_ignored() -> None:
    d = core.Dossier("o", "d")
    submit(d, "t1")
    before = copy.deepcopy(d)
    assert submit(d, "t1") == [] and d == before
    assert step(d, Submitted("t9", "k", {}, accepted=True)) == [] and d == before


def test_started_marks_the_task_running_and_done_finishes_it_with_its_result() -> None:
    d = core.Dossier("o", "d")
    submit(d, "t1")
    (change,) = step(d, Started("t1", 1, 2, "w1", NOW))
    assert isinstance(change, core.TaskChange)
    assert change.fields == {"status": "running", "started_at": NOW, "attempts": 2, "worker": "w1"}
    assert change.history[0][0] == "t1/running/r1a2"
    (done,) = step(d, Done("t1", 1, {"booking": "b1"}, NOW + timedelta(seconds=3)))
    assert isinstance(done, core.TaskChange) and done.fields["status"] == "done"
    assert done.fields["result"] == {"booking": "b1"}
    assert done.fields["finished_at"] == NOW + timedelta(seconds=3)
    assert d.tasks == {}


def test_events_of_an_earlier_run_or_another_dossier_change_nothing() -> None:
    d = core.Dossier("o", "d")
    submit(d, "t1")
    step(d, Failed("t1", 1, transient()))
    step(d, RetryDue("t1", 1, 1))  # run 2 released
    before = copy.deepcopy(d)
    for msg in [
        Started("t1", 1, 1, "w", NOW),
        Done("t1", 1, {}, NOW),
        Failed("t1", 1, permanent()),
        DeadLettered("t1", 1, "delivery_limit", QUEUE, 5),
        RetryDue("t1", 1, 1),
        Started("other", 2, 1, "w", NOW),
        Done("other", 2, {}, NOW),
        Failed("other", 2, permanent()),
        RetryDue("other", 2, 1),
    ]:
        assert step(d, msg) == [], msg
    assert d == before


# -- transient failures and retry timers -------------------------------------------------------
def test_a_transient_failure_parks_a_retry_timer_and_its_expiry_releases_a_new_run() -> None:
    d = core.Dossier("o", "d")
    submit(d, "t1", "t2")
    effects = step(d, Failed("t1", 1, transient()))
    assert of_type(effects, core.Timer) == [core.Timer("t1", 10, 1, 1)]
    (change,) = of_type(effects, core.TaskChange)
    assert change.fields["status"] == "retry_wait" and change.fields["retries"] == 1
    assert change.fields["next_attempt_at"] == NOW + timedelta(seconds=10)
    assert released(effects) == [] and not d.blocked and d.active == "t1"
    assert released(step(d, RetryDue("t1", 1, 1))) == [("t1", 2)]
    assert statuses(d) == {"t1": "queued", "t2": "waiting"}


def test_a_duplicate_or_stale_retry_timer_changes_nothing() -> None:
    d = core.Dossier("o", "d")
    submit(d, "t1")
    step(d, Failed("t1", 1, transient()))
    before = copy.deepcopy(d)
    assert step(d, RetryDue("t1", 1, 2)) == [] and d == before  # not this retry's timer
    step(d, RetryDue("t1", 1, 1))
    before = copy.deepcopy(d)
    assert step(d, RetryDue("t1", 1, 1)) == [] and d == before  # the sweeper's copy


def test_transient_failures_beyond_the_retry_delays_fail_the_task_as_unreachable() -> None:
    d = core.Dossier("o", "d")
    submit(d, "t1")
    for run, retry in [(1, 1), (2, 2)]:
        step(d, Failed("t1", run, transient()))
        step(d, RetryDue("t1", run, retry))
    effects = step(d, Failed("t1", 3, transient()))
    (instruct,) = of_type(effects, core.Instruct)
    assert instruct.code == "package_unreachable" and instruct.severity == "orange"
    assert instruct.facts == {"attempts": "3"}
    assert of_type(effects, core.Timer) == [] and d.blocked


# -- failing for good and blocking -------------------------------------------------------------
def test_a_permanent_failure_blocks_the_dossier_and_instructs_with_the_codes_severity() -> None:
    d = core.Dossier("o", "d")
    submit(d, "t1", "t2")
    effects = step(d, Failed("t1", 1, permanent(ErrorCode.INVALID_VAT_CODE, Severity.RED)))
    (instruct,) = of_type(effects, core.Instruct)
    assert instruct == core.Instruct(
        "t1/1",
        "t1",
        "booking_proposal.process",
        "invalid_vat_code",
        "orange",
        {"period": "2026-13"},
    )
    (change,) = of_type(effects, core.TaskChange)
    assert change.fields["status"] == "failed" and change.fields["failures"] == 1
    assert change.fields["error"]["severity"] == "orange"  # the code decides, not the connector
    assert released(effects) == [] and d.blocked and d.active == "t1"


@pytest.mark.parametrize("report", [None, {"code": "no_such_code"}, {"transient": "yes"}])
def test_an_unreadable_error_report_fails_the_task_as_a_red_unknown_error(report: Any) -> None:
    d = core.Dossier("o", "d")
    submit(d, "t1")
    (instruct,) = of_type(step(d, Failed("t1", 1, reported(report))), core.Instruct)
    assert (instruct.code, instruct.severity) == ("unknown_error", "red")


def test_blocked_dossier_releases_nothing_until_restart() -> None:
    d = failed_head("t1", "t2")
    for msg in [
        Submitted("t3", "k", {}),
        Done("t1", 1, {}, NOW),
        Failed("t1", 1, transient()),
        RetryDue("t1", 1, 0),
        Started("t1", 1, 1, "w", NOW),
    ]:
        assert released(step(d, msg)) == [], msg
    assert d.blocked and statuses(d)["t2"] is TaskStatus.WAITING
    effects = step(d, Act("t1", "a1", ActionType.RESTART))
    assert released(effects) == [("t1", 2)] and not d.blocked


def test_restart_with_a_corrected_payload_releases_a_new_run_with_that_payload() -> None:
    d = failed_head("t1", "t2")
    effects = step(d, Act("t1", "a1", ActionType.RESTART, {"period": "2026-12"}))
    assert of_type(effects, core.Decide) == [core.Decide("a1", ActionStatus.APPLIED)]
    assert of_type(effects, core.CloseInstructions) == [core.CloseInstructions("t1", 1, "restart")]
    restart = of_type(effects, core.TaskChange)[0]
    assert restart.fields["payload"] == {"period": "2026-12"} and restart.fields["retries"] == 0
    assert restart.fields["last_action"] == "a1" and restart.fields["error"] is None
    (release,) = of_type(effects, core.Release)
    assert (release.task.id, release.run, release.task.payload) == ("t1", 2, {"period": "2026-12"})


def test_a_second_failure_after_a_restart_gets_its_own_instruction() -> None:
    d = failed_head("t1")
    step(d, Act("t1", "a1", ActionType.RESTART))
    (instruct,) = of_type(step(d, Failed("t1", 2, permanent())), core.Instruct)
    assert instruct.id == "t1/2"
    effects = step(d, Act("t1", "a2", ActionType.RESOLVE))
    assert of_type(effects, core.CloseInstructions) == [core.CloseInstructions("t1", 2, "resolve")]


@pytest.mark.parametrize(
    ("action", "final"),
    [(ActionType.CANCEL, TaskStatus.CANCELLED), (ActionType.RESOLVE, TaskStatus.SKIPPED)],
)
def test_cancel_or_resolve_of_the_failed_head_lets_the_next_task_go(
    action: ActionType, final: TaskStatus
) -> None:
    d = failed_head("t1", "t2")
    effects = step(d, Act("t1", "a1", action))
    finish = of_type(effects, core.TaskChange)[0]
    assert finish.task_id == "t1" and finish.fields["status"] == final.value
    assert finish.fields["last_action"] == "a1"
    assert released(effects) == [("t2", 1)] and list(d.tasks) == ["t2"]


def test_cancel_of_a_waiting_task_behind_the_head_leaves_the_head_alone() -> None:
    d = core.Dossier("o", "d")
    submit(d, "t1", "t2", "t3")
    effects = step(d, Act("t2", "a1", ActionType.CANCEL))
    assert released(effects) == [] and list(d.tasks) == ["t1", "t3"]
    assert released(step(d, Done("t1", 1, {}, NOW))) == [("t3", 1)]


def test_restart_of_a_retry_waiting_task_makes_its_timer_stale() -> None:
    d = core.Dossier("o", "d")
    submit(d, "t1")
    step(d, Failed("t1", 1, transient()))
    assert released(step(d, Act("t1", "a1", ActionType.RESTART))) == [("t1", 2)]
    before = copy.deepcopy(d)
    assert step(d, RetryDue("t1", 1, 1)) == [] and d == before


@pytest.mark.parametrize(
    ("status", "action"),
    [
        ("queued", ActionType.RESTART),
        ("queued", ActionType.CANCEL),
        ("queued", ActionType.RESOLVE),
        ("waiting", ActionType.RESTART),
        ("waiting", ActionType.RESOLVE),
        ("retry_wait", ActionType.RESOLVE),
    ],
)
def test_an_action_on_a_task_in_the_wrong_state_is_refused_with_a_reason(
    status: str, action: ActionType
) -> None:
    d = core.Dossier("o", "d")
    submit(d, "t1", "t2")
    if status == "retry_wait":
        step(d, Failed("t1", 1, transient()))
    task_id = "t2" if status == "waiting" else "t1"
    before = statuses(d)
    effects = step(d, Act(task_id, "a1", action))
    (decide,) = of_type(effects, core.Decide)
    assert decide.status is ActionStatus.REFUSED
    assert status in decide.reason and action.value in decide.reason
    # Only the decision is remembered on the task (no transition, no history entry).
    assert [(c.fields, c.history) for c in of_type(effects, core.TaskChange)] == [
        ({"decided": ["a1"]}, [])
    ]
    assert released(effects) == [] and statuses(d) == before


def test_an_action_on_a_finished_or_unknown_task_is_refused() -> None:
    d = core.Dossier("o", "d")
    submit(d, "t1")
    step(d, Done("t1", 1, {}, NOW))
    for task_id in ["t1", "nope"]:
        (decide,) = step(d, Act(task_id, f"a-{task_id}", ActionType.CANCEL))
        assert isinstance(decide, core.Decide) and decide.status is ActionStatus.REFUSED
        assert "no longer open" in decide.reason
    assert d.tasks == {}


def test_a_replayed_action_changes_nothing_and_its_decision_is_stored_on_the_task() -> None:
    d = failed_head("t1", "t2")
    effects = step(d, Act("t1", "a1", ActionType.RESTART, {"fixed": True}))
    assert of_type(effects, core.TaskChange)[0].fields["decided"] == ["a1"]
    step(d, Failed("t1", 2, permanent()))
    before = copy.deepcopy(d)
    assert step(d, Act("t1", "a1", ActionType.RESTART)) == []  # the decision is written already
    assert d == before


# -- the broker's dead letters -------------------------------------------------------------------
def test_a_dead_letter_at_the_delivery_limit_fails_the_task_with_a_red_instruction() -> None:
    d = core.Dossier("o", "d")
    submit(d, "t1", "t2")
    effects = step(d, DeadLettered("t1", 1, "delivery_limit", QUEUE, 5, b"body"))
    (instruct,) = of_type(effects, core.Instruct)
    assert (instruct.id, instruct.code, instruct.severity) == ("t1/1", "unreadable_message", "red")
    assert instruct.raw == b"body" and instruct.facts == {"reason": "delivery_limit"}
    assert d.blocked and released(effects) == []
    before = copy.deepcopy(d)
    assert step(d, DeadLettered("t1", 1, "delivery_limit", QUEUE, 6, b"body")) == []
    assert d == before


def test_a_dead_letter_of_an_earlier_run_is_ignored() -> None:
    d = failed_head("t1")
    step(d, Act("t1", "a1", ActionType.RESTART))
    before = copy.deepcopy(d)
    assert step(d, DeadLettered("t1", 1, "rejected", QUEUE, 1)) == [] and d == before


def test_a_dead_letter_of_an_unknown_task_is_one_orphan_instruction_and_blocks_nothing() -> None:
    d = core.Dossier("o", "d")
    submit(d, "t1")
    msg = DeadLettered("x9", 1, "delivery_limit", QUEUE, 5, b"body", orphan=True)
    (orphan,) = step(d, msg)
    assert isinstance(orphan, core.Instruct) and orphan.id.startswith("message/o.d/")
    assert (orphan.task_id, orphan.severity) == ("", "red")
    assert step(d, msg) == [orphan]  # the same id: a second insert is a no-op
    assert not d.blocked and statuses(d) == {"t1": "queued"}


def test_an_unreadable_message_of_the_released_task_fails_it() -> None:
    d = core.Dossier("o", "d")
    submit(d, "t1")
    effects = step(d, Unreadable("t1", "rejected", QUEUE, b"\xff"))
    (instruct,) = of_type(effects, core.Instruct)
    assert (instruct.id, instruct.raw) == ("t1/1", b"\xff") and d.blocked


def test_an_unreadable_message_naming_no_open_task_is_an_orphan() -> None:
    d = core.Dossier("o", "d")
    (orphan,) = step(d, Unreadable("", "rejected", QUEUE, b"", orphan=True))
    assert isinstance(orphan, core.Instruct) and orphan.raw == b"(empty)"


# -- crash repair and replays ----------------------------------------------------------------------
def test_repair_republishes_a_queued_head_with_the_same_run() -> None:
    d = core.Dossier(
        "o", "d", 2, {"t1": core.OpenTask("t1", "k", {"a": 1}, 0, TaskStatus.QUEUED, run=3)}
    )
    (release,) = core.repair(d)
    assert isinstance(release, core.Release) and (release.task.id, release.run) == ("t1", 3)


@pytest.mark.parametrize(
    "status",
    [TaskStatus.RUNNING, TaskStatus.FAILED, TaskStatus.RETRY_WAIT, TaskStatus.WAITING],
)
def test_repair_publishes_nothing_for_a_head_that_is_not_queued(status: TaskStatus) -> None:
    d = core.Dossier("o", "d", 1, {"t1": core.OpenTask("t1", "k", {}, 0, status, run=1)})
    assert core.repair(d) == [] and core.repair(core.Dossier("o", "e")) == []


def test_history_ids_are_fixed_per_transition_so_a_replay_inserts_nothing_new() -> None:
    d = core.Dossier("o", "d")
    ids = [h[0] for e in submit(d, "t1") if isinstance(e, core.TaskChange) for h in e.history]
    assert ids == ["t1/waiting/accepted", "t1/queued/r1"]
    fail = of_type(step(d, Failed("t1", 1, permanent())), core.TaskChange)[0]
    assert fail.history[0][0] == "t1/failed/1"


def test_a_replayed_failure_creates_no_second_instruction() -> None:
    d = failed_head("t1", "t2")
    before = copy.deepcopy(d)
    assert step(d, Failed("t1", 1, permanent())) == [] and d == before


# -- replays that once changed something (fixed in core.py, kept as regressions) --------------
def test_replaying_an_earlier_attempts_started_changes_nothing() -> None:
    d = core.Dossier("o", "d")
    submit(d, "t1")
    step(d, Started("t1", 1, 1, "w1", NOW))
    step(d, Started("t1", 1, 2, "w2", NOW + timedelta(seconds=5)))  # in-place retry
    before = copy.deepcopy(d)
    assert step(d, Started("t1", 1, 1, "w1", NOW)) == []  # the first one, redelivered
    assert step(d, Started("t1", 1, 2, "w2", NOW + timedelta(seconds=5))) == []
    assert d == before


def test_a_new_run_starts_counting_attempts_again() -> None:
    d = core.Dossier("o", "d")
    submit(d, "t1")
    step(d, Started("t1", 1, 2, "w1", NOW))
    step(d, Failed("t1", 1, transient()))
    step(d, RetryDue("t1", 1, 1))
    (change,) = step(d, Started("t1", 2, 1, "w1", NOW))
    assert isinstance(change, core.TaskChange) and change.fields["attempts"] == 1


def test_replaying_an_unreadable_message_after_a_restart_changes_nothing() -> None:
    d = core.Dossier("o", "d")
    submit(d, "t1")
    poison = Unreadable("t1", "delivery_limit", QUEUE, b"\xff", redelivered=False)
    fail = of_type(step(d, poison), core.TaskChange)[0]
    assert len(fail.fields["dead_letters"]) == 1  # stored: a successor knows it too
    step(d, Act("t1", "a1", ActionType.RESTART, {"fixed": True}))  # run 2 queued
    before = copy.deepcopy(d)
    assert step(d, replace(poison, redelivered=True)) == []
    assert d == before
    # Other damaged bytes are a new dead letter, even redelivered: they fail the new run.
    assert of_type(step(d, Unreadable("t1", "rejected", QUEUE, b"\xfe")), core.Instruct)


def test_a_new_dead_letter_with_the_bytes_of_an_earlier_one_still_fails_the_task() -> None:
    # Once taken for a replay of run 1's dead letter: run 2 stayed queued with no message
    # anywhere and the dossier was stuck without an instruction.
    d = core.Dossier("o", "d")
    submit(d, "t1", "t2")
    damaged = b"\xff\xfe"  # e.g. a body cut at a fixed size, the same for every run
    first = Unreadable("t1", "delivery_limit", QUEUE, damaged, redelivered=False)
    step(d, first)  # run 1: failed, instructed
    step(d, Act("t1", "a1", ActionType.RESTART))  # run 2 released
    # Run 2's message is damaged the same way and dead-lettered: the same bytes, but a
    # first delivery, so no replay of run 1's (that one would come redelivered).
    effects = step(d, Unreadable("t1", "delivery_limit", QUEUE, damaged, redelivered=False))
    (instruct,) = of_type(effects, core.Instruct)
    assert (instruct.id, instruct.severity, instruct.raw) == ("t1/2", "red", damaged)
    assert d.blocked and statuses(d) == {"t1": "failed", "t2": "waiting"}
    before = copy.deepcopy(d)
    for again in (first, replace(first, redelivered=True)):  # either run's, once more
        assert step(d, again) == [] and d == before


def test_a_dead_letter_says_its_run_so_an_earlier_runs_never_fails_the_current_one() -> None:
    # Work messages carry the run they were released under (the `run` header, kept in
    # the dead letter): what the redelivered flag can only guess, the run settles.
    d = core.Dossier("o", "d")
    submit(d, "t1", "t2")
    damaged = b"\xff\xfe"
    run1 = Unreadable("t1", "delivery_limit", QUEUE, damaged, redelivered=False, run=1)
    step(d, run1)
    step(d, Act("t1", "a1", ActionType.RESTART))  # run 2 released
    # A second copy of run 1's dead letter (at-least-once dead-lettering), in a first
    # delivery: without the run it would fail run 2.
    assert step(d, run1) == [] and statuses(d)["t1"] == "queued"
    # Run 2's own dead letter fails it, even redelivered with bytes seen before (the
    # owner that took it first died before handling it).
    run2 = replace(run1, redelivered=True, run=2)
    (instruct,) = of_type(step(d, run2), core.Instruct)
    assert instruct.id == "t1/2" and statuses(d)["t1"] == "failed"
    before = copy.deepcopy(d)
    assert step(d, run2) == [] and d == before


def test_replaying_a_refused_action_changes_nothing() -> None:
    d = core.Dossier("o", "d")
    submit(d, "t1", "t2")
    cancel = Act("t1", "a1", ActionType.CANCEL)
    (refused,) = of_type(step(d, cancel), core.Decide)  # t1 is queued: refused
    assert refused.status is ActionStatus.REFUSED
    step(d, Failed("t1", 1, permanent()))
    before = copy.deepcopy(d)
    assert step(d, cancel) == []  # redelivered once t1 could be cancelled: still refused
    assert d == before


def test_replaying_a_superseded_restart_changes_nothing() -> None:
    d = failed_head("t1")
    first = Act("t1", "a1", ActionType.RESTART, {"period": "2026-11"})
    step(d, first)
    step(d, Failed("t1", 2, permanent()))
    step(d, Act("t1", "a2", ActionType.RESTART, {"period": "2026-12"}))
    step(d, Failed("t1", 3, permanent()))
    before = copy.deepcopy(d)
    assert step(d, first) == []  # redelivered: a1's payload does not come back
    assert d == before


def test_a_late_dead_letter_of_a_finished_task_of_ours_is_ignored() -> None:
    d = failed_head("t1")
    late = DeadLettered("t1", 1, "rejected", QUEUE, 1, b"body")
    assert step(d, late) == []  # t1 failed already: ignored
    step(d, Act("t1", "a1", ActionType.RESOLVE))
    # The owner looked t1 up: ours, finished. No instruction for support.
    assert step(d, late) == []
    assert step(d, Unreadable("t1", "rejected", QUEUE, b"\xff")) == []


def _late(task_id: str) -> Submitted:
    """A command the broker delivered again, or the sweeper announced: it may come late."""
    return Submitted(task_id, "booking_proposal.process", {"id": task_id}, recheck=True)


def test_a_late_command_goes_before_the_waiting_tasks_submitted_after_it() -> None:
    # Seen in a 10,000-task chaos run: after a change of owner the broker delivered t2's
    # command again after t3's and t4's; t2 ran after them.
    d = core.Dossier("o", "d")
    submit(d, "t1", "t3", "t4")  # t1 released, t3 and t4 wait
    effects = step(d, _late("t2"))
    assert list(d.tasks) == ["t1", "t2", "t3", "t4"]
    assert [t.seq for t in d.tasks.values()] == [0, 1, 2, 3]
    seqs = {e.task_id: e.fields["seq"] for e in of_type(effects, core.TaskChange)}
    assert seqs == {"t2": 1, "t3": 2, "t4": 3}  # each moved task's new place is written
    step(d, Done("t1", 1, {}, NOW))
    assert d.head is not None and d.head.id == "t2"


def test_a_late_command_never_overtakes_a_released_task() -> None:
    d = core.Dossier("o", "d")
    submit(d, "t3", "t4")  # t3 released: its run cannot be taken back
    step(d, _late("t2"))
    assert list(d.tasks) == ["t3", "t2", "t4"]
    assert d.tasks["t3"].status is TaskStatus.QUEUED


def test_commands_in_their_first_delivery_keep_their_arrival_order() -> None:
    # Ids order one client's submissions; between clients clocks differ, so a command
    # delivered once is placed where it arrives.
    d = core.Dossier("o", "d")
    submit(d, "t1", "t3", "t2")
    assert list(d.tasks) == ["t1", "t3", "t2"]
