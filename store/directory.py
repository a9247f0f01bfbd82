"""Offices and users in MongoDB."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.collection import Collection

from store.base import Doc, mapped
from store.records import OfficeRecord, Role, UserRecord


class DirectoryMixin:
    """Office and user methods of the Store."""

    offices: Collection[Doc]
    users: Collection[Doc]

    def save_office(self, office: OfficeRecord) -> None:
        """Create or replace an office."""
        with mapped():
            self.offices.replace_one(
                {"_id": office.id},
                _office_doc(office),
                upsert=True,
            )

    def add_office(self, office: OfficeRecord) -> None:
        """Create an office; Conflict when its id is taken."""
        with mapped():
            self.offices.insert_one({"_id": office.id, **_office_doc(office)})

    def office(self, office_id: str) -> OfficeRecord | None:
        """One office by id."""
        with mapped():
            doc = self.offices.find_one({"_id": office_id})
        return _office(doc) if doc else None

    def find_offices(self) -> list[OfficeRecord]:
        """Every office."""
        with mapped():
            return [_office(d) for d in self.offices.find({}).sort("_id", 1)]

    def save_user(self, user: UserRecord) -> None:
        """Create or replace a user."""
        with mapped():
            self.users.replace_one(
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

    def user(self, user_id: str) -> UserRecord | None:
        """One user by id."""
        with mapped():
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
        with mapped():
            return [_user(d) for d in self.users.find(query).sort("_id", 1)]


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
