"""Everything MongoDB: collections, indexes, records and their transitions."""

from store.errors import Conflict, NotFound, StoreError, StoreUnavailable
from store.mongo import Store
from store.records import DossierRecord, HistoryEntry, Role, TaskRecord, TaskStatus

__all__ = [
    "Conflict",
    "DossierRecord",
    "HistoryEntry",
    "NotFound",
    "Role",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "TaskRecord",
    "TaskStatus",
]
