"""The chaos run's checker: pure functions over what the package logged and the store holds.

Like Jepsen's checkers it never asks the processes what they did: the simulated package's
execution log and bookings say what ran and was booked; the store says how each task ended,
which actions a person took and which instructions exist. Mails are what the local SMTP
sink received (its files), against the mails the instructions call for.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from workers.accounting.ordercheck import Execution
from workers.vocabulary import ActionType, TaskStatus

COUNTERS = (
    "lost",
    "double-booked",
    "out of order",
    "stuck",
    "duplicated",
    "unexplained",
    "unmailed",
)
# Execution outcomes that are no failure: done, retried in place, or cut off by a crash.
NOT_FAILED = ("ok", "transient", None)
RAW_KEPT = 4096  # bytes of an unreadable message the instruction keeps
UNFINISHED = (
    TaskStatus.SUBMITTED,
    TaskStatus.WAITING,
    TaskStatus.QUEUED,
    TaskStatus.RUNNING,
    TaskStatus.RETRY_WAIT,
    TaskStatus.FAILED,
)


@dataclass(frozen=True)
class Accepted:
    """A task the submitter got an id for (stored), in submission order; `at` is wall time."""

    task_id: str
    office: str
    dossier: str
    at: float
    announced: bool = True  # False: submit raised NotAnnounced (the sweeper announces it)


@dataclass(frozen=True)
class StoredTask:
    """How the store says a task ended."""

    task_id: str
    status: str
    failures: int = 0
    seq: int | None = None  # the place the sequencer gave it in its dossier


@dataclass(frozen=True)
class AppliedAction:
    """An action the sequencer applied (restart, cancel or resolve)."""

    task_id: str
    type: str


@dataclass(frozen=True)
class Instruction:
    """An instruction in the store; `task_id` is empty for a message tied to no task."""

    id: str
    task_id: str
    office: str
    dossier: str
    raw: bytes | None = None  # the unreadable message, as kept (first 4 KiB)


@dataclass(frozen=True)
class Poison:
    """A message no connector can run, published into an office's work queue."""

    message_id: str
    office: str
    dossier: str
    at: float
    body: bytes = b""


@dataclass(frozen=True)
class Mail:
    """One instruction mail to one address: received by the sink, or called for.

    `key` is the outbox key the mail's Message-ID stands for (`instruction:<id>:<user>`),
    or the Message-ID itself when no instruction of the store explains it; `at` is when
    the sink kept it (received) or when it was decided or the instruction created (called
    for).
    """

    key: str
    recipient: str  # the envelope address (RCPT TO)
    at: float | None = None


@dataclass(frozen=True)
class FaultWindow:
    """One injected fault: from `start` until it was healed at `end` (wall time)."""

    name: str
    start: float
    end: float
    detail: str = ""


@dataclass
class Observed:
    """Everything the checker reads, gathered once the run is quiet."""

    accepted: Sequence[Accepted]
    executions: Sequence[Execution]
    bookings_per_key: Mapping[str, int]
    tasks: Mapping[str, StoredTask]
    blocked: frozenset[str]  # dossier keys `office.dossier` blocked at the end
    actions: Sequence[AppliedAction] = ()
    instructions: Sequence[Instruction] = ()
    poison: Sequence[Poison] = ()
    # When mails are in play: every mail the SMTP sink received (one per envelope address,
    # in arrival order), and the mails the run's instructions call for.
    mails: Sequence[Mail] = ()
    expected_mails: Sequence[Mail] = ()


@dataclass(frozen=True)
class Finding:
    """One broken guarantee, with the time it happened (for the per-fault table)."""

    counter: str
    subject: str  # a task id, an idempotency key or a dossier key
    at: float | None
    detail: str


@dataclass
class Verdict:
    """All findings and their counts per counter."""

    findings: list[Finding] = field(default_factory=list)

    def count(self, counter: str) -> int:
        """Findings of one counter."""
        return sum(1 for f in self.findings if f.counter == counter)

    @property
    def ok(self) -> bool:
        """True when every counter is zero."""
        return not self.findings


def check(obs: Observed) -> Verdict:
    """Run every check over the observed run."""
    verdict = Verdict()
    for rule in (lost, double_booked, out_of_order, stuck, duplicated, unexplained, unmailed):
        verdict.findings.extend(rule(obs))
    return verdict


def _first_ok_end(executions: Iterable[Execution]) -> dict[str, float]:
    ends: dict[str, float] = {}
    for e in executions:
        if e.outcome == "ok" and e.ended_at is not None:
            ends[e.task_id] = min(ends.get(e.task_id, e.ended_at), e.ended_at)
    return ends


def _distinct(accepted: Iterable[Accepted]) -> list[Accepted]:
    """Accepted tasks once each (an equal sync coalesced into a waiting one shares its id)."""
    seen: dict[str, Accepted] = {}
    for a in accepted:
        seen.setdefault(a.task_id, a)
    return list(seen.values())


def lost(obs: Observed) -> list[Finding]:
    """Accepted and never finished: no successful run in the package, nor a person's cancel."""
    ran = _first_ok_end(obs.executions)
    ended_by_person = {
        a.task_id for a in obs.actions if a.type in (ActionType.CANCEL, ActionType.RESOLVE)
    }
    found = []
    for a in _distinct(obs.accepted):
        task = obs.tasks.get(a.task_id)
        status = task.status if task else "absent"
        by_person = (
            status in (TaskStatus.CANCELLED, TaskStatus.SKIPPED) and a.task_id in ended_by_person
        )
        if a.task_id not in ran and not by_person:
            found.append(Finding("lost", a.task_id, a.at, f"{a.office}.{a.dossier} is {status}"))
    return found


def double_booked(obs: Observed) -> list[Finding]:
    """An idempotency key booked more than once (deleted bookings included)."""
    starts: dict[str, float] = {}
    for e in obs.executions:
        if e.operation == "book":
            starts.setdefault(e.task_id, e.started_at)
    return [
        Finding("double-booked", key, starts.get(key), f"{n} bookings")
        for key, n in sorted(obs.bookings_per_key.items())
        if n > 1
    ]


def out_of_order(obs: Observed) -> list[Finding]:
    """A task that ran before an earlier task of its dossier had finished.

    "Finished" is the end of the earlier task's first successful run: a restarted task
    finishes when its run after the restart succeeds, and a cancelled or resolved task
    never runs successfully, so it holds back nothing once a person ended it.
    """
    ends = _first_ok_end(obs.executions)
    first_start: dict[str, float] = {}
    for e in obs.executions:
        first_start[e.task_id] = min(first_start.get(e.task_id, e.started_at), e.started_at)
    per_dossier: defaultdict[tuple[str, str], list[Accepted]] = defaultdict(list)
    for a in _distinct(obs.accepted):
        per_dossier[(a.office, a.dossier)].append(a)
    found = []
    for (office, dossier), tasks in per_dossier.items():
        latest, before = float("-inf"), tasks[0]
        for a in tasks:
            start = first_start.get(a.task_id)
            if start is not None and start < latest:
                detail = f"{office}.{dossier}: ran before {before.task_id} finished" + _why(
                    obs, before, a
                )
                # Counted at the overtaken task's submission: the fault then is the suspect.
                found.append(Finding("out of order", a.task_id, before.at, detail))
            end = ends.get(a.task_id)
            if end is not None and end > latest:
                latest, before = end, a
    return found


def _why(obs: Observed, earlier: Accepted, later: Accepted) -> str:
    """What the store says about the pair: the sequencer's numbering, a late announcement."""
    notes = [f"{a.task_id[:8]} was not announced at submit" for a in (earlier, later)]
    notes = [n for n, a in zip(notes, (earlier, later), strict=True) if not a.announced]
    first, second = obs.tasks.get(earlier.task_id), obs.tasks.get(later.task_id)
    if first and second and first.seq is not None and second.seq is not None:
        notes.append(f"sequenced #{first.seq} and #{second.seq}")
    return f" ({'; '.join(notes)})" if notes else ""


def stuck(obs: Observed) -> list[Finding]:
    """After quiescence, a dossier holds unfinished tasks without being blocked."""
    per_dossier: Counter[str] = Counter()
    for a in _distinct(obs.accepted):
        task = obs.tasks.get(a.task_id)
        if task is not None and task.status in UNFINISHED:
            per_dossier[f"{a.office}.{a.dossier}"] += 1
    return [
        Finding("stuck", key, None, f"{n} unfinished task(s), dossier not blocked")
        for key, n in sorted(per_dossier.items())
        if key not in obs.blocked
    ]


def duplicated(obs: Observed) -> list[Finding]:
    """The same instruction twice (more than one per failure), or the same mail twice."""
    restarts = Counter(a.task_id for a in obs.actions if a.type == "restart")
    per_task = Counter(i.task_id for i in obs.instructions if i.task_id)
    found = [
        Finding("duplicated", task, None, f"{n} instructions after {restarts[task]} restart(s)")
        for task, n in sorted(per_task.items())
        if n > restarts[task] + 1
    ]
    sent = Counter(p.body[:RAW_KEPT] for p in obs.poison)
    found += [
        Finding("duplicated", raw[:40].hex(), None, f"{n} instructions for {sent[raw]} messages")
        for raw, n in sorted(_orphans(obs).items())
        if n > sent[raw]
    ]
    return found + _mailed_twice(obs.mails)


def _mailed_twice(mails: Iterable[Mail]) -> list[Finding]:
    """A mail the sink received again for the same instruction and address.

    Counted at its second arrival, so the fault that made the mailer send it again is
    the suspect in the per-fault table.
    """
    arrivals: defaultdict[tuple[str, str], list[float | None]] = defaultdict(list)
    for m in mails:
        arrivals[(m.key, m.recipient)].append(m.at)
    return [
        Finding("duplicated", key, times[1], f"mail to {to} received {len(times)} times")
        for (key, to), times in sorted(arrivals.items())
        if len(times) > 1
    ]


def unmailed(obs: Observed) -> list[Finding]:
    """A mail an instruction calls for that the sink never received (after quiescence)."""
    got = {(m.key, m.recipient) for m in obs.mails}
    found = []
    for m in obs.expected_mails:
        if (m.key, m.recipient) not in got:
            found.append(Finding("unmailed", m.key, m.at, f"no mail to {m.recipient}"))
    return found


def unexplained(obs: Observed) -> list[Finding]:
    """A failure nobody was told of: a task failed for good or a poison message, no instruction."""
    failed: dict[str, float | None] = {}
    for e in (e for e in obs.executions if e.outcome not in NOT_FAILED):
        failed.setdefault(e.task_id, e.ended_at)
    for task in (t for t in obs.tasks.values() if t.failures > 0 or t.status == TaskStatus.FAILED):
        failed.setdefault(task.task_id, None)
    instructed = {i.task_id for i in obs.instructions if i.task_id}
    found = [
        Finding("unexplained", task, at, "failed without an instruction")
        for task, at in sorted(failed.items())
        if task not in instructed
    ]
    orphans = _orphans(obs)
    sent: defaultdict[bytes, list[Poison]] = defaultdict(list)
    for p in obs.poison:
        sent[p.body[:RAW_KEPT]].append(p)
    for raw, messages in sent.items():
        for p in messages[orphans[raw] :]:
            where = f"{p.office}.{p.dossier}"
            found.append(Finding("unexplained", p.message_id, p.at, f"{where}: no instruction"))
    return found


def _orphans(obs: Observed) -> Counter[bytes]:
    """Instructions tied to no task, per poison message body they keep (a prefix of `raw`)."""
    bodies = sorted({p.body[:RAW_KEPT] for p in obs.poison}, key=len, reverse=True)
    found: Counter[bytes] = Counter()
    for raw in ((i.raw or b"") for i in obs.instructions if not i.task_id):
        found[next((b for b in bodies if raw.startswith(b)), raw[:RAW_KEPT])] += 1
    return found
