"""Requested actions in MongoDB: inserted by the requester, decided once by the sequencer."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pymongo.collection import Collection
from pymongo.database import Database

from store.base import Doc, Repository, mapped
from store.records import ActionRecord
from workers.vocabulary import ActionStatus, ActionType

ACTIONS = "actions"


def _action(doc: Mapping[str, Any]) -> ActionRecord:
    return ActionRecord(
        id=doc["_id"],
        task_id=doc["task_id"],
        type=ActionType(doc["type"]),
        requested_by=doc.get("requested_by", ""),
        requested_at=doc["requested_at"],
        status=ActionStatus(doc["status"]),
        payload=doc.get("payload"),
        reason=doc.get("reason", ""),
        decided_at=doc.get("decided_at"),
    )


class Actions(Repository):
    """Requested actions: inserted by the requester, decided once by the sequencer."""

    def __init__(self, db: Database[Doc]) -> None:
        super().__init__(db)
        self._c: Collection[Doc] = db[ACTIONS]

    def insert(self, action: ActionRecord) -> None:
        """Record a request before its command is published."""
        with mapped():
            self._c.insert_one(
                {
                    "_id": action.id,
                    "task_id": action.task_id,
                    "type": action.type.value,
                    "requested_by": action.requested_by,
                    "requested_at": action.requested_at,
                    "status": action.status.value,
                    "payload": action.payload,
                    "reason": "",
                }
            )

    def get(self, action_id: str) -> ActionRecord | None:
        """One action by id."""
        with mapped():
            doc = self._c.find_one({"_id": action_id})
        return _action(doc) if doc else None

    def decide(self, action_id: str, status: ActionStatus, reason: str, at: datetime) -> None:
        """Record the outcome (only the first decision counts)."""
        with mapped():
            self._c.update_one(
                {"_id": action_id, "status": ActionStatus.PENDING.value},
                {"$set": {"status": status.value, "reason": reason, "decided_at": at}},
            )
