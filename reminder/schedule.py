"""Reminder days: every 14 days from an anchor Monday, and the catch-up rule (pure).

A run on day D sends the digest of the most recent reminder day R with D-6 <= R <= D.
So a reminder day missed because nothing ran (cron down, deploy) is caught up by any
run in the six days that follow, and never later: after a week the digest would be
stale, and the next reminder day comes a week later anyway. Whether R's digest was
already sent is the outbox's business, not this module's.

Days are plain calendar dates in the office's time zone; no clock is read here.
"""

from __future__ import annotations

from datetime import date, timedelta

from reminder.errors import ScheduleError

PERIOD_DAYS = 14
CATCH_UP_DAYS = 6  # a run on D may still send R's digest when D - R <= 6
MIN_AGE_DAYS = 5  # a dossier is reminded when its oldest open instruction is this old


def parse_anchor(text: str) -> date:
    """The anchor Monday of a `YYYY-MM-DD` setting; ScheduleError if it is not a Monday."""
    try:
        anchor = date.fromisoformat(text.strip())
    except ValueError as exc:
        raise ScheduleError(f"reminder anchor {text!r} is not a YYYY-MM-DD date") from exc
    if anchor.weekday() != 0:
        raise ScheduleError(f"reminder anchor {anchor} is not a Monday")
    return anchor


def is_reminder_day(day: date, anchor: date) -> bool:
    """Whether `day` is a reminder day (also before the anchor: the rhythm extends back)."""
    return (day - anchor).days % PERIOD_DAYS == 0


def last_reminder_day(on_or_before: date, anchor: date) -> date:
    """The latest reminder day that is not after `on_or_before`."""
    # Python's % is never negative, so this also holds for days before the anchor.
    return on_or_before - timedelta(days=(on_or_before - anchor).days % PERIOD_DAYS)


def next_reminder_day(after: date, anchor: date) -> date:
    """The first reminder day strictly after `after`."""
    return last_reminder_day(after, anchor) + timedelta(days=PERIOD_DAYS)


def due_reminder_day(run_day: date, anchor: date) -> date | None:
    """The reminder day whose digest a run on `run_day` sends, None outside catch-up."""
    day = last_reminder_day(run_day, anchor)
    return day if (run_day - day).days <= CATCH_UP_DAYS else None


def age_in_days(created: date, reminder_day: date) -> int:
    """Calendar days between an instruction's local creation date and the reminder day."""
    return (reminder_day - created).days
