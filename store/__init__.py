"""Everything MongoDB: the connection, one repository per collection, records and errors.

`store` is the only package that imports pymongo (or bson): `Store` connects and hands
out the repositories (`store.tasks`, `store.instructions`, `store.offices`...), which take
and return the records of store/records.py and raise the errors of store/errors.py.
"""

from store.actions import Actions
from store.errors import Conflict, Fenced, NotFound, StoreError, StoreUnavailable
from store.mongo import Store
from store.records import (
    ActionRecord,
    DossierRecord,
    HistoryEntry,
    InstructionRecord,
    OfficeRecord,
    Role,
    TaskRecord,
    UserRecord,
)

__all__ = [
    "ActionRecord",
    "Actions",
    "Conflict",
    "DossierRecord",
    "Fenced",
    "HistoryEntry",
    "InstructionRecord",
    "NotFound",
    "OfficeRecord",
    "Role",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "TaskRecord",
    "UserRecord",
]
