"""The words every layer shares: error codes, severities, failures and statuses.

Typed once, here, and imported by every package (store/ included): this module imports
nothing but the standard library. A status or severity is compared as one of these
enums, never as a bare string; they are `str` enums, so their values go to JSON, Mongo
and templates unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


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


def severity_of(value: object) -> Severity | None:
    """The severity a stored value names, or None for anything else."""
    try:
        return Severity(value) if isinstance(value, str) else None
    except ValueError:
        return None


def worst(severities: Iterable[Severity]) -> Severity | None:
    """The stripe of a dossier with these open instructions: red before orange, or None."""
    found = set(severities)
    return Severity.RED if Severity.RED in found else Severity.ORANGE if found else None


@dataclass(frozen=True)
class Failure:
    """What a result event says about a failed attempt (JSON-safe via to_dict)."""

    code: ErrorCode
    severity: Severity
    transient: bool
    message: str
    facts: dict[str, str] = field(default_factory=dict, hash=False)

    @classmethod
    def of(cls, code: ErrorCode, message: str, *, transient: bool = False, **facts: str) -> Failure:
        """A failure whose severity follows from its code."""
        return cls(code, SEVERITY[code], transient, message, facts)

    def to_dict(self) -> dict[str, object]:
        """Plain JSON-safe form for the message envelope and the stored task."""
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


class TaskStatus(StrEnum):
    """Where a task is in its life."""

    SUBMITTED = "submitted"  # stored by the API, not yet seen by the sequencer
    WAITING = "waiting"  # ordered in its dossier, waits for the tasks before it
    QUEUED = "queued"  # released to the office's work queue
    RUNNING = "running"  # a connector started an attempt
    RETRY_WAIT = "retry_wait"  # the package was unreachable: waits for its next attempt
    DONE = "done"
    FAILED = "failed"  # failed for good: the dossier is blocked
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # a person resolved it by hand; the dossier goes on

    @property
    def finished(self) -> bool:
        """Whether nothing more will happen to the task by itself."""
        return self in (TaskStatus.DONE, TaskStatus.CANCELLED, TaskStatus.SKIPPED)


IN_FLIGHT = (TaskStatus.QUEUED, TaskStatus.RUNNING)
"""Released to a connector and not yet reported finished."""


class ActionType(StrEnum):
    """What a person can do to a task."""

    RESTART = "restart"  # run a failed (or retry-waiting) task again, maybe corrected
    CANCEL = "cancel"  # never run it; the dossier goes on with the next task
    RESOLVE = "resolve"  # fixed by hand in the package: skip it, the dossier goes on


class ActionStatus(StrEnum):
    """Outcome of an action, decided by the sequencer in the dossier's order."""

    PENDING = "pending"
    APPLIED = "applied"
    REFUSED = "refused"


class InstructionStatus(StrEnum):
    """Whether somebody still has to act."""

    OPEN = "open"
    RESOLVED = "resolved"  # the task was restarted, cancelled or resolved by hand
