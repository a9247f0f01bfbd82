"""Keys that callers present: users' bearer tokens and the submit API's idempotency keys.

A bearer token is shown once when issued and stored only as its SHA-256 digest, so a copy
of the database gives nobody a working token. The token carries 32 random bytes, so an
unsalted hash is enough: there is nothing to guess. Lookups go by `_id` (the digest) and
the digest found is compared again in constant time. A token works until `expires_at`.

An idempotency key is reserved per office (`_id` = `office:key`) before the task is
submitted, so two concurrent retries of one request cannot both create a task.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.collection import Collection
from pymongo.database import Database

from store.base import Doc, Repository, mapped
from store.errors import Conflict

TOKENS = "api_tokens"
IDEMPOTENCY = "idempotency_keys"
TOKEN_PREFIX = "dft_"
DEFAULT_LIFETIME = timedelta(days=90)
"""A token's lifetime when none is given, and that of tokens stored without an expiry."""


def digest(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class Tokens(Repository):
    """The `api_tokens` collection: digest → user."""

    def __init__(self, db: Database[Doc]) -> None:
        super().__init__(db)
        self._docs: Collection[Doc] = db[TOKENS]

    def issue(self, user_id: str, lifetime: timedelta = DEFAULT_LIFETIME) -> str:
        """A new token for the user (shown once); the user's earlier tokens stop working."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        with mapped():
            self._docs.delete_many({"user": user_id})
            self._docs.insert_one(
                {
                    "_id": digest(token),
                    "user": user_id,
                    "created_at": now,
                    "expires_at": now + lifetime,
                }
            )
        return token

    def expires_at(self, token: str) -> datetime | None:
        """When a stored token stops working (None: unknown token)."""
        doc = self._find(token)
        return _expiry(doc) if doc is not None else None

    def user_of(self, token: str) -> str | None:
        """The id of the user the token belongs to, or None (unknown or expired)."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        return self.user_of_digest(digest(token))

    def user_of_digest(self, wanted: str) -> str | None:
        """The user of the token with this digest, unless it is gone or expired."""
        doc = self._by_digest(wanted)
        if doc is None or _expiry(doc) <= datetime.now(UTC):
            return None
        return str(doc["user"])

    def _find(self, token: str) -> dict[str, Any] | None:
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        return self._by_digest(digest(token))

    def _by_digest(self, wanted: str) -> dict[str, Any] | None:
        with mapped():
            doc = self._docs.find_one({"_id": wanted})
        if doc is None or not hmac.compare_digest(str(doc["_id"]), wanted):
            return None
        return doc

    def revoke(self, user_id: str) -> int:
        """Invalidate every token of the user; return how many there were."""
        with mapped():
            return int(self._docs.delete_many({"user": user_id}).deleted_count)


def _expiry(doc: dict[str, Any]) -> datetime:
    """A token's end; one stored before tokens had an expiry ends its default lifetime on."""
    at = doc.get("expires_at") or (doc["created_at"] + DEFAULT_LIFETIME)
    assert isinstance(at, datetime)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Reservation:
    """An idempotency key already used: the request it was used for and its task, if any."""

    fingerprint: str
    task_id: str | None


class IdempotencyKeys(Repository):
    """The `idempotency_keys` collection: `office:key` → task."""

    def __init__(self, db: Database[Doc]) -> None:
        super().__init__(db)
        self._docs: Collection[Doc] = db[IDEMPOTENCY]

    @staticmethod
    def _id(office: str, key: str) -> str:
        return f"{office}:{key}"

    def reserve(self, office: str, key: str, fingerprint: str) -> Reservation | None:
        """Claim the key for a new request; the earlier claim when it was taken already."""
        doc = {
            "_id": self._id(office, key),
            "fingerprint": fingerprint,
            "task": None,
            "at": datetime.now(UTC),
        }
        try:
            with mapped():
                self._docs.insert_one(doc)
        except Conflict:
            return self.get(office, key) or Reservation(fingerprint, None)
        return None

    def get(self, office: str, key: str) -> Reservation | None:
        """The claim of a key, if any."""
        with mapped():
            found = self._docs.find_one({"_id": self._id(office, key)})
        if found is None:
            return None
        return Reservation(str(found.get("fingerprint", "")), found.get("task"))

    def complete(self, office: str, key: str, task_id: str) -> None:
        """Record the task a claimed key created."""
        with mapped():
            self._docs.update_one({"_id": self._id(office, key)}, {"$set": {"task": task_id}})

    def release(self, office: str, key: str) -> None:
        """Drop a claim whose submission failed, so a retry can try again."""
        with mapped():
            self._docs.delete_one({"_id": self._id(office, key), "task": None})
