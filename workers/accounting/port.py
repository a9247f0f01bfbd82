"""The accounting-package port: the one interface every adapter (simulated, vendor) offers.

Adapters raise the types of `workers.errors` only: library exceptions are
translated at the adapter (`raise PackageUnreachable(...) from exc`), so the
runner can tell transient from permanent by type. Every call carries a `TaskRef`:
its `task_id` is the idempotency key, which makes a redelivered task safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class TaskRef:
    """Who is calling: the idempotency key and the context of the execution log."""

    task_id: str
    office: str
    dossier: str
    kind: str
    attempt: int

    @property
    def idempotency_key(self) -> str:
        """Key that makes repeating this task's effect harmless (the task id)."""
        return self.task_id


@dataclass(frozen=True)
class BookingLine:
    """One line of a booking: an amount on an account with a VAT code."""

    account: str
    amount: Decimal
    vat_code: str


@dataclass(frozen=True)
class Booking:
    """A booking as the package holds it."""

    booking_id: str
    idempotency_key: str
    dossier_code: str
    proposal_id: str
    period: str
    journal: str
    lines: tuple[BookingLine, ...]


@runtime_checkable
class AccountingPackage(Protocol):
    """Operations a connector performs on the accounting package of one office."""

    def book(
        self,
        ref: TaskRef,
        *,
        dossier_code: str,
        proposal_id: str,
        period: str,
        journal: str,
        lines: Sequence[BookingLine],
    ) -> Booking:
        """Book a proposal; the same `ref.task_id` returns the first booking again."""
        ...

    def delete_booking(self, ref: TaskRef, dossier_code: str, proposal_id: str) -> bool:
        """Delete the live booking of a proposal; False when there was none (idempotent)."""
        ...

    def sync(self, ref: TaskRef, dossier_code: str) -> int:
        """Synchronise a company; returns the number of bookings seen."""
        ...

    def activate(self, ref: TaskRef, dossier_code: str) -> None:
        """Link a dossier to its company in the package (idempotent per task)."""
        ...

    def close(self) -> None:
        """Release connections; the adapter is not used afterwards."""
        ...
