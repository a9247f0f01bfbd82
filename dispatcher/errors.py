"""Errors of the dispatcher package: one root."""

from __future__ import annotations


class DispatcherError(Exception):
    """Root of every error raised by the dispatcher package."""


class InvalidSubmission(DispatcherError, ValueError):
    """A submission the dispatcher refuses: bad ids, unknown kind or invalid payload."""
