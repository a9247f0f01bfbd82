"""Dossiers' sequencing state: written by the sequencer, read by the API, ops and tools.

The partition owners write dossier documents in their fenced batch (store/sequencing.py);
this repository reads them one at a time and serves the few writes made outside it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pymongo.collection import Collection
from pymongo.database import Database

from store.base import Doc, Repository, mapped
from store.records import DossierRecord

DOSSIERS = "dossiers"


class Dossiers(Repository):
    """The `dossiers` collection: one document per dossier, `office.dossier` as `_id`."""

    def __init__(self, db: Database[Doc]) -> None:
        super().__init__(db)
        self._docs: Collection[Doc] = db[DOSSIERS]

    def ensure_indexes(self) -> None:
        """The index of the reads by office (idempotent)."""
        with mapped():
            self._docs.create_index([("office", 1)], name="office")

    def get(self, key: str) -> DossierRecord | None:
        """A dossier's sequencing state by key."""
        with mapped():
            doc = self._docs.find_one({"_id": key})
        return _record(doc) if doc else None

    def ensure(self, office: str, dossier: str, at: datetime) -> DossierRecord:
        """The dossier's state, created empty on first use."""
        key = f"{office}.{dossier}"
        with mapped():
            self._docs.update_one(
                {"_id": key},
                {
                    "$setOnInsert": {
                        "office": office,
                        "dossier": dossier,
                        "next_seq": 0,
                        "head": 0,
                        "active": None,
                        "blocked": False,
                        "updated_at": at,
                    }
                },
                upsert=True,
            )
            doc = self._docs.find_one({"_id": key})
        assert doc is not None
        return _record(doc)

    def blocked(self, office: str | None = None) -> list[DossierRecord]:
        """Dossiers whose failed task waits for a person."""
        query: Doc = {"blocked": True}
        if office is not None:
            query["office"] = office
        with mapped():
            return [_record(d) for d in self._docs.find(query).sort("_id", 1)]

    def set(self, key: str, at: datetime, **fields: Any) -> None:
        """Set fields of a dossier's state."""
        with mapped():
            self._docs.update_one({"_id": key}, {"$set": {**fields, "updated_at": at}})


def _record(doc: Mapping[str, Any]) -> DossierRecord:
    return DossierRecord(
        key=doc["_id"],
        office=doc["office"],
        dossier=doc["dossier"],
        next_seq=doc.get("next_seq", 0),
        head=doc.get("head", 0),
        active=doc.get("active"),
        blocked=doc.get("blocked", False),
        updated_at=doc.get("updated_at"),
    )
