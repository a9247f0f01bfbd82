"""Instructions: what a person must do about a failed task.

The partition owners insert and close them in their batch (store/sequencing.py); this
repository serves everyone else's reads and the writes made one at a time.
"""

from __future__ import annotations

from datetime import datetime

from pymongo.collection import Collection
from pymongo.database import Database

from store.base import Doc, Repository, mapped
from store.errors import Conflict
from store.mapping import instruction_doc, instruction_record
from store.records import InstructionRecord
from workers.vocabulary import InstructionStatus, Severity

INSTRUCTIONS = "instructions"


class Instructions(Repository):
    """The `instructions` collection (written by the sequencer, read by everyone)."""

    def __init__(self, db: Database[Doc]) -> None:
        super().__init__(db)
        self._docs: Collection[Doc] = db[INSTRUCTIONS]

    def ensure_indexes(self) -> None:
        """The indexes of the readers' filters and of the reads by task (idempotent)."""
        with mapped():
            self._docs.create_index(
                [("office", 1), ("status", 1), ("severity", 1)], name="office_status_severity"
            )
            self._docs.create_index([("task_id", 1)], name="task")

    def insert(self, instruction: InstructionRecord) -> bool:
        """Store a new instruction; False when one with that id exists (a redelivery)."""
        doc = instruction_doc(instruction)
        try:
            with mapped():
                self._docs.insert_one(doc)
        except Conflict:
            return False
        return True

    def get(self, instruction_id: str) -> InstructionRecord | None:
        """One instruction by id."""
        with mapped():
            doc = self._docs.find_one({"_id": instruction_id})
        return instruction_record(doc) if doc else None

    def find(
        self,
        *,
        office: str | None = None,
        dossier: str | None = None,
        task_id: str | None = None,
        status: InstructionStatus | None = None,
        severity: Severity | None = None,
        limit: int = 0,
    ) -> list[InstructionRecord]:
        """Instructions matching every filter given, oldest first."""
        query: Doc = {}
        for name, value in (
            ("office", office),
            ("dossier", dossier),
            ("task_id", task_id),
            ("severity", severity),
        ):
            if value is not None:
                query[name] = value
        if status is not None:
            query["status"] = status.value
        with mapped():
            cursor = self._docs.find(query, limit=limit).sort([("created_at", 1), ("_id", 1)])
            return [instruction_record(d) for d in cursor]

    def resolve(self, instruction_id: str, at: datetime, resolution: str) -> None:
        """Close an open instruction (restart, cancel or resolve of its task)."""
        with mapped():
            self._docs.update_one(
                {"_id": instruction_id, "status": InstructionStatus.OPEN.value},
                {
                    "$set": {
                        "status": InstructionStatus.RESOLVED.value,
                        "resolved_at": at,
                        "resolution": resolution,
                    }
                },
            )
