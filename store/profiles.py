"""Dossier profiles: display name and accounting-package code.

Profiles live in `dossier_profiles`, apart from the sequencer's `dossiers` collection: that
one holds sequencing state with a single writer (the sequencer), while a profile is written
by people through the ops CLI. Both use `office.dossier` as `_id`, so they line up by key.
Managers' assignments stay where access control and the mails read them: the user's
`dossiers` (store/directory.py, `Users.assign`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pymongo.collection import Collection
from pymongo.database import Database

from store.base import Doc, Repository, mapped
from store.records import DossierProfile

PROFILES = "dossier_profiles"


def profile_key(office: str, dossier: str) -> str:
    """The `_id` of a dossier's profile: the dossier key the sequencer uses too."""
    return f"{office}.{dossier}"


class Profiles(Repository):
    """The `dossier_profiles` collection."""

    def __init__(self, db: Database[Doc]) -> None:
        super().__init__(db)
        self._docs: Collection[Doc] = db[PROFILES]

    def ensure_indexes(self) -> None:
        """The index of the lookups by code (idempotent).

        Every submission and corrected restart that names a dossier code looks it up.
        """
        with mapped():
            self._docs.create_index([("code", 1)], name="code")

    def add(self, profile: DossierProfile) -> None:
        """Create a profile; Conflict when the office already has that dossier."""
        now = datetime.now(UTC)
        doc = {"_id": profile_key(profile.office, profile.id), **_doc(profile), "created_at": now}
        with mapped():
            self._docs.insert_one(doc)

    def save(self, profile: DossierProfile) -> None:
        """Create or replace a profile."""
        key = profile_key(profile.office, profile.id)
        with mapped():
            self._docs.update_one(
                {"_id": key},
                {"$set": {**_doc(profile), "updated_at": datetime.now(UTC)}},
                upsert=True,
            )

    def get(self, office: str, dossier: str) -> DossierProfile | None:
        """One dossier's profile."""
        with mapped():
            doc = self._docs.find_one({"_id": profile_key(office, dossier)})
        return _profile(doc) if doc else None

    def holders(self, codes: Iterable[str]) -> dict[str, set[tuple[str, str]]]:
        """The (office, dossier) pairs whose profile has each of `codes`: one query."""
        found: dict[str, set[tuple[str, str]]] = {}
        with mapped():
            docs = self._docs.find(
                {"code": {"$in": sorted(set(codes))}}, {"office": 1, "dossier": 1, "code": 1}
            )
            for doc in docs:
                found.setdefault(doc["code"], set()).add((doc["office"], doc["dossier"]))
        return found

    def of_office(self, office: str) -> list[DossierProfile]:
        """Every profile of an office, by dossier id."""
        with mapped():
            found = [_profile(d) for d in self._docs.find({"office": office})]
        return sorted(found, key=lambda p: p.id)


def _doc(profile: DossierProfile) -> Doc:
    return {
        "office": profile.office,
        "dossier": profile.id,
        "name": profile.name,
        "code": profile.code,
    }


def _profile(doc: Mapping[str, Any]) -> DossierProfile:
    return DossierProfile(doc["office"], doc["dossier"], doc["name"], doc["code"])
