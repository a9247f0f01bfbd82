"""Instructions in MongoDB: what a person must do about a failed task."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pymongo.collection import Collection

from store.base import Doc
from store.base import mapped as _mapped
from store.errors import Conflict
from store.records import InstructionRecord, InstructionStatus


class InstructionsMixin:
    """Instruction methods of the Store (written by the sequencer, read by everyone)."""

    instructions: Collection[Doc]

    def insert_instruction(self, instruction: InstructionRecord) -> bool:
        """Store a new instruction; False when one with that id exists (a redelivery)."""
        doc: Doc = {
            "_id": instruction.id,
            "task_id": instruction.task_id,
            "office": instruction.office,
            "dossier": instruction.dossier,
            "kind": instruction.kind,
            "code": instruction.code,
            "severity": instruction.severity,
            "facts": dict(instruction.facts),
            "status": instruction.status.value,
            "created_at": instruction.created_at,
            "resolved_at": instruction.resolved_at,
            "resolution": instruction.resolution,
            "raw": instruction.raw,
        }
        try:
            with _mapped():
                self.instructions.insert_one(doc)
        except Conflict:
            return False
        return True

    def instruction(self, instruction_id: str) -> InstructionRecord | None:
        """One instruction by id."""
        with _mapped():
            doc = self.instructions.find_one({"_id": instruction_id})
        return _instruction(doc) if doc else None

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
        with _mapped():
            cursor = self.instructions.find(query, limit=limit).sort(
                [("created_at", 1), ("_id", 1)]
            )
            return [_instruction(d) for d in cursor]

    def resolve_instruction(self, instruction_id: str, at: datetime, resolution: str) -> None:
        """Close an open instruction (restart, cancel or resolve of its task)."""
        with _mapped():
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


def _instruction(doc: Mapping[str, Any]) -> InstructionRecord:
    return InstructionRecord(
        id=doc["_id"],
        task_id=doc.get("task_id", ""),
        office=doc["office"],
        dossier=doc["dossier"],
        kind=doc.get("kind", ""),
        code=doc["code"],
        severity=doc["severity"],
        facts=dict(doc.get("facts") or {}),
        status=InstructionStatus(doc["status"]),
        created_at=doc["created_at"],
        resolved_at=doc.get("resolved_at"),
        resolution=doc.get("resolution", ""),
        raw=bytes(doc["raw"]) if doc.get("raw") is not None else None,
    )
