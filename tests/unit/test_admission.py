"""Submissions are admitted per office: a token bucket, and a cap on waiting tasks."""

from __future__ import annotations

import pytest

from dispatcher.api.admission import Admission
from dispatcher.api.problems import Problem


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def admission(
    clock: Clock, stored: dict[str, int], rate: float = 10, burst: int = 100, cap: int = 1000
) -> Admission:
    """An admission whose store reads come from `stored` (and are counted there)."""

    def read(office: str) -> int:
        stored["reads"] = stored.get("reads", 0) + 1
        return stored.get(office, 0)

    return Admission(rate, burst, cap, read, refresh_s=1.0, clock=clock)


def refused(gate: Admission, office: str, tasks: int) -> Problem:
    with pytest.raises(Problem) as caught:
        gate.admit(office, tasks)
    return caught.value


def test_a_burst_passes_then_the_rate_with_retry_after() -> None:
    clock, stored = Clock(), {}
    gate = admission(clock, stored)
    for _ in range(4):
        gate.admit("a", 25)  # a few hundred at once is fine: the burst
    problem = refused(gate, "a", 5)
    assert (problem.status, problem.slug) == (429, "too-many-requests")
    assert problem.headers["Retry-After"] == "1"  # 5 tasks at 10 a second
    clock.now += 0.5
    gate.admit("a", 5)
    assert refused(gate, "a", 50).headers["Retry-After"] == "5"


def test_one_office_at_its_limit_leaves_the_others_theirs() -> None:
    clock, stored = Clock(), {}
    gate = admission(clock, stored)
    gate.admit("a", 100)
    refused(gate, "a", 1)
    gate.admit("b", 100)


def test_a_batch_larger_than_the_burst_waits_for_a_full_bucket_and_leaves_a_debt() -> None:
    clock, stored = Clock(), {}
    gate = admission(clock, stored)
    gate.admit("a", 1)
    assert refused(gate, "a", 300).headers["Retry-After"] == "1"
    clock.now += 0.1
    gate.admit("a", 300)
    problem = refused(gate, "a", 1)
    assert problem.headers["Retry-After"] == "21"  # 200 in debt, plus one, at 10 a second


def test_the_waiting_cap_counts_the_store_and_what_this_process_admitted() -> None:
    clock, stored = Clock(), {"a": 900}
    gate = admission(clock, stored, burst=1000, rate=1000)
    gate.admit("a", 60)
    gate.admit("a", 40)
    problem = refused(gate, "a", 1)
    assert (problem.status, problem.slug) == (429, "too-many-waiting")
    assert problem.headers["Retry-After"] == "5"
    assert "1000 tasks waiting" in problem.detail
    assert stored["reads"] == 1  # one read per office and second, not one per submission
    stored["a"] = 400  # tasks finished (and this process's 100 are in the totals now)
    clock.now += 1.0
    gate.admit("a", 600)
    assert stored["reads"] == 2
    refused(gate, "a", 1)


def test_a_refused_submission_takes_nothing() -> None:
    clock, stored = Clock(), {"a": 995}
    gate = admission(clock, stored, burst=10, rate=1)
    refused(gate, "a", 10)  # over the cap: the bucket keeps its tokens
    stored["a"] = 0
    clock.now += 1.0
    gate.admit("a", 10)
    assert gate.waiting("a") == 10
