"""Handlers of the built-in task kinds, registered in `workers.kinds` when this module loads.

A handler is a plain function: task reference, validated payload and an
accounting package in, a small JSON-safe result out. It does no retrying and no
error mapping: the adapter raises the types of `workers.errors` and the runner
decides what a failure means. Import this module once in each composition root
(runner, dispatcher API) so that `workers.kinds.spec_for` knows the kinds.
"""

from __future__ import annotations

from typing import Any

from workers.accounting.port import AccountingPackage, BookingLine, TaskRef
from workers.kinds import (
    ActivateDossier,
    DeleteBookingProposal,
    Kind,
    KindSpec,
    ProcessBookingProposal,
    Result,
    SyncDossier,
    register,
)


def process_booking_proposal(
    ref: TaskRef, payload: ProcessBookingProposal, package: AccountingPackage
) -> Result:
    """Book the proposal; redelivery returns the same booking (the task id is the key)."""
    booking = package.book(
        ref,
        dossier_code=payload.dossier_code,
        proposal_id=payload.proposal_id,
        period=payload.period,
        journal=payload.journal,
        lines=[BookingLine(x.account, x.amount, x.vat_code) for x in payload.lines],
    )
    return {"booking_id": booking.booking_id, "lines": len(booking.lines)}


def delete_booking_proposal(
    ref: TaskRef, payload: DeleteBookingProposal, package: AccountingPackage
) -> Result:
    """Delete the proposal's booking; deleting one that is already gone succeeds."""
    deleted = package.delete_booking(ref, payload.dossier_code, payload.proposal_id)
    return {"deleted": deleted}


def sync_dossier(ref: TaskRef, payload: SyncDossier, package: AccountingPackage) -> Result:
    """Synchronise the dossier's company; reports how many bookings it holds."""
    return {"bookings": package.sync(ref, payload.dossier_code)}


def activate_dossier(ref: TaskRef, payload: ActivateDossier, package: AccountingPackage) -> Result:
    """Link the dossier to its company in the package."""
    package.activate(ref, payload.dossier_code)
    return {"activated": True, "dossier_code": payload.dossier_code}


BUILTIN_SPECS: tuple[KindSpec[Any], ...] = (
    KindSpec(Kind.BOOKING_PROPOSAL_PROCESS.value, ProcessBookingProposal, process_booking_proposal),
    KindSpec(Kind.BOOKING_PROPOSAL_DELETE.value, DeleteBookingProposal, delete_booking_proposal),
    # An equal sync still waiting answers for a new one: the package is read once either way.
    KindSpec(Kind.DOSSIER_SYNC.value, SyncDossier, sync_dossier, coalescible=True),
    KindSpec(Kind.DOSSIER_ACTIVATE.value, ActivateDossier, activate_dossier),
)
"""Specs of the built-in kinds, in the order of `Kind`."""

for _spec in BUILTIN_SPECS:
    register(_spec)
