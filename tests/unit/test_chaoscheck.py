"""The chaos checker on hand-made logs: a clean run counts nothing, and each counter can fail."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from aiosmtpd.smtp import Envelope

from dossierflow.tools.chaoscheck import (
    Accepted,
    AppliedAction,
    FaultWindow,
    Instruction,
    Mail,
    Observed,
    Poison,
    StoredTask,
    check,
)
from dossierflow.tools.chaosmail import read_maildir
from dossierflow.tools.chaosreport import per_fault, render
from reminder.render import compose, message_id_for, render_instruction, render_support
from reminder.service import instruction_key
from reminder.sink import _Maildir
from store.records import InstructionRecord, OfficeRecord
from workers.accounting.ordercheck import Execution
from workers.vocabulary import InstructionStatus, Severity

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


OFFICE = OfficeRecord("office1", "Accountancy office1", "Europe/Brussels", "nl")
ANNA, BERT, SUPPORT = "manager-a@office1.test", "admin@office1.test", "support@dossierflow.local"


def instruction(task: str, severity: Severity = Severity.ORANGE) -> InstructionRecord:
    """An instruction as the sequencer writes it for a failed booking of dossier D."""
    return InstructionRecord(
        id=f"{task}/1", task_id=task, office="office1", dossier="d0001",
        kind="booking_proposal.process", code="invalid_period", severity=severity,
        facts={"period": "2024-05"}, status=InstructionStatus.OPEN,
        created_at=datetime(2026, 3, 2, 10, 0, tzinfo=UTC),
    )  # fmt: skip


def deliver(
    maildir: Path, item: InstructionRecord, user: str, to: str, at: float, *, keep: bool = True
) -> str:
    """Hand the mailer's message for (item, user) to the sink's writer, as SMTP DATA would.

    The message is composed the way the outbox holds it; the sink writes its file (its
    envelope recipient prepended). `keep=False`: the sink's watch drops it (the mailer was
    killed before the end of DATA). The outbox key.
    """
    key = instruction_key(item.id, user)
    if item.severity == Severity.RED:
        mail = render_support(item, OFFICE, "http://page")
    else:
        mail = render_instruction(item, OFFICE, "fr", "http://page")
    envelope = Envelope()
    envelope.rcpt_tos = [to]
    envelope.original_content = compose(
        key, "noreply@dossierflow.local", [to], mail, datetime.now(UTC)
    )

    class Watch:
        def before_store(self) -> bool:
            return keep

        def after_store(self) -> None:
            return None

    before = set(maildir.glob("*.eml"))
    reply = asyncio.run(_Maildir(maildir, Watch()).handle_DATA(None, None, envelope))  # type: ignore[arg-type]
    assert reply.startswith("250" if keep else "451")
    for path in set(maildir.glob("*.eml")) - before:
        os.utime(path, (at, at))
    return key


def mails_of(maildir: Path, *items: InstructionRecord) -> list[Mail]:
    """What the chaos run reads back: every kept file, named through the store's instructions."""
    keys = {}
    for item in items:
        for user in ("support", "anna", "bert"):
            keys[message_id_for(instruction_key(item.id, user))] = instruction_key(item.id, user)
    return read_maildir(maildir, keys)


def test_an_instruction_mail_the_sink_received_twice_is_duplicated_at_its_second_arrival(
    tmp_path: Path,
) -> None:
    a, b = instruction("a"), instruction("b", Severity.RED)
    key = deliver(tmp_path, a, "anna", ANNA, 100.0)
    deliver(tmp_path, a, "bert", BERT, 100.5)  # the same instruction to its second person
    deliver(tmp_path, b, "support", SUPPORT, 101.0)
    expected = [Mail(key, ANNA, 99.0), Mail("instruction:a/1:bert", BERT, 99.0)]
    expected += [Mail("instruction:b/1:support", SUPPORT, 99.0)]
    obs = replace(clean(), mails=mails_of(tmp_path, a, b), expected_mails=expected)
    assert [m.key for m in obs.mails] == [key, "instruction:a/1:bert", "instruction:b/1:support"]
    assert check(obs).ok
    deliver(tmp_path, a, "anna", ANNA, 130.0)  # resent: the mailer died before its `sent` mark
    obs.mails = mails_of(tmp_path, a, b)
    verdict = check(obs)
    assert counts(obs) == {"duplicated": 1}
    [found] = verdict.findings
    assert (found.subject, found.at) == (key, 130.0)
    assert found.detail == f"mail to {ANNA} received 2 times"
    rows = {name: c for name, _, _, c in per_fault(verdict, [FaultWindow("mailer-kill", 125, 129)])}
    assert rows["mailer-kill"]["duplicated"] == 1


def test_a_mail_of_no_known_instruction_is_known_by_its_message_id(tmp_path: Path) -> None:
    a = instruction("a")
    deliver(tmp_path, a, "anna", ANNA, 100.0)
    deliver(tmp_path, a, "anna", ANNA, 101.0)
    [first, second] = mails_of(tmp_path)  # the store names no instruction
    assert first.key == second.key == message_id_for(instruction_key("a/1", "anna"))
    assert counts(replace(clean(), mails=[first, second])) == {"duplicated": 1}


def test_a_mail_called_for_that_the_sink_never_kept_is_unmailed(tmp_path: Path) -> None:
    a = instruction("a")
    key = deliver(tmp_path, a, "anna", ANNA, 100.0, keep=False)  # mailer killed mid-DATA
    expected = [Mail(key, ANNA, 99.0)]
    obs = replace(clean(), mails=mails_of(tmp_path, a), expected_mails=expected)
    assert obs.mails == []
    assert counts(obs) == {"unmailed": 1}
    assert check(obs).findings[0].at == 99.0
    deliver(tmp_path, a, "anna", ANNA, 102.0)  # the restarted mailer sends it again
    obs.mails = mails_of(tmp_path, a)
    assert check(obs).ok
    obs.expected_mails = [*expected, Mail(key, BERT, 99.0)]  # kept, but for another address
    assert counts(obs) == {"unmailed": 1}


def test_the_report_counts_unmailed_and_keeps_the_last_line() -> None:
    obs = replace(clean(), expected_mails=[Mail("instruction:a/1:anna", ANNA, 1.5)])
    lines = render(check(obs), [FaultWindow("mailer-kill", 1.0, 2.0)], 3, 42.4)
    assert lines[0].split()[-1] == "unmail"
    assert lines[1].split() == ["mailer-kill", "1", "1.0", "0", "0", "0", "0", "0", "0", "1"]
    assert "  unmailed: instruction:a/1:anna no mail to manager-a@office1.test" in lines
    assert lines[-2] == "  0 duplicated, 0 unexplained, 1 unmailed"
    assert lines[-1] == (
        "dossierflow chaos: 3 tasks, 1 faults, 0 lost, 0 double-booked, 0 out of order, "
        "0 stuck in 42 s"
    )


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
