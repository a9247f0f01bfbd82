"""Instructions in MongoDB: what a person must do about a failed task."""

from __future__ import annotations

from datetime import datetime

from pymongo.collection import Collection

from store.base import Doc, mapped
from store.errors import Conflict
from store.mapping import instruction_doc, instruction_record
from store.records import InstructionRecord, InstructionStatus


class InstructionsMixin:
    """Instruction methods of the Store (written by the sequencer, read by everyone)."""

    instructions: Collection[Doc]

    def insert_instruction(self, instruction: InstructionRecord) -> bool:
        """Store a new instruction; False when one with that id exists (a redelivery)."""
        doc = instruction_doc(instruction)
        try:
            with mapped():
                self.instructions.insert_one(doc)
        except Conflict:
            return False
        return True

    def instruction(self, instruction_id: str) -> InstructionRecord | None:
        """One instruction by id."""
        with mapped():
            doc = self.instructions.find_one({"_id": instruction_id})
        return instruction_record(doc) if doc else None

    def find_instructions(
        self,
        *,
        office: str | None = None,
        dossier: str | None = None,
        task_id: str | None = None,
        status: InstructionStatus | None = None,
        severity: str | None = None,
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
            cursor = self.instructions.find(query, limit=limit).sort(
                [("created_at", 1), ("_id", 1)]
            )
            return [instruction_record(d) for d in cursor]

    def resolve_instruction(self, instruction_id: str, at: datetime, resolution: str) -> None:
        """Close an open instruction (restart, cancel or resolve of its task)."""
        with mapped():
            self.instructions.update_one(
                {"_id": instruction_id, "status": InstructionStatus.OPEN.value},
                {
                    "$set": {
                        "status": InstructionStatus.RESOLVED.value,
                        "resolved_at": at,
                        "resolution": resolution,
                    }
                },
            )
