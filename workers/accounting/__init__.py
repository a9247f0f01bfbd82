"""Accounting-package adapters behind one port: the simulated package, a no-op, vendors later."""

from workers.accounting.noop import NoopPackage
from workers.accounting.port import AccountingPackage, Booking, BookingLine, TaskRef
from workers.accounting.simulated import Execution, OrderReport, SimulatedPackage

__all__ = [
    "AccountingPackage",
    "Booking",
    "BookingLine",
    "Execution",
    "NoopPackage",
    "OrderReport",
    "SimulatedPackage",
    "TaskRef",
]
