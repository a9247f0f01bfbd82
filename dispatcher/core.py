"""The per-dossier rules, pure: a dossier's state and one message give effects.

Nothing here does I/O. The partition owner (`dispatcher/owner.py`) keeps the state of
the dossiers it owns in memory, feeds every command and event of a batch through `step`,
then writes and publishes the effects. A dossier's open tasks are kept in submission
order; the first one (the head) is the only one that is ever released, so ordering, one
task in flight and blocking all follow from one rule: only the head moves.

Replaying any message (a redelivery after a crash, a republished command) yields the
same state and only effects that are idempotent in the store (inserts with fixed ids,
conditional decisions), so the owner never needs to know what it has seen.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from dispatcher.inbound import (
    Act,
    DeadLettered,
    Done,
    Failed,
    Message,
    ReleaseLost,
    RetryDue,
    Started,
    Submitted,
    Unreadable,
)
from dispatcher.state import (
    ACTIONABLE,
    FINAL,
    CloseInstructions,
    Decide,
    Dossier,
    Effect,
    Instruct,
    OpenTask,
    Release,
    Rules,
    TaskChange,
    Timer,
)
from workers.vocabulary import (
    IN_FLIGHT,
    SEVERITY,
    ActionStatus,
    ActionType,
    ErrorCode,
    Failure,
    TaskStatus,
)

__all__ = [
    "CloseInstructions",
    "Decide",
    "Dossier",
    "Effect",
    "Instruct",
    "OpenTask",
    "Release",
    "Rules",
    "TaskChange",
    "Timer",
    "fail",
    "release",
    "repair",
    "step",
]


def step(d: Dossier, msg: Message, now: datetime, rules: Rules) -> list[Effect]:
    """Apply one message to the dossier; then release its head if it is free."""
    out: list[Effect] = []
    if isinstance(msg, Submitted):
        _accept(d, msg, now, out)
    elif isinstance(msg, Started):
        _started(d, msg, out)
    elif isinstance(msg, Done):
        _done(d, msg, out)
    elif isinstance(msg, Failed):
        _failed(d, msg, now, rules, out)
    elif isinstance(msg, RetryDue):
        _retry_due(d, msg)
    elif isinstance(msg, ReleaseLost):
        _release_lost(d, msg, now, out)
    elif isinstance(msg, DeadLettered):
        _dead_lettered(d, msg, now, out)
    elif isinstance(msg, Unreadable):
        _unreadable(d, msg, now, out)
    elif isinstance(msg, Act):
        _act(d, msg, now, out)
    release(d, now, out)
    return out


def release(d: Dossier, now: datetime, out: list[Effect]) -> None:
    """Release the head when it waits: the dossier's next task in order."""
    head = d.head
    if head is None or head.status is not TaskStatus.WAITING:
        return
    _release(head, now, out)


def _release(task: OpenTask, now: datetime, out: list[Effect], note: str = "") -> None:
    """Queue the task under a new run and publish it: events of earlier runs are stale."""
    task.run += 1
    task.status, task.attempts, task.published = TaskStatus.QUEUED, 0, now
    fields: dict[str, Any] = {
        "queued_at": now,
        "next_attempt_at": None,
        "run": task.run,
        "attempts": 0,
    }
    _change(out, task.id, TaskStatus.QUEUED, f"r{task.run}", at=now, note=note, **fields)
    out.append(Release(task, task.run))


def repair(d: Dossier, now: datetime | None = None) -> list[Effect]:
    """After loading from the store: publish again a release that may not have gone out.

    `now` is when it goes out, remembered so that the sweeper's report of the same
    release as lost (`ReleaseLost`) does not release it a second time.
    """
    head = d.head
    if head is not None and head.status is TaskStatus.QUEUED:
        head.published = now
        return [Release(head, head.run)]
    return []


# -- the rules ---------------------------------------------------------------------------
def _change(
    out: list[Effect], task_id: str, status: TaskStatus, tag: str, *, at: datetime,
    note: str = "", **fields: Any,
) -> None:  # fmt: skip
    # A fixed history id per transition: a replayed message inserts nothing new.
    entry = f"{task_id}/{status.value}/{tag}"
    out.append(TaskChange(task_id, {"status": status.value, **fields}, [(entry, at, status, note)]))


def _accept(d: Dossier, msg: Submitted, now: datetime, out: list[Effect]) -> None:
    if msg.task_id in d.tasks or msg.accepted:
        return  # a republished or redelivered command
    task = OpenTask(msg.task_id, msg.kind, dict(msg.payload), d.next_seq)
    d.next_seq += 1
    d.tasks[task.id] = task
    _change(out, task.id, TaskStatus.WAITING, "accepted", at=now, seq=task.seq, accepted_at=now)
    if msg.recheck:
        _place_late(d, task, out)


def _place_late(d: Dossier, task: OpenTask, out: list[Effect]) -> None:
    """Put a command that came late before the waiting tasks submitted after it.

    Commands of a partition arrive in the order they were published, except around a
    change of owner: the broker then delivers again what the old owner held, and a
    quorum queue does not promise that order (a `submitted` command may come back after
    commands published later), nor does the sweeper's announcement of a command that was
    never confirmed. Such a command is marked `recheck`, and the task ids order a
    client's submissions (`client.new_task_id`): the task goes before every task of
    its dossier that is still waiting and was submitted after it. A task already
    released keeps its place: its run cannot be taken back.
    """
    tasks = list(d.tasks.values())
    later = [t for t in tasks[:-1] if t.status is TaskStatus.WAITING and t.id > task.id]
    if not later:
        return
    seqs = [t.seq for t in later] + [task.seq]
    moved = sorted([*later, task], key=lambda t: t.id)
    for t, seq in zip(moved, seqs, strict=True):
        if t.seq != seq:
            t.seq = seq
            out.append(TaskChange(t.id, {"seq": seq}, []))
    d.tasks = dict(sorted(d.tasks.items(), key=lambda kv: kv[1].seq))


def _current(d: Dossier, task_id: str, run: int) -> OpenTask | None:
    """The task an event is about, if it is about the task's current release."""
    task = d.tasks.get(task_id)
    if task is None or task.run != run:
        return None  # another dossier's task, finished, or an earlier release: stale
    return task


def _started(d: Dossier, msg: Started, out: list[Effect]) -> None:
    task = _current(d, msg.task_id, msg.run)
    if task is None or task.status not in IN_FLIGHT:
        return
    if task.status is TaskStatus.RUNNING and msg.attempt <= task.attempts:
        return  # an earlier (or this) attempt's start, redelivered
    task.status, task.attempts = TaskStatus.RUNNING, msg.attempt
    fields: dict[str, Any] = {"started_at": msg.at, "attempts": msg.attempt}
    if msg.worker:
        fields["worker"] = msg.worker
    tag, note = f"r{task.run}a{msg.attempt}", f"attempt {msg.attempt}"
    _change(out, task.id, TaskStatus.RUNNING, tag, at=msg.at, note=note, **fields)


def _finish(
    d: Dossier, task: OpenTask, status: TaskStatus, tag: str, *, at: datetime,
    out: list[Effect], **fields: Any,
) -> None:  # fmt: skip
    del d.tasks[task.id]
    note = "" if status is TaskStatus.DONE else status.value
    _change(out, task.id, status, tag, at=at, note=note, finished_at=at, **fields)


def _done(d: Dossier, msg: Done, out: list[Effect]) -> None:
    task = _current(d, msg.task_id, msg.run)
    if task is None or task.status not in IN_FLIGHT:
        return
    result = dict(msg.result)
    _finish(d, task, TaskStatus.DONE, f"r{task.run}", at=msg.at, out=out, result=result)


def _failed(d: Dossier, msg: Failed, now: datetime, rules: Rules, out: list[Effect]) -> None:
    task = _current(d, msg.task_id, msg.run)
    if task is None or task.status not in IN_FLIGHT:
        return  # a late event of an attempt that no longer matters, or a replay
    failure = msg.error
    if failure.transient:
        if task.retries < len(rules.retry_delays):
            delay = rules.retry_delays[task.retries]
            task.retries += 1
            task.status = TaskStatus.RETRY_WAIT
            note = f"retry {task.retries} in {delay} s"
            due = now + timedelta(seconds=delay)
            _change(out, task.id, TaskStatus.RETRY_WAIT, f"{task.retries}", at=now, note=note,
                    retries=task.retries, error=failure.to_dict(), next_attempt_at=due)  # fmt: skip
            out.append(Timer(task.id, delay, task.retries, task.run))
            return
        failure = Failure.of(
            ErrorCode.PACKAGE_UNREACHABLE,
            "the accounting package stayed unreachable through every retry",
            attempts=str(task.retries + 1),
        )
    fail(task, failure, now, out)


def fail(
    task: OpenTask,
    failure: Failure,
    now: datetime,
    out: list[Effect],
    raw: bytes | None = None,
    **fields: Any,
) -> None:
    """Fail the task for good: it blocks its dossier and a person is instructed."""
    task.failures += 1
    task.status = TaskStatus.FAILED
    code, facts = failure.code, dict(failure.facts)
    instruction = f"{task.id}/{task.failures}"
    out.append(Instruct(instruction, task.id, task.kind, code, failure.severity, facts, raw))
    _change(out, task.id, TaskStatus.FAILED, f"{task.failures}", at=now, note=code.value,
            finished_at=now, error=failure.to_dict(), failures=task.failures, **fields)  # fmt: skip


def _retry_due(d: Dossier, msg: RetryDue) -> None:
    task = _current(d, msg.task_id, msg.run)
    if task is None or task.status is not TaskStatus.RETRY_WAIT or task.retries != msg.retry:
        return  # cancelled, restarted meanwhile, or a duplicate timer
    task.status = TaskStatus.WAITING  # the head again: `release` sends it


def _release_lost(d: Dossier, msg: ReleaseLost, now: datetime, out: list[Effect]) -> None:
    """Release the head again, under a new run, when the sweeper found its message gone.

    Only the release the sweeper saw (same run, still queued or running, the head), and
    only if this owner did not publish it after the queue was seen empty (a republish at
    takeover, say, may then be on its way). The new run makes whatever is left of the
    old one stale: its events and dead letters are ignored, and a connector that runs it
    anyway books under the same idempotency key.
    """
    task = _current(d, msg.task_id, msg.run)
    if task is None or task.status not in IN_FLIGHT or task is not d.head:
        return
    if task.published is not None and task.published > msg.empty_at:
        return
    _release(task, now, out, note="its work message was lost: released again")


def _dead_lettered(d: Dossier, msg: DeadLettered, now: datetime, out: list[Effect]) -> None:
    task = d.tasks.get(msg.task_id)
    if task is None:
        if msg.orphan:  # no task of this dossier has that id: support must look
            out.append(_orphan(d, msg.raw + msg.task_id.encode(), msg.reason, msg.queue))
        return  # a finished task's late message
    if task.run != msg.run or task.status not in IN_FLIGHT:
        return  # an earlier release's message, or the failure is known already
    why = (
        f"the message made connectors fail {msg.count} times (delivery limit)"
        if msg.reason == "delivery_limit"
        else "no connector could run the message"
    )
    fail(task, Failure.of(ErrorCode.UNREADABLE_MESSAGE, why, reason=msg.reason), now, out, msg.raw)


def _unreadable(d: Dossier, msg: Unreadable, now: datetime, out: list[Effect]) -> None:
    task = d.tasks.get(msg.message_id) if msg.message_id else None
    if task is None:
        if msg.orphan:
            out.append(_orphan(d, msg.raw + msg.message_id.encode(), msg.reason, msg.queue))
        return
    if task.status not in IN_FLIGHT:
        return  # the failure is known already, or a late dead letter of a failed run
    if msg.run is not None and msg.run != task.run:
        return  # the dead letter of an earlier run (its work message's `run` header)
    # Work released by an earlier version has no run header, and bytes that are no
    # envelope hold none. A task in flight has had no dead letter in this run (one fails
    # it), so a dead letter for it is this run's, unless it is a replay of an earlier
    # run's: redelivered, with bytes already handled. A run's bytes may equal an earlier
    # run's (damaged the same way): its first delivery fails it.
    digest = hashlib.sha256(msg.raw).hexdigest()[:24]
    if msg.redelivered and digest in task.dead and msg.run is None:
        return
    task.dead.add(digest)
    failure = Failure.of(ErrorCode.UNREADABLE_MESSAGE, "unreadable", reason=msg.reason)
    fail(task, failure, now, out, msg.raw, dead_letters=sorted(task.dead))


def _orphan(d: Dossier, raw: bytes, reason: str, queue: str) -> Instruct:
    """A bad message tied to no open task of ours: support sees it, nothing is blocked."""
    digest = hashlib.sha256(raw).hexdigest()[:24]
    code = ErrorCode.UNREADABLE_MESSAGE
    facts = {"reason": reason, "queue": queue}
    return Instruct(f"message/{d.key}/{digest}", "", "", code, SEVERITY[code], facts,
                    raw or b"(empty)")  # fmt: skip


def _act(d: Dossier, msg: Act, now: datetime, out: list[Effect]) -> None:
    task = d.tasks.get(msg.task_id)
    if task is not None and msg.action_id in task.decided:
        return  # a replay: decided already (the decision was written before the task)
    allowed = ACTIONABLE[msg.action]
    if task is None or task.status not in allowed:
        state = task.status.value if task is not None else "no longer open in its dossier"
        names = ", ".join(s.value for s in allowed)
        why = f"task {msg.task_id} is {state}; {msg.action.value} applies to a task that is {names}"
        out.append(Decide(msg.action_id, ActionStatus.REFUSED, why))
        if task is not None:
            task.decided.add(msg.action_id)
            _remember(out, task, now)
        return
    # Decided before the task is written: a replay after a crash finds the decision.
    out.append(Decide(msg.action_id, ActionStatus.APPLIED))
    out.append(CloseInstructions(task.id, task.failures, msg.action.value))
    task.last_action = msg.action_id
    task.decided.add(msg.action_id)
    decided = sorted(task.decided)
    if msg.action is ActionType.RESTART:
        fields: dict[str, Any] = {"last_action": msg.action_id, "error": None, "retries": 0,
                                  "next_attempt_at": None, "finished_at": None,
                                  "decided": decided}  # fmt: skip
        if msg.payload is not None:
            task.payload = dict(msg.payload)
            fields["payload"] = task.payload
        task.status, task.retries = TaskStatus.WAITING, 0
        note = "restarted" + (" with a corrected payload" if msg.payload is not None else "")
        _change(out, task.id, TaskStatus.WAITING, msg.action_id, at=now, note=note, **fields)
        return
    final = FINAL[msg.action]
    _finish(d, task, final, msg.action_id, at=now, out=out, last_action=msg.action_id,
            decided=decided)  # fmt: skip


def _remember(out: list[Effect], task: OpenTask, now: datetime) -> None:
    """Record the actions decided on a task, without a transition (no history entry)."""
    out.append(TaskChange(task.id, {"decided": sorted(task.decided)}, []))
