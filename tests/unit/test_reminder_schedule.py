"""Reminder days every 14 days from the anchor Monday, and the six-day catch-up."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reminder.errors import ScheduleError
from reminder.schedule import (
    due_reminder_day,
    is_reminder_day,
    last_reminder_day,
    next_reminder_day,
    parse_anchor,
)

ANCHOR = date(2023, 11, 20)
days = st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31))


def test_the_default_anchor_is_a_reminder_day_and_the_next_monday_is_not() -> None:
    assert parse_anchor("2023-11-20") == ANCHOR
    assert is_reminder_day(date(2023, 11, 20), ANCHOR)
    assert not is_reminder_day(date(2023, 11, 27), ANCHOR)
    assert is_reminder_day(date(2023, 12, 4), ANCHOR)
    assert is_reminder_day(date(2023, 11, 6), ANCHOR)  # the rhythm extends before the anchor


@pytest.mark.parametrize("text", ["2023-11-21", "20-11-2023", "tomorrow"])
def test_an_anchor_that_is_no_monday_or_no_date_is_refused(text: str) -> None:
    with pytest.raises(ScheduleError):
        parse_anchor(text)


def test_reminder_days_run_across_a_year_boundary() -> None:
    assert last_reminder_day(date(2024, 1, 1), ANCHOR) == date(2024, 1, 1)
    assert last_reminder_day(date(2023, 12, 31), ANCHOR) == date(2023, 12, 18)
    assert next_reminder_day(date(2023, 12, 18), ANCHOR) == date(2024, 1, 1)


def test_a_year_with_53_iso_weeks_does_not_break_the_rhythm() -> None:
    # 2026 has 53 ISO weeks: the reminder weeks switch from odd to even ISO numbers.
    reminder_days = [
        d
        for d in (date(2026, 12, 1) + timedelta(n) for n in range(60))
        if is_reminder_day(d, ANCHOR)
    ]
    assert reminder_days == [
        date(2026, 12, 14),
        date(2026, 12, 28),
        date(2027, 1, 11),
        date(2027, 1, 25),
    ]
    assert [d.isocalendar().week for d in reminder_days] == [51, 53, 2, 4]
    assert date(2026, 12, 28).isocalendar().week == 53


@pytest.mark.parametrize(
    ("run_day", "due"),
    [
        (date(2023, 11, 19), None),  # 13 days after 2023-11-06
        (date(2023, 11, 20), date(2023, 11, 20)),
        (date(2023, 11, 21), date(2023, 11, 20)),
        (date(2023, 11, 26), date(2023, 11, 20)),  # six days late: still caught up
        (date(2023, 11, 27), None),  # seven days late: too late
        (date(2023, 12, 3), None),
        (date(2023, 12, 4), date(2023, 12, 4)),
    ],
)
def test_a_missed_reminder_day_is_caught_up_within_six_days_only(
    run_day: date, due: date | None
) -> None:
    assert due_reminder_day(run_day, ANCHOR) == due


@given(day=days)
def test_the_last_reminder_day_is_a_monday_at_most_13_days_back(day: date) -> None:
    last = last_reminder_day(day, ANCHOR)
    assert last.weekday() == 0
    assert 0 <= (day - last).days < 14
    assert is_reminder_day(last, ANCHOR)
    assert is_reminder_day(day, ANCHOR) == (last == day)


@given(day=days)
def test_reminder_days_are_fourteen_days_apart(day: date) -> None:
    last = last_reminder_day(day, ANCHOR)
    assert next_reminder_day(last, ANCHOR) - last == timedelta(days=14)
    assert not any(is_reminder_day(last + timedelta(n), ANCHOR) for n in range(1, 14))


@given(day=days)
def test_a_run_sends_at_most_the_digest_of_the_last_reminder_day(day: date) -> None:
    due = due_reminder_day(day, ANCHOR)
    last = last_reminder_day(day, ANCHOR)
    assert due == (last if (day - last).days <= 6 else None)
