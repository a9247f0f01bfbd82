"""An accounting package that does nothing, instantly: measures the pipeline, not the package.

Used by the benchmark so that the figures show broker, sequencer and runner
overhead only. It keeps no state and never fails, so it checks nothing; use
`SimulatedPackage` wherever behaviour matters.
"""

from __future__ import annotations

from collections.abc import Sequence

from workers.accounting.port import Booking, BookingLine, TaskRef


class NoopPackage:
    """Port implementation that answers every call at once without storing anything."""

    def __init__(self) -> None:
        """Nothing to set up; the constructor exists for symmetry with real adapters."""
        self.closed = False

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
        """Return a booking derived from the task id, as a real package would on a retry."""
        # Deriving the id from the key keeps the answer identical on redelivery.
        return Booking(
            booking_id=f"noop-{ref.task_id}",
            idempotency_key=ref.idempotency_key,
            dossier_code=dossier_code,
            proposal_id=proposal_id,
            period=period,
            journal=journal,
            lines=tuple(lines),
        )

    def delete_booking(self, ref: TaskRef, dossier_code: str, proposal_id: str) -> bool:
        """Report that nothing was deleted (there is never anything)."""
        return False

    def sync(self, ref: TaskRef, dossier_code: str) -> int:
        """Report an empty company."""
        return 0

    def activate(self, ref: TaskRef, dossier_code: str) -> None:
        """Accept every activation."""

    def close(self) -> None:
        """Mark the adapter closed; there is nothing to release."""
        self.closed = True
