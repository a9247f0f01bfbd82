"""Everything MongoDB: collections, indexes, records and their transitions."""

from store.errors import Conflict, Fenced, NotFound, StoreError, StoreUnavailable
from store.mongo import Actions, Store
from store.records import (
    ActionRecord,
    ActionStatus,
    ActionType,
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
    "ActionRecord",
    "ActionStatus",
    "ActionType",
    "Actions",
    "Conflict",
    "DossierRecord",
    "Fenced",
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
