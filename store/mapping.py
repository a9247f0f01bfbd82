"""Documents to records and back, for the mappings more than one repository uses.

A mapping that only one repository uses stays private in that repository's module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from store.base import Doc
from store.records import InstructionRecord, TaskRecord
from workers.vocabulary import InstructionStatus, Severity, TaskStatus, severity_of


def task_record(doc: Mapping[str, Any]) -> TaskRecord:
    """A task document as a record."""
    return TaskRecord(
        id=doc["_id"],
        office=doc["office"],
        dossier=doc["dossier"],
        kind=doc["kind"],
        payload=doc.get("payload") or {},
        status=TaskStatus(doc["status"]),
        submitted_at=doc["submitted_at"],
        seq=doc.get("seq"),
        accepted_at=doc.get("accepted_at"),
        queued_at=doc.get("queued_at"),
        started_at=doc.get("started_at"),
        finished_at=doc.get("finished_at"),
        attempts=doc.get("attempts", 0),
        retries=doc.get("retries", 0),
        failures=doc.get("failures", 0),
        next_attempt_at=doc.get("next_attempt_at"),
        coalesce_key=doc.get("coalesce_key"),
        last_action=doc.get("last_action"),
        run=doc.get("run", 0),
        worker=doc.get("worker"),
        result=doc.get("result"),
        error=doc.get("error"),
    )


def instruction_doc(i: InstructionRecord) -> Doc:
    """An instruction as stored (inserted by the sequencer's batch or one at a time)."""
    return {
        "_id": i.id,
        "task_id": i.task_id,
        "office": i.office,
        "dossier": i.dossier,
        "kind": i.kind,
        "code": i.code,
        "severity": i.severity,
        "facts": dict(i.facts),
        "status": i.status.value,
        "created_at": i.created_at,
        "resolved_at": i.resolved_at,
        "resolution": i.resolution,
        "raw": i.raw,
    }


def instruction_record(doc: Mapping[str, Any]) -> InstructionRecord:
    """An instruction document as a record."""
    return InstructionRecord(
        id=doc["_id"],
        task_id=doc.get("task_id", ""),
        office=doc["office"],
        dossier=doc["dossier"],
        kind=doc.get("kind", ""),
        code=doc["code"],
        severity=severity_of(doc.get("severity")) or Severity.RED,  # unknown: support looks
        facts=dict(doc.get("facts") or {}),
        status=InstructionStatus(doc["status"]),
        created_at=doc["created_at"],
        resolved_at=doc.get("resolved_at"),
        resolution=doc.get("resolution", ""),
        raw=bytes(doc["raw"]) if doc.get("raw") is not None else None,
    )
