"""The page's in-memory snapshot filters, pages and counts as the store's queries do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.api import snapshot
from dispatcher.api.snapshot import Snapshots, build
from store import InstructionRecord, TaskRecord
from store.monitoring import Scope, TaskFilter
from tests.waiting import wait_for
from workers.vocabulary import InstructionStatus, TaskStatus

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def _task(n: int, dossier: str, status: TaskStatus, kind: str = "dossier.sync") -> TaskRecord:
    return TaskRecord(f"t{n:03d}", "o1", dossier, kind, {}, status, T0 + timedelta(minutes=n))


def _instruction(task: TaskRecord, severity: str) -> InstructionRecord:
    return InstructionRecord(
        f"{task.id}/1", task.id, task.office, task.dossier, task.kind, "x", severity, {},
        InstructionStatus.OPEN, task.submitted_at,
    )  # fmt: skip


def test_the_default_filter_lists_failed_and_instructed_tasks_newest_first() -> None:
    tasks = [
        _task(1, "a", TaskStatus.DONE),
        _task(2, "a", TaskStatus.FAILED),
        _task(3, "b", TaskStatus.RETRY_WAIT),
        _task(4, "b", TaskStatus.WAITING),
    ]
    snap = build(list(tasks), [_instruction(tasks[2], "orange")], {("o1", "a")})
    found, after = snap.page(Scope("o1"), TaskFilter(needs_attention=True), None, 50)
    assert [t.id for t in found] == ["t003", "t002"] and after is None
    red, _ = snap.page(Scope("o1"), TaskFilter(severity="orange"), None, 50)
    assert [t.id for t in red] == ["t003"]
    mine, _ = snap.page(Scope("o1", ("a",)), TaskFilter(), None, 50)
    assert [t.id for t in mine] == ["t002", "t001"]


def test_the_overview_counts_and_colours_every_dossier() -> None:
    tasks = [
        _task(1, "a", TaskStatus.FAILED),
        _task(2, "a", TaskStatus.WAITING),
        _task(3, "b", TaskStatus.RUNNING),
        _task(4, "c", TaskStatus.DONE),
        _task(5, "d", TaskStatus.FAILED),
    ]
    instructions = [_instruction(tasks[0], "orange"), _instruction(tasks[4], "red")]
    snap = build(list(tasks), instructions, {("o1", "a"), ("o1", "d")})
    rows = {r.dossier: r for r in snap.dossiers(Scope("o1"))}
    assert (rows["a"].stripe, rows["a"].waiting, rows["a"].failed, rows["a"].blocked) == (
        "orange", 1, 1, True,
    )  # fmt: skip
    assert (rows["b"].stripe, rows["b"].running) == ("", 1)
    assert rows["c"].stripe == "" and rows["d"].stripe == "red"
    assert [r.dossier for r in snap.dossiers(Scope("o1", ("b",)))] == ["b"]


@settings(max_examples=60, deadline=None)
@given(
    statuses=st.lists(st.sampled_from(list(TaskStatus)), min_size=0, max_size=40),
    limit=st.integers(min_value=1, max_value=7),
)
def test_paging_with_the_cursor_visits_every_match_once(
    statuses: list[TaskStatus], limit: int
) -> None:
    tasks = [_task(n, f"d{n % 3}", s) for n, s in enumerate(statuses)]
    snap = build(list(tasks), [], set())
    seen, cursor = [], None
    while True:
        found, cursor = snap.page(
            Scope("o1"), TaskFilter(statuses=(TaskStatus.FAILED,)), cursor, limit
        )
        seen.extend(t.id for t in found)
        if cursor is None:
            break
    expected = sorted((t.id for t in tasks if t.status is TaskStatus.FAILED), reverse=True)
    assert seen == expected


class _Reads:
    """A stand-in for Monitoring.everything that counts reads per office."""

    def __init__(self) -> None:
        self.reads: list[str] = []

    def everything(
        self, scope: Scope
    ) -> tuple[list[TaskRecord], list[InstructionRecord], set[tuple[str, str]]]:
        self.reads.append(str(scope.office))
        return [_task(len(self.reads), "a", TaskStatus.WAITING)], [], set()


def test_views_share_one_copy_and_an_action_makes_the_next_view_refresh() -> None:
    reads = _Reads()
    snapshots = Snapshots(reads, fresh_s=60)  # type: ignore[arg-type]
    first = snapshots.of("o1")
    assert snapshots.of("o1") is first and reads.reads == ["o1"]
    snapshots.forget("o1")
    snapshots.of("o1")  # answered from the copy; the refresh runs in the background
    wait_for(lambda: len(reads.reads) == 2, 10, "the refresh")
    wait_for(lambda: snapshots.of("o1").tasks[0].id == "t002", 10, "the new copy")


def test_only_the_offices_viewed_last_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshot, "MAX_OFFICES", 2)
    reads = _Reads()
    snapshots = Snapshots(reads)  # type: ignore[arg-type]
    for office in ("o1", "o2", "o1", "o3"):
        snapshots.of(office)
    snapshots.of("o2")  # dropped by o3: read again
    assert reads.reads == ["o1", "o2", "o3", "o2"]


@given(
    st.sets(st.integers(0, 30), max_size=20),
    st.sets(st.integers(0, 40), max_size=15),
    st.sets(st.integers(0, 40), max_size=15),
)
def test_merging_what_changed_gives_the_order_of_a_whole_read(
    known_ns: set[int], changed_ns: set[int], gone_ns: set[int]
) -> None:
    """Changed tasks replaced, pruned ones dropped, new ones placed: as if sorted anew."""
    known = build([_task(n, "a", TaskStatus.WAITING) for n in known_ns], [], set()).tasks
    fresh = {t.id: t for t in (_task(n, "a", TaskStatus.DONE) for n in changed_ns - gone_ns)}
    changed = {f"t{n:03d}" for n in changed_ns | gone_ns}
    merged, ordered = snapshot._merged(known, fresh, changed)
    whole = build(
        [fresh.get(t.id, t) for t in known if t.id not in changed] + list(fresh.values()),
        [],
        set(),
    ).tasks
    again = build(list(merged), [], set(), ordered=ordered).tasks
    assert again == whole
