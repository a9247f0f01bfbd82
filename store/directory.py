"""Offices and users: who the tenants are and who acts for them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.collection import Collection
from pymongo.database import Database

from store.base import Doc, Repository, mapped
from store.errors import NotFound
from store.records import OfficeRecord, Role, UserRecord

OFFICES, USERS = "offices", "users"


class Offices(Repository):
    """The `offices` collection: one document per office, its id as `_id`."""

    def __init__(self, db: Database[Doc]) -> None:
        super().__init__(db)
        self._docs: Collection[Doc] = db[OFFICES]

    def save(self, office: OfficeRecord) -> None:
        """Create or replace an office."""
        with mapped():
            self._docs.replace_one(
                {"_id": office.id},
                _office_doc(office),
                upsert=True,
            )

    def add(self, office: OfficeRecord) -> None:
        """Create an office; Conflict when its id is taken."""
        with mapped():
            self._docs.insert_one({"_id": office.id, **_office_doc(office)})

    def get(self, office_id: str) -> OfficeRecord | None:
        """One office by id."""
        with mapped():
            doc = self._docs.find_one({"_id": office_id})
        return _office(doc) if doc else None

    def all(self) -> list[OfficeRecord]:
        """Every office."""
        with mapped():
            return [_office(d) for d in self._docs.find({}).sort("_id", 1)]


class Users(Repository):
    """The `users` collection: one document per user, with the dossiers assigned to it."""

    def __init__(self, db: Database[Doc]) -> None:
        super().__init__(db)
        self._docs: Collection[Doc] = db[USERS]

    def ensure_indexes(self) -> None:
        """The index of the reads by office (idempotent)."""
        with mapped():
            self._docs.create_index([("office", 1)], name="office")

    def save(self, user: UserRecord) -> None:
        """Create or replace a user."""
        with mapped():
            self._docs.replace_one(
                {"_id": user.id},
                {
                    "office": user.office,
                    "role": user.role.value,
                    "email": user.email,
                    "language": user.language,
                    "dossiers": list(user.dossiers),
                    "disabled": user.disabled,
                },
                upsert=True,
            )

    def get(self, user_id: str) -> UserRecord | None:
        """One user by id."""
        with mapped():
            doc = self._docs.find_one({"_id": user_id})
        return _user(doc) if doc else None

    def find(self, *, office: str | None = None, role: Role | None = None) -> list[UserRecord]:
        """Users of an office (or all), optionally of one role."""
        query: Doc = {}
        if office is not None:
            query["office"] = office
        if role is not None:
            query["role"] = role.value
        with mapped():
            return [_user(d) for d in self._docs.find(query).sort("_id", 1)]

    def assign(self, user_id: str, dossier: str) -> bool:
        """Add a dossier to a user's; False when it was assigned already."""
        with mapped():
            done = self._docs.update_one({"_id": user_id}, {"$addToSet": {"dossiers": dossier}})
        if done.matched_count == 0:
            raise NotFound(f"no user {user_id}")
        return done.modified_count > 0

    def unassign(self, user_id: str, dossier: str) -> bool:
        """Take a dossier from a user; False when it was not assigned."""
        with mapped():
            done = self._docs.update_one({"_id": user_id}, {"$pull": {"dossiers": dossier}})
        if done.matched_count == 0:
            raise NotFound(f"no user {user_id}")
        return done.modified_count > 0


def _office_doc(office: OfficeRecord) -> Doc:
    return {
        "name": office.name,
        "timezone": office.timezone,
        "language": office.language,
        "contact": office.contact,
    }


def _office(doc: Mapping[str, Any]) -> OfficeRecord:
    return OfficeRecord(
        doc["_id"], doc["name"], doc["timezone"], doc["language"], doc.get("contact", "")
    )


def _user(doc: Mapping[str, Any]) -> UserRecord:
    return UserRecord(
        id=doc["_id"],
        office=doc.get("office"),
        role=Role(doc["role"]),
        email=doc.get("email", ""),
        language=doc.get("language", ""),
        dossiers=tuple(doc.get("dossiers") or ()),
        disabled=bool(doc.get("disabled", False)),
    )
