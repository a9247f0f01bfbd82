"""Error taxonomy of task work: transient vs permanent is a type, the instruction code a field.

Adapters raise these types (translating library exceptions at their boundary);
`classify` turns any exception into a `Failure` (`workers.vocabulary`) for the result event.
Messages of these errors are written by our own code from codes and facts, never
from payload contents, so they may be shown and logged; the text of foreign
exceptions is never used because it may hold personal data.
"""

from __future__ import annotations

from typing import ClassVar

from workers.vocabulary import SEVERITY, ErrorCode, Failure, Severity


class TaskError(Exception):
    """Root of every error raised while running a task."""


class TransientError(TaskError):
    """The package may succeed if asked again later; retried before anyone is told."""


class PackageUnreachable(TransientError):
    """The accounting package could not be reached."""


class PackageTimeout(TransientError):
    """The accounting package did not answer in time (the call may have taken effect)."""


class PackageServerError(TransientError):
    """The accounting package answered with an internal error."""


class RateLimited(TransientError):
    """The accounting package asks us to slow down."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        """Keep the wait the package asked for, in seconds, when it gave one."""
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(TaskError):
    """Asking again will not help until a person acts; `code` says what to do."""

    code: ClassVar[ErrorCode] = ErrorCode.UNKNOWN_ERROR

    def __init__(self, message: str, **facts: str) -> None:
        """Keep the facts (period, journal, ...) the instruction text is built from."""
        super().__init__(message)
        self.facts: dict[str, str] = dict(facts)

    @property
    def severity(self) -> Severity:
        """Who must act on this error."""
        return SEVERITY[self.code]


class InvalidPeriod(PermanentError):
    """The booking period is not open in the package."""

    code = ErrorCode.INVALID_PERIOD


class InvalidJournal(PermanentError):
    """The journal does not exist in the package."""

    code = ErrorCode.INVALID_JOURNAL


class InvalidVatCode(PermanentError):
    """A VAT code does not exist in the package."""

    code = ErrorCode.INVALID_VAT_CODE


class DuplicateBooking(PermanentError):
    """The proposal is already booked under another task."""

    code = ErrorCode.DUPLICATE_BOOKING


class UnknownDossierCode(PermanentError):
    """No company in the package has this dossier code."""

    code = ErrorCode.UNKNOWN_DOSSIER_CODE


class DatabaseError(PermanentError):
    """The company's database in the package is damaged."""

    code = ErrorCode.DATABASE_ERROR


class UnreadableMessage(PermanentError):
    """The task message cannot be decoded or understood."""

    code = ErrorCode.UNREADABLE_MESSAGE


class InvalidSubmission(ValueError):
    """Root of errors in what a client submits (ids, kind or payload); raised before any work."""


class UnknownKind(InvalidSubmission):
    """No kind of that name is registered."""


class InvalidPayload(InvalidSubmission):
    """The payload does not match the kind's schema; the message lists the fields."""


def classify(exc: BaseException) -> Failure:
    """Turn any exception into a Failure; unknown ones become a red UNKNOWN_ERROR."""
    name = type(exc).__name__
    if isinstance(exc, PermanentError):
        return Failure(exc.code, exc.severity, False, str(exc) or name, dict(exc.facts))
    if isinstance(exc, TransientError):
        facts = {"error": name}
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            facts["retry_after"] = f"{exc.retry_after:g}"
        code = ErrorCode.PACKAGE_UNREACHABLE
        return Failure(code, SEVERITY[code], True, str(exc) or name, facts)
    if isinstance(exc, InvalidSubmission):
        # A task that reached a worker with a payload its kind rejects cannot be read.
        code = ErrorCode.UNREADABLE_MESSAGE
        return Failure(code, SEVERITY[code], False, str(exc) or name, {"error": name})
    # Only the type name: str() of a foreign exception may carry personal data.
    return Failure(ErrorCode.UNKNOWN_ERROR, Severity.RED, False, name, {})
