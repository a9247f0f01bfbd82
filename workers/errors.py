"""Error taxonomy of task work: transient vs permanent is a type, the instruction code a field.

Adapters raise these types (translating library exceptions at their boundary);
`classify` turns any exception into a JSON-safe `Failure` for the result event.
Messages of these errors are written by our own code from codes and facts, never
from payload contents, so they may be shown and logged; the text of foreign
exceptions is never used because it may hold personal data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import ClassVar


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


class Severity(StrEnum):
    """Stripe colour of an instruction: who must act."""

    ORANGE = "orange"  # the accountant can fix it
    RED = "red"  # the vendor's support team must act


class ErrorCode(StrEnum):
    """Known failure causes; each one maps to an instruction text."""

    INVALID_PERIOD = "invalid_period"
    INVALID_JOURNAL = "invalid_journal"
    INVALID_VAT_CODE = "invalid_vat_code"
    DUPLICATE_BOOKING = "duplicate_booking"
    UNKNOWN_DOSSIER_CODE = "unknown_dossier_code"
    PACKAGE_UNREACHABLE = "package_unreachable"
    DATABASE_ERROR = "database_error"
    UNKNOWN_ERROR = "unknown_error"
    UNREADABLE_MESSAGE = "unreadable_message"


_ORANGE = Severity.ORANGE
_RED = Severity.RED

SEVERITY: Mapping[ErrorCode, Severity] = MappingProxyType(
    {
        ErrorCode.INVALID_PERIOD: _ORANGE,
        ErrorCode.INVALID_JOURNAL: _ORANGE,
        ErrorCode.INVALID_VAT_CODE: _ORANGE,
        ErrorCode.DUPLICATE_BOOKING: _ORANGE,
        ErrorCode.UNKNOWN_DOSSIER_CODE: _ORANGE,
        ErrorCode.PACKAGE_UNREACHABLE: _ORANGE,
        ErrorCode.DATABASE_ERROR: _RED,
        ErrorCode.UNKNOWN_ERROR: _RED,
        ErrorCode.UNREADABLE_MESSAGE: _RED,
    }
)
"""Severity of each error code."""


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
    """Root of errors in what a client submits (kind or payload); raised before any work."""


class UnknownKind(InvalidSubmission):
    """No kind of that name is registered."""


class InvalidPayload(InvalidSubmission):
    """The payload does not match the kind's schema; the message lists the fields."""


@dataclass(frozen=True)
class Failure:
    """What a result event says about a failed attempt (JSON-safe via to_dict)."""

    code: ErrorCode
    severity: Severity
    transient: bool
    message: str
    facts: dict[str, str] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-safe form for the message envelope."""
        return {
            "code": self.code.value,
            "severity": self.severity.value,
            "transient": self.transient,
            "message": self.message,
            "facts": dict(self.facts),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Failure:
        """Rebuild from `to_dict` output; raises ValueError on anything malformed."""
        code, severity, transient = data.get("code"), data.get("severity"), data.get("transient")
        message, facts = data.get("message"), data.get("facts", {})
        if not isinstance(code, str) or not isinstance(severity, str):
            raise ValueError("failure code and severity must be strings")
        if not isinstance(transient, bool) or not isinstance(message, str):
            raise ValueError("failure transient must be a bool and message a string")
        if not isinstance(facts, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in facts.items()
        ):
            raise ValueError("failure facts must map strings to strings")
        # ErrorCode(...) / Severity(...) raise ValueError for unknown values.
        return cls(ErrorCode(code), Severity(severity), transient, message, dict(facts))


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
