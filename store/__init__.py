"""Everything MongoDB: collections, indexes, records and their transitions."""

from store.errors import Conflict, NotFound, StoreError, StoreUnavailable
from store.mongo import Store
from store.records import (
    DossierRecord,
    HistoryEntry,
    InstructionRecord,
    InstructionStatus,
    OfficeRecord,
    Role,
    TaskRecord,
    TaskStatus,
    UserRecord,
)

__all__ = [
    "Conflict",
    "DossierRecord",
    "HistoryEntry",
    "InstructionRecord",
    "InstructionStatus",
    "NotFound",
    "OfficeRecord",
    "Role",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "TaskRecord",
    "TaskStatus",
    "UserRecord",
]
