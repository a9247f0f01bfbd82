"""Reading a package's execution log: were tasks lost, reordered or run side by side?

Pure functions over `Execution` records, so the rules are unit-tested on
hand-made logs and the simulated package only has to feed them. Rule 1 of the
architecture, checked: tasks of one dossier complete in submission order and
never run at the same time; tasks of different dossiers do run in parallel.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping, Sequence, Set
from dataclasses import dataclass


@dataclass(frozen=True)
class Execution:
    """One port call as logged by the package; `ended_at` is None while it runs (or crashed)."""

    id: int
    task_id: str
    office: str
    dossier: str
    kind: str
    attempt: int
    operation: str
    started_at: float
    ended_at: float | None
    outcome: str | None


@dataclass(frozen=True)
class OrderReport:
    """What `check_order` found; `ok` is False when a delivery guarantee was broken."""

    lost: tuple[str, ...]
    out_of_order: int
    overlaps_within_dossier: int
    overlaps_across_dossiers: int
    double_booked: int
    unfinished: int

    @property
    def ok(self) -> bool:
        """True when nothing was lost, reordered, run concurrently in a dossier or booked twice."""
        faults = self.out_of_order + self.overlaps_within_dossier + self.double_booked
        return not self.lost and faults == 0


def order_report(
    executions: Sequence[Execution],
    expected: Mapping[tuple[str, str], Sequence[str]],
    expect_ok: Set[str] | None = None,
    booked: Mapping[str, int] | None = None,
    double_booked: int = 0,
) -> OrderReport:
    """Check logged executions against the submission order (pure; `check_order` feeds it).

    `expect_ok` defaults to every expected task; `booked` (bookings per
    idempotency key) enables the exactly-once check of booking tasks.
    """
    first_ok: dict[str, float] = {}
    for e in executions:
        if e.outcome == "ok" and e.ended_at is not None:
            first_ok[e.task_id] = min(first_ok.get(e.task_id, e.ended_at), e.ended_at)
    booking_tasks = {e.task_id for e in executions if e.operation == "book"}
    wanted = expect_ok if expect_ok is not None else {t for ids in expected.values() for t in ids}

    def is_lost(task: str) -> bool:
        if task not in first_ok:
            return True
        return booked is not None and task in booking_tasks and booked.get(task, 0) != 1

    lost = tuple(t for ids in expected.values() for t in ids if t in wanted and is_lost(t))
    out_of_order = sum(_finished_early(ids, first_ok) for ids in expected.values())
    finished = [e for e in executions if e.ended_at is not None]
    per_dossier: defaultdict[tuple[str, str], list[tuple[float, float, Hashable]]]
    per_dossier = defaultdict(list)
    for e in finished:
        per_dossier[e.office, e.dossier].append((e.started_at, e.ended_at or 0.0, e.task_id))
    return OrderReport(
        lost=lost,
        out_of_order=out_of_order,
        overlaps_within_dossier=sum(_overlapping_pairs(v) for v in per_dossier.values()),
        overlaps_across_dossiers=_overlapping_pairs(
            [(e.started_at, e.ended_at or 0.0, (e.office, e.dossier)) for e in finished]
        ),
        double_booked=double_booked,
        unfinished=len(executions) - len(finished),
    )


def _finished_early(ids: Sequence[str], first_ok: Mapping[str, float]) -> int:
    """Count tasks whose first success ended before that of a task submitted earlier."""
    count, latest = 0, float("-inf")
    for end in (first_ok[t] for t in ids if t in first_ok):
        count += end < latest
        latest = max(latest, end)
    return count


def _overlapping_pairs(intervals: list[tuple[float, float, Hashable]]) -> int:
    """Count pairs of intervals of different groups that intersect, in O(n log n).

    Intervals are half-open: an execution that starts exactly when another ends
    does not overlap it, so clock resolution cannot invent a violation.
    """
    active: list[tuple[float, int, Hashable]] = []  # min-heap on end
    per_group: Counter[Hashable] = Counter()
    pairs = 0
    for seq, (start, end, group) in enumerate(sorted(intervals, key=lambda i: i[0])):
        while active and active[0][0] <= start:
            per_group[heapq.heappop(active)[2]] -= 1
        pairs += len(active) - per_group[group]
        heapq.heappush(active, (end, seq, group))
        per_group[group] += 1
    return pairs
