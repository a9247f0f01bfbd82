"""Errors of the dispatcher package: one root."""

from __future__ import annotations


class DispatcherError(Exception):
    """Root of every error raised by the dispatcher package."""


class InvalidSubmission(DispatcherError, ValueError):
    """A submission the dispatcher refuses: bad ids, unknown kind or invalid payload."""


class UnknownTask(DispatcherError, LookupError):
    """No task with that id."""


class ActionRefused(DispatcherError):
    """An action that does not apply to the task in its state, or not for this role."""
