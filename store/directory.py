"""Offices and users in MongoDB."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.collection import Collection

from store.base import Doc
from store.base import mapped as _mapped
from store.records import OfficeRecord, Role, UserRecord


class DirectoryMixin:
    """Office and user methods of the Store."""

    offices: Collection[Doc]
    users: Collection[Doc]

    def save_office(self, office: OfficeRecord) -> None:
        """Create or replace an office."""
        with _mapped():
            self.offices.replace_one(
                {"_id": office.id},
                {"name": office.name, "timezone": office.timezone, "language": office.language},
                upsert=True,
            )

    def office(self, office_id: str) -> OfficeRecord | None:
        """One office by id."""
        with _mapped():
            doc = self.offices.find_one({"_id": office_id})
        if not doc:
            return None
        return OfficeRecord(doc["_id"], doc["name"], doc["timezone"], doc["language"])

    def find_offices(self) -> list[OfficeRecord]:
        """Every office."""
        with _mapped():
            return [
                OfficeRecord(d["_id"], d["name"], d["timezone"], d["language"])
                for d in self.offices.find({}).sort("_id", 1)
            ]

    def save_user(self, user: UserRecord) -> None:
        """Create or replace a user."""
        with _mapped():
            self.users.replace_one(
                {"_id": user.id},
                {
                    "office": user.office,
                    "role": user.role.value,
                    "email": user.email,
                    "language": user.language,
                    "dossiers": list(user.dossiers),
                },
                upsert=True,
            )

    def user(self, user_id: str) -> UserRecord | None:
        """One user by id."""
        with _mapped():
            doc = self.users.find_one({"_id": user_id})
        return _user(doc) if doc else None

    def find_users(
        self, *, office: str | None = None, role: Role | None = None
    ) -> list[UserRecord]:
        """Users of an office (or all), optionally of one role."""
        query: Doc = {}
        if office is not None:
            query["office"] = office
        if role is not None:
            query["role"] = role.value
        with _mapped():
            return [_user(d) for d in self.users.find(query).sort("_id", 1)]


def _user(doc: Mapping[str, Any]) -> UserRecord:
    return UserRecord(
        id=doc["_id"],
        office=doc.get("office"),
        role=Role(doc["role"]),
        email=doc.get("email", ""),
        language=doc.get("language", ""),
        dossiers=tuple(doc.get("dossiers") or ()),
    )
