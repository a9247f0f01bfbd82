"""The simulated accounting package: every failure from its own state, exactly-once booking
under threads and processes, and the order check over its execution log."""

from __future__ import annotations

import itertools
import multiprocessing
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers.accounting import BookingLine, SimulatedPackage, TaskRef
from workers.accounting.ordercheck import Execution, order_report
from workers.errors import (
    DatabaseError,
    DuplicateBooking,
    InvalidJournal,
    InvalidPeriod,
    InvalidVatCode,
    PackageUnreachable,
    UnknownDossierCode,
)

LINES = (
    BookingLine("700000", Decimal("100.00"), "V21"),
    BookingLine("451000", Decimal("21"), "V0"),
)


def ref(task_id: str, kind: str = "booking_proposal.process", dossier: str = "d1") -> TaskRef:
    """A reference to task `task_id` of dossier d1 of office-1, first attempt."""
    return TaskRef(task_id, "office-1", dossier, kind, 1)


def book(package: SimulatedPackage, task_id: str, **changes: Any) -> Any:
    """Book proposal P1 of company ACME in 2024-01 under `task_id`, with `changes` applied."""
    args: dict[str, Any] = {
        "dossier_code": "ACME",
        "proposal_id": "P1",
        "period": "2024-01",
        "journal": "VK",
        "lines": LINES,
    }
    return package.book(ref(task_id), **{**args, **changes})


@pytest.fixture
def package(tmp_path: Path) -> Iterator[SimulatedPackage]:
    """A fresh package holding company ACME (periods 2024-01/02, journals VK/AK)."""
    pkg = SimulatedPackage(tmp_path / "package.sqlite")
    pkg.create_company("ACME", ["2024-01", "2024-02"], ["VK", "AK"], ["V21", "V0"])
    yield pkg
    pkg.close()


def test_booking_is_stored_with_its_lines(package: SimulatedPackage) -> None:
    booking = book(package, "t1")
    assert booking.idempotency_key == "t1"
    assert package.bookings() == [booking]
    assert package.bookings()[0].lines == LINES


def test_same_idempotency_key_returns_the_first_booking_even_after_state_changed(
    package: SimulatedPackage,
) -> None:
    first = book(package, "t1")
    package.close_period("ACME", "2024-01")
    assert book(package, "t1") == first
    assert package.booking_count("t1") == 1


def test_unknown_dossier_code_fails_every_call_with_its_code(package: SimulatedPackage) -> None:
    with pytest.raises(UnknownDossierCode) as caught:
        book(package, "t1", dossier_code="NOPE")
    assert caught.value.facts == {"dossier_code": "NOPE"}
    with pytest.raises(UnknownDossierCode):
        package.delete_booking(ref("t2"), "NOPE", "P1")
    with pytest.raises(UnknownDossierCode):
        package.sync(ref("t3"), "NOPE")
    with pytest.raises(UnknownDossierCode):
        package.activate(ref("t4"), "NOPE")
    package.activate(ref("t5"), "ACME")  # the corrected code, restarted
    assert package.activations() == [("t5", "ACME")]


def test_broken_database_fails_every_call_until_repaired(package: SimulatedPackage) -> None:
    package.break_database("ACME")
    for call in (
        lambda: book(package, "t1"),
        lambda: package.delete_booking(ref("t2"), "ACME", "P1"),
        lambda: package.sync(ref("t3"), "ACME"),
        lambda: package.activate(ref("t4"), "ACME"),
    ):
        with pytest.raises(DatabaseError):
            call()
    package.break_database("ACME", broken=False)
    assert book(package, "t1").proposal_id == "P1"


def test_closed_period_is_an_invalid_period_until_opened(package: SimulatedPackage) -> None:
    package.close_period("ACME", "2024-02")
    with pytest.raises(InvalidPeriod) as caught:
        book(package, "t1", period="2024-02")
    assert caught.value.facts == {"period": "2024-02"}
    package.open_period("ACME", "2024-02")
    assert book(package, "t1", period="2024-02").period == "2024-02"


def test_unknown_journal_and_vat_code_are_rejected_with_facts(package: SimulatedPackage) -> None:
    with pytest.raises(InvalidJournal) as journal:
        book(package, "t1", journal="XYZ")
    assert journal.value.facts == {"journal": "XYZ"}
    with pytest.raises(InvalidVatCode) as vat:
        book(package, "t2", lines=[*LINES, BookingLine("1", Decimal(1), "V99")])
    assert vat.value.facts == {"vat_code": "V99"}
    assert package.bookings() == []


def test_same_proposal_under_another_key_is_a_duplicate_booking(package: SimulatedPackage) -> None:
    book(package, "t1")
    with pytest.raises(DuplicateBooking) as caught:
        book(package, "t2")
    assert caught.value.facts == {"proposal_id": "P1"}
    assert book(package, "t3", dossier_code="ACME", proposal_id="P2").proposal_id == "P2"


def test_deleted_booking_can_be_booked_again_and_deleting_twice_is_harmless(
    package: SimulatedPackage,
) -> None:
    first = book(package, "t1")
    assert package.delete_booking(ref("t2"), "ACME", "P1") is True
    assert package.delete_booking(ref("t2"), "ACME", "P1") is False
    second = book(package, "t3")
    assert second.booking_id != first.booking_id
    assert package.bookings() == [second]
    assert package.bookings(include_deleted=True) == [first, second]
    assert package.sync(ref("t4", "dossier.sync"), "ACME") == 1


def test_activation_is_recorded_once_per_task(package: SimulatedPackage) -> None:
    package.activate(ref("t1", "dossier.activate"), "ACME")
    package.activate(ref("t1", "dossier.activate"), "ACME")
    assert package.activations() == [("t1", "ACME")]


def test_unreachable_window_fails_every_call_transiently_then_ends(
    package: SimulatedPackage,
) -> None:
    package.set_unreachable(60)
    for call in (
        lambda: book(package, "t1"),
        lambda: package.delete_booking(ref("t2"), "ACME", "P1"),
        lambda: package.sync(ref("t3"), "ACME"),
        lambda: package.activate(ref("t4"), "ACME"),
    ):
        with pytest.raises(PackageUnreachable):
            call()
    assert {e.outcome for e in package.executions()} == {"transient"}
    package.set_unreachable(0)
    assert book(package, "t1").idempotency_key == "t1"

    package.set_unreachable(0.2)
    deadline = time.monotonic() + 10
    while True:
        try:
            package.sync(ref("t5"), "ACME")
            break
        except PackageUnreachable:
            assert time.monotonic() < deadline, "the unreachable window never ended"
            time.sleep(0.02)


def test_every_call_is_logged_with_its_interval_and_outcome(tmp_path: Path) -> None:
    with SimulatedPackage(tmp_path / "p.sqlite", latency=(0.01, 0.02), rng_seed=1) as package:
        package.create_company("ACME", ["2024-01"], ["VK"], ["V21", "V0"])
        book(package, "t1")
        with pytest.raises(InvalidPeriod):
            book(package, "t2", period="2023-12")
        log = package.executions()
    assert [(e.task_id, e.operation, e.outcome) for e in log] == [
        ("t1", "book", "ok"),
        ("t2", "book", "invalid_period"),
    ]
    for e in log:
        assert e.ended_at is not None and e.ended_at - e.started_at >= 0.01
        assert (e.office, e.dossier, e.kind, e.attempt) == (
            "office-1",
            "d1",
            "booking_proposal.process",
            1,
        )


def test_latency_range_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SimulatedPackage(tmp_path / "p.sqlite", latency=(0.2, 0.1))


def test_reset_deletes_everything(package: SimulatedPackage) -> None:
    book(package, "t1")
    package.set_unreachable(60)
    package.reset()
    assert package.bookings(include_deleted=True) == []
    assert package.executions() == []
    with pytest.raises(UnknownDossierCode):  # reachable again, and the company is gone
        package.sync(ref("t2"), "ACME")


def test_threads_racing_on_one_key_make_one_booking(tmp_path: Path) -> None:
    package = SimulatedPackage(tmp_path / "p.sqlite", latency=(0.0, 0.01))
    package.create_company("ACME", ["2024-01"], ["VK"], ["V21", "V0"])
    barrier = threading.Barrier(8)
    ids: list[str] = []

    def worker() -> None:
        barrier.wait(timeout=30)
        ids.append(book(package, "t1").booking_id)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(ids) == 8 and len(set(ids)) == 1
    assert package.booking_count("t1") == 1
    assert [e.outcome for e in package.executions()] == ["ok"] * 8
    package.close()


def _book_in_child(path: str, barrier: Any, results: Any) -> None:
    """Runs in a spawned process: book task t1 as soon as the other process is ready too."""
    package = SimulatedPackage(path, latency=(0.0, 0.01))
    try:
        barrier.wait(timeout=60)
        results.put(book(package, "t1").booking_id)
    finally:
        package.close()


def test_processes_racing_on_one_key_make_one_booking(tmp_path: Path) -> None:
    path = str(tmp_path / "p.sqlite")
    with SimulatedPackage(path) as package:
        package.create_company("ACME", ["2024-01"], ["VK"], ["V21", "V0"])
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    children = [ctx.Process(target=_book_in_child, args=(path, barrier, results)) for _ in range(2)]
    for child in children:
        child.start()
    ids = {results.get(timeout=120), results.get(timeout=120)}
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    results.close()
    results.join_thread()
    with SimulatedPackage(path) as package:
        assert len(ids) == 1
        assert package.booking_count("t1") == 1
        assert [e.outcome for e in package.executions()] == ["ok", "ok"]


# -- order check ------------------------------------------------------------------------

_ids = itertools.count(1)


def ex(
    task: str,
    dossier: str,
    start: float,
    end: float | None,
    *,
    outcome: str | None = "ok",
    op: str = "sync",
) -> Execution:
    """A hand-made log entry of office o."""
    return Execution(next(_ids), task, "o", dossier, "dossier.sync", 1, op, start, end, outcome)


def test_tasks_completed_in_order_one_at_a_time_pass() -> None:
    log = [ex("a1", "A", 0, 1), ex("a2", "A", 1, 2), ex("b1", "B", 0.5, 1.5)]
    report = order_report(log, {("o", "A"): ["a1", "a2"], ("o", "B"): ["b1"]})
    assert report.ok
    assert report.overlaps_across_dossiers == 2  # b1 ran alongside a1 and a2


def test_task_finishing_before_an_earlier_one_is_out_of_order() -> None:
    log = [ex("a1", "A", 0, 1, outcome="transient"), ex("a2", "A", 1, 2), ex("a1", "A", 2, 3)]
    report = order_report(log, {("o", "A"): ["a1", "a2"]})
    assert report.out_of_order == 1 and not report.ok


def test_overlapping_tasks_of_one_dossier_are_counted() -> None:
    log = [ex("a1", "A", 0, 2), ex("a2", "A", 1, 3), ex("a2", "A", 1.5, 2.5)]
    report = order_report(log, {("o", "A"): ["a1", "a2"]})
    assert report.overlaps_within_dossier == 2  # two attempts of a2 overlap a1, not each other
    assert report.overlaps_across_dossiers == 0


def test_overlap_across_dossiers_is_counted_but_is_no_fault() -> None:
    log = [ex("a1", "A", 0, 2), ex("b1", "B", 1, 3), ex("c1", "C", 2.5, 4)]
    report = order_report(log, {("o", "A"): ["a1"], ("o", "B"): ["b1"], ("o", "C"): ["c1"]})
    assert report.overlaps_across_dossiers == 2 and report.ok


def test_task_never_ok_or_not_booked_once_is_lost_unless_expected_to_fail() -> None:
    log = [ex("a1", "A", 0, 1, outcome="invalid_period"), ex("a2", "A", 1, 2, op="book")]
    expected = {("o", "A"): ["a1", "a2", "a3"]}
    assert order_report(log, expected).lost == ("a1", "a3")
    assert order_report(log, expected, expect_ok={"a2"}).lost == ()
    assert order_report(log, expected, {"a2"}, booked={"a2": 0}).lost == ("a2",)
    assert order_report(log, expected, {"a2"}, booked={"a2": 1}).lost == ()


def test_unfinished_execution_is_reported_and_not_an_overlap() -> None:
    log = [ex("a1", "A", 0, None, outcome=None), ex("a1", "A", 5, 6), ex("a2", "A", 7, 8)]
    report = order_report(log, {("o", "A"): ["a1", "a2"]})
    assert report.unfinished == 1 and report.ok


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from("ABC"), st.sampled_from("xyz"), st.integers(0, 20), st.integers(1, 5)
        ),
        max_size=30,
    )
)
def test_sweep_counts_the_same_overlapping_pairs_as_brute_force(
    spans: list[tuple[str, str, int, int]],
) -> None:
    log = [ex(f"{d}{t}", d, s, s + n) for d, t, s, n in spans]
    report = order_report(log, {})

    def overlap(a: Execution, b: Execution) -> bool:
        return a.started_at < (b.ended_at or 0) and b.started_at < (a.ended_at or 0)

    pairs = list(itertools.combinations(log, 2))
    within = sum(
        overlap(a, b) for a, b in pairs if a.dossier == b.dossier and a.task_id != b.task_id
    )
    across = sum(overlap(a, b) for a, b in pairs if a.dossier != b.dossier)
    assert (report.overlaps_within_dossier, report.overlaps_across_dossiers) == (within, across)


def test_check_order_reads_the_real_log(tmp_path: Path) -> None:
    package = SimulatedPackage(tmp_path / "p.sqlite", latency=(0.01, 0.02))
    for code in ("A", "B"):
        package.create_company(code, ["2024-01"], ["VK"], ["V21", "V0"])
    barrier = threading.Barrier(2)

    def run_dossier(code: str) -> None:
        barrier.wait(timeout=30)
        for n in range(4):
            task = TaskRef(f"{code}{n}", "office-1", code, "booking_proposal.process", 1)
            package.book(
                task,
                dossier_code=code,
                proposal_id=f"P{n}",
                period="2024-01",
                journal="VK",
                lines=LINES,
            )

    threads = [threading.Thread(target=run_dossier, args=(code,)) for code in ("A", "B")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    expected = {("office-1", code): [f"{code}{n}" for n in range(4)] for code in ("A", "B")}
    report = package.check_order(expected)
    assert report.ok, report
    assert report.overlaps_across_dossiers > 0  # the two dossiers really ran side by side
    assert report.double_booked == 0
    package.close()
