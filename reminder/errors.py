"""Errors of the reminder package: one root, transient vs permanent as types."""

from __future__ import annotations


class MailError(Exception):
    """Root of every error raised while rendering or sending mail."""


class MailUnavailable(MailError):
    """The SMTP server cannot be reached or answered 4xx: the same mail may go out later."""


class MailRejected(MailError):
    """The SMTP server refused the mail for good (5xx): sending it again will not help."""


class ScheduleError(MailError, ValueError):
    """A reminder setting (anchor day) has the wrong form."""
