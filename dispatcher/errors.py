"""Errors of the dispatcher package: one root.

A submission it refuses (bad ids, unknown kind, invalid payload, a foreign dossier code)
raises `workers.errors.InvalidSubmission`, the one class for what a client submits.
"""

from __future__ import annotations

from typing import Any


class DispatcherError(Exception):
    """Root of every error raised by the dispatcher package."""


class UnknownTask(DispatcherError, LookupError):
    """No task with that id."""


class ActionRefused(DispatcherError):
    """An action that does not apply to the task in its state, or not for this role."""


class NotAnnounced(DispatcherError):
    """The task is stored but its command was not confirmed; the sweeper will announce it.

    Do not submit it again: `task_id` is the task, and it will run.
    """

    def __init__(
        self, task_id: str, task_ids: list[str] | None = None, results: list[Any] | None = None
    ) -> None:
        super().__init__(
            f"task {task_id} is stored but the broker did not confirm its announcement; "
            "the dispatcher's sweeper will announce it (do not submit it again)"
        )
        self.task_id = task_id
        self.task_ids = task_ids or [task_id]
        self.results = results  # a batch's results, one per item, when it was one


class Overloaded(NotAnnounced):
    """The broker refused the announcement (nack): a control partition is full.

    The dispatcher is behind. The task is stored all the same and the sweeper announces it
    once the partitions have drained, so it must not be submitted again; slow down.
    """

    def __init__(
        self, task_id: str, task_ids: list[str] | None = None, results: list[Any] | None = None
    ) -> None:
        super().__init__(task_id, task_ids, results)
        self.args = (
            f"the broker refused to queue the announcement of task {task_id} (the dispatcher "
            "is behind, a control partition is full); it is stored and will run once the "
            "dispatcher catches up (do not submit it again)",
        )
