"""The chaos checker on hand-made logs: a clean run counts nothing, and each counter can fail."""

from __future__ import annotations

from dataclasses import replace

from dossierflow.tools.chaoscheck import (
    Accepted,
    AppliedAction,
    FaultWindow,
    Instruction,
    Observed,
    Poison,
    StoredTask,
    check,
)
from dossierflow.tools.chaosreport import per_fault, render
from workers.accounting.ordercheck import Execution

D = ("office1", "d0001")


def run(task: str, start: float, end: float | None, outcome: str | None = "ok") -> Execution:
    """One logged port call of a booking in dossier D."""
    return Execution(0, task, *D, "booking_proposal.process", 1, "book", start, end, outcome)


def clean() -> Observed:
    """Three tasks of one dossier, run one after the other, each booked once."""
    return Observed(
        accepted=[Accepted(t, *D, at=float(i)) for i, t in enumerate(["a", "b", "c"])],
        executions=[run("a", 10, 11), run("b", 12, 13), run("c", 14, 15)],
        bookings_per_key={"a": 1, "b": 1, "c": 1},
        tasks={t: StoredTask(t, "done") for t in "abc"},
        blocked=frozenset(),
    )


def counts(obs: Observed) -> dict[str, int]:
    verdict = check(obs)
    return {f.counter: verdict.count(f.counter) for f in verdict.findings}


def test_a_clean_run_counts_nothing() -> None:
    assert check(clean()).ok


def test_a_task_that_never_ran_is_lost_whatever_the_store_says() -> None:
    obs = clean()
    obs.executions = [e for e in obs.executions if e.task_id != "c"]
    assert counts(obs) == {"lost": 1}


def test_a_crashed_run_that_was_never_repeated_is_lost() -> None:
    obs = clean()
    obs.executions = [*obs.executions[:2], run("c", 14, None, None)]
    assert counts(obs) == {"lost": 1}


def test_a_task_cancelled_by_a_person_is_not_lost_but_one_cancelled_by_nobody_is() -> None:
    obs = clean()
    obs.executions = obs.executions[:2]
    obs.tasks = {**obs.tasks, "c": StoredTask("c", "cancelled")}
    assert counts(obs) == {"lost": 1}
    obs.actions = [AppliedAction("c", "cancel")]
    assert check(obs).ok


def test_a_key_booked_twice_is_double_booked() -> None:
    obs = clean()
    obs.bookings_per_key = {**obs.bookings_per_key, "b": 2}
    assert counts(obs) == {"double-booked": 1}


def test_a_task_started_before_the_one_submitted_earlier_finished_is_out_of_order() -> None:
    obs = clean()
    obs.executions = [run("a", 10, 13), run("b", 12, 14), run("c", 15, 16)]
    assert counts(obs) == {"out of order": 1}


def test_a_redelivered_earlier_task_running_again_later_is_not_out_of_order() -> None:
    obs = clean()
    obs.executions = [*obs.executions, run("a", 14.5, 14.6)]
    assert check(obs).ok


def test_a_restarted_task_holds_back_the_later_ones_until_its_successful_run() -> None:
    obs = clean()
    obs.executions = [
        run("a", 10, 11, "invalid_period"),
        run("b", 12, 13),  # ran while a was failed: b overtook a
        run("a", 14, 15),
        run("c", 16, 17),
    ]
    obs.actions = [AppliedAction("a", "restart")]
    obs.instructions = [Instruction("a/1", "a", *D)]
    assert counts(obs) == {"out of order": 1}
    obs.executions = [obs.executions[0], obs.executions[2], run("b", 15.5, 15.9), run("c", 16, 17)]
    assert check(obs).ok


def test_a_cancelled_failed_task_holds_nothing_back() -> None:
    obs = clean()
    obs.executions = [run("a", 10, 11, "unknown_error"), run("b", 12, 13), run("c", 14, 15)]
    obs.tasks = {**obs.tasks, "a": StoredTask("a", "cancelled", failures=1)}
    obs.actions = [AppliedAction("a", "cancel")]
    obs.instructions = [Instruction("a/1", "a", *D)]
    assert check(obs).ok


def test_unfinished_tasks_in_a_dossier_that_is_not_blocked_are_stuck() -> None:
    obs = clean()
    obs.tasks = {**obs.tasks, "c": StoredTask("c", "waiting")}
    assert counts(obs) == {"stuck": 1}
    obs.blocked = frozenset({"office1.d0001"})
    assert check(obs).ok


def test_two_instructions_for_one_failure_are_duplicated_but_one_per_restart_is_not() -> None:
    obs = clean()
    obs.tasks = {**obs.tasks, "a": StoredTask("a", "done", failures=2)}
    obs.instructions = [Instruction("a/1", "a", *D), Instruction("a/2", "a", *D)]
    assert counts(obs) == {"duplicated": 1}
    obs.actions = [AppliedAction("a", "restart")]
    assert check(obs).ok


def test_a_mail_sent_twice_is_duplicated() -> None:
    obs = replace(clean(), mail_keys=["a/1:anna", "a/1:anna", "b/1:anna"])
    assert counts(obs) == {"duplicated": 1}


def test_a_failure_without_an_instruction_is_unexplained() -> None:
    obs = clean()
    obs.executions = [run("a", 9, 9.5, "invalid_period"), *obs.executions]
    assert counts(obs) == {"unexplained": 1}
    obs.instructions = [Instruction("a/1", "a", *D)]
    assert check(obs).ok


def test_a_task_the_store_says_failed_without_an_instruction_is_unexplained() -> None:
    obs = clean()
    obs.tasks = {**obs.tasks, "b": StoredTask("b", "done", failures=1)}
    assert counts(obs) == {"unexplained": 1}


def test_each_poison_message_needs_exactly_one_instruction() -> None:
    obs = clean()
    obs.poison = [Poison("m1", *D, 5.0, b"{garbled"), Poison("m2", *D, 6.0, b"{garbled")]
    orphan = Instruction("message/x", "", *D, raw=b"{garbled")
    obs.instructions = [orphan]
    assert counts(obs) == {"unexplained": 1}
    obs.instructions = [orphan, replace(orphan, id="message/y")]
    assert check(obs).ok
    obs.instructions = [orphan, replace(orphan, id="message/y"), replace(orphan, id="m/z")]
    assert counts(obs) == {"duplicated": 1}


def test_an_overtaken_task_is_counted_against_the_fault_it_was_submitted_in() -> None:
    obs = clean()
    obs.executions = [run("a", 10, 13), run("b", 12, 14), run("c", 15, 16)]
    verdict = check(obs)  # a, submitted at 0.0, was overtaken by b
    faults = [FaultWindow("dispatcher-kill", -0.5, 0.5), FaultWindow("poison", 100.0, 101.0)]
    rows = {name: counts for name, _, _, counts in per_fault(verdict, faults)}
    assert rows["dispatcher-kill"]["out of order"] == 1
    assert rows["poison"]["out of order"] == 0


def test_the_last_line_says_what_was_found() -> None:
    obs = clean()
    obs.bookings_per_key = {**obs.bookings_per_key, "b": 3}
    lines = render(check(obs), [FaultWindow("connector-kill", 1.0, 2.0)], 3, 42.4)
    assert lines[-1] == (
        "dossierflow chaos: 3 tasks, 1 faults, 0 lost, 1 double-booked, 0 out of order, "
        "0 stuck in 42 s"
    )


def test_a_poison_message_is_known_by_the_body_its_instruction_keeps_first() -> None:
    obs = clean()
    obs.poison = [Poison("m1", *D, 5.0, b"[1, 2, 3]"), Poison("m2", *D, 6.0, b"{garbled")]
    obs.instructions = [
        Instruction("message/x", "", *D, raw=b"[1, 2, 3]m1"),
        Instruction("message/y", "", *D, raw=b"{garbled"),
    ]
    assert check(obs).ok
