"""The reminder package's mail outbox: one document per mail, made unique by its `_id`.

Keys are chosen by the reminder package (`instruction:<id>:<user>`,
`digest:<user>:<day>`, ...); inserting a key that exists is a no-op that reports False,
so deciding to send a mail and recording that decision is a single insert. Each document
holds the fully rendered message (with its fixed Message-ID), so a retry sends exactly
the bytes of the first attempt. Only the mailer updates entries, one at a time, by `_id`.
The `status: pending` in the updates' filters is no guard between processes on FerretDB v1,
which reads a document and writes the whole of it back: two mailers' updates of one entry
both match, and the later write undoes the earlier one (see `reminder.mailer`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from pymongo.collection import Collection
from pymongo.database import Database

from store.base import Doc, Repository, mapped
from store.errors import Conflict

OUTBOX = "mail_outbox"
_ERROR_LIMIT = 500  # last_error is for operators, not a log: keep it short


class OutboxStatus(StrEnum):
    """Where a mail is."""

    PENDING = "pending"  # to send (again); every run of the mailer tries it
    SENT = "sent"  # the SMTP server accepted it
    FAILED = "failed"  # the SMTP server refused it for good (5xx); not retried
    MARKER = "marker"  # no mail: records that a decision was made (e.g. an instruction's fan-out)


@dataclass(frozen=True)
class OutboxEntry:
    """One mail of the outbox (or a marker, which has no message)."""

    id: str
    kind: str
    office: str
    created_at: datetime
    sender: str = ""
    recipients: tuple[str, ...] = ()
    message: bytes = b""
    message_id: str = ""
    ref: str = ""  # what the mail is about: an instruction id or a reminder day
    status: OutboxStatus = OutboxStatus.PENDING
    attempts: int = 0
    last_error: str = ""
    sent_at: datetime | None = None


def _entry(doc: Mapping[str, Any]) -> OutboxEntry:
    return OutboxEntry(
        id=doc["_id"],
        kind=doc.get("kind", ""),
        office=doc.get("office", ""),
        created_at=doc["created_at"],
        sender=doc.get("sender", ""),
        recipients=tuple(doc.get("recipients") or ()),
        message=bytes(doc.get("message") or b""),
        message_id=doc.get("message_id", ""),
        ref=doc.get("ref", ""),
        status=OutboxStatus(doc["status"]),
        attempts=int(doc.get("attempts", 0)),
        last_error=doc.get("last_error", ""),
        sent_at=doc.get("sent_at"),
    )


class Outbox(Repository):
    """The `mail_outbox` collection."""

    def __init__(self, db: Database[Doc]) -> None:
        super().__init__(db)
        self._docs: Collection[Doc] = db[OUTBOX]

    def ensure_indexes(self) -> None:
        """Create the index the mailer's pending scan uses (idempotent)."""
        with mapped():
            self._docs.create_index([("status", 1), ("created_at", 1)], name="status_created")

    def add(self, entry: OutboxEntry) -> bool:
        """Insert an entry; False when its key exists (the mail was decided before)."""
        doc: dict[str, Any] = {
            "_id": entry.id,
            "kind": entry.kind,
            "office": entry.office,
            "created_at": entry.created_at,
            "sender": entry.sender,
            "recipients": list(entry.recipients),
            "message": entry.message,
            "message_id": entry.message_id,
            "ref": entry.ref,
            "status": entry.status.value,
            "attempts": entry.attempts,
            "last_error": entry.last_error,
            "sent_at": entry.sent_at,
        }
        try:
            with mapped():
                self._docs.insert_one(doc)
        except Conflict:
            return False
        return True

    def entry(self, entry_id: str) -> OutboxEntry | None:
        """One entry by key."""
        with mapped():
            doc = self._docs.find_one({"_id": entry_id})
        return _entry(doc) if doc else None

    def existing(self, entry_ids: Iterable[str]) -> set[str]:
        """The keys among `entry_ids` that are in the outbox."""
        ids = list(entry_ids)
        if not ids:
            return set()
        with mapped():
            return {str(d["_id"]) for d in self._docs.find({"_id": {"$in": ids}}, {"_id": 1})}

    def pending(self, limit: int = 100) -> list[OutboxEntry]:
        """Mails still to send, oldest first."""
        with mapped():
            cursor = self._docs.find({"status": OutboxStatus.PENDING.value}, limit=limit)
            return [_entry(d) for d in cursor.sort([("created_at", 1), ("_id", 1)])]

    def entries(self, kind: str | None = None) -> list[OutboxEntry]:
        """Every entry (of one kind), oldest first: for tests and operators."""
        query = {} if kind is None else {"kind": kind}
        with mapped():
            cursor = self._docs.find(query).sort([("created_at", 1), ("_id", 1)])
            return [_entry(d) for d in cursor]

    def mark_sent(self, entry_id: str, at: datetime) -> None:
        """Record that the SMTP server accepted the mail."""
        with mapped():
            self._docs.update_one(
                {"_id": entry_id, "status": OutboxStatus.PENDING.value},
                {
                    "$set": {"status": OutboxStatus.SENT.value, "sent_at": at, "last_error": ""},
                    "$inc": {"attempts": 1},
                },
            )

    def record_failure(self, entry_id: str, error: str, *, permanent: bool) -> None:
        """Count a failed attempt; a permanent one takes the mail out of the pending set."""
        fields: dict[str, Any] = {"last_error": error[:_ERROR_LIMIT]}
        if permanent:
            fields["status"] = OutboxStatus.FAILED.value
        with mapped():
            self._docs.update_one(
                {"_id": entry_id, "status": OutboxStatus.PENDING.value},
                {"$set": fields, "$inc": {"attempts": 1}},
            )
