"""Releases whose work message is gone: what the sweeper tells the sequencer (pure).

A released task (`queued`, or `running` as a connector reported) waits for its work
message in its office's work queue, or for the connector holding it unacknowledged. If
that message is gone (the queue was purged or deleted, or the publish of the release was
lost with the owner that wrote it), nothing names the dossier again and it stays stuck.
The sweeper finds such releases by their notes (`store.outstanding`, `releases`), and
reports one to the dossier's partition owner (`ReleaseLost`) only when:

- the office's work queue held no ready and no unacknowledged message at every sweep
  for the whole grace, and the figures of those looks were taken after the release was
  stored (the management API's unacknowledged counts lag up to `STATS_LAG_S`; ready
  messages are counted exactly): the queue was seen empty after the message went in,
  so the message is not in it and no connector holds it;
- the control partitions hold no backlog (an event about the task may be on its way: a
  connector acknowledges its message only after its result event is confirmed).

The report says when the queue was surely empty (`empty_at`); the owner releases the
task again, under a new run, only if it did not publish that release after then itself
(a republish at takeover). Whatever might be left of the old run (a dead letter on its
way, a zombie owner's late publish) is stale to the sequencer, and a connector that runs
it anyway books under the same idempotency key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from workers.vocabulary import TaskStatus

IN_FLIGHT = (TaskStatus.QUEUED.value, TaskStatus.RUNNING.value)
# How old the management API's queue figures may be: RabbitMQ refreshes them every
# `collect_statistics_interval` (5 s by default).
STATS_LAG_S = 5.0


@dataclass(frozen=True)
class QueueFigures:
    """What the broker says of an office's work queue.

    The sweeper counts ready messages with a passive declare (exact, at once) and takes
    the unacknowledged ones from the management API (up to `STATS_LAG_S` old).
    """

    exists: bool
    ready: int | None = None  # None: not known (no statistics yet, a queue without leader)
    unacked: int | None = None

    @classmethod
    def of(cls, doc: Mapping[str, Any] | None) -> QueueFigures:
        """From a queue's management document; None: the queue does not exist."""
        if doc is None:
            return cls(exists=False)
        ready, unacked = doc.get("messages_ready"), doc.get("messages_unacknowledged")
        return cls(
            True,
            ready if isinstance(ready, int) else None,
            unacked if isinstance(unacked, int) else None,
        )

    @property
    def idle(self) -> bool:
        """No message in it and none held by a connector; an absent queue holds none."""
        return not self.exists or (self.ready == 0 and self.unacked == 0)


class IdleWatch:
    """Since when each office's work queue has been seen idle, sweep after sweep."""

    def __init__(self) -> None:
        self._since: dict[str, datetime] = {}

    def observe(
        self, figures: Mapping[str, QueueFigures | None], now: datetime
    ) -> dict[str, datetime]:
        """The offices idle now, with since when they have been idle at every look.

        `figures` holds the offices looked at this time (None: the broker could not
        tell); an office found busy, not known, or not looked at starts over.
        """
        since = {
            office: self._since.get(office, now)
            for office, seen in figures.items()
            if seen is not None and seen.idle
        }
        self._since = since
        return dict(since)


@dataclass(frozen=True)
class Lost:
    """A release to report lost: its task, run, and when its queue was surely empty."""

    task_id: str
    office: str
    dossier: str
    run: int
    empty_at: datetime


def lost_releases(
    tasks: Iterable[Mapping[str, Any]],
    idle: Mapping[str, datetime],
    now: datetime,
    grace_s: float,
    lag_s: float = STATS_LAG_S,
) -> list[Lost]:
    """The tasks in flight whose work message is gone: see the module's rules.

    `idle` maps the offices whose work queue is idle to since when it has been at every
    look. The management API's figures are up to `lag_s` old, so a look tells about the
    queue `lag_s` earlier: the watch of a task starts at its queue's first idle look, but
    never before `lag_s` after its release was stored, and must have lasted the grace.
    The queue was then empty at `now - lag_s` at the latest, and any publish of the
    release before that is gone.
    """
    cutoff = now - timedelta(seconds=grace_s)
    lag = timedelta(seconds=lag_s)
    found: list[Lost] = []
    for task in tasks:
        since = idle.get(str(task.get("office")))
        released = task.get("queued_at") or task.get("submitted_at")
        if task.get("status") not in IN_FLIGHT or since is None or released is None:
            continue
        if max(since, released + lag) <= cutoff:
            found.append(
                Lost(
                    str(task["_id"]),
                    str(task["office"]),
                    str(task["dossier"]),
                    int(task.get("run", 0)),
                    now - lag,
                )
            )
    return sorted(found, key=lambda lost: lost.task_id)
