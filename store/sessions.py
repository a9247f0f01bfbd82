"""The page's logins: a random session id in the cookie, stored only as its digest.

The id is 32 random bytes (`secrets.token_urlsafe`), so an unsalted SHA-256 is enough and
a copy of the database gives nobody a working cookie. The digest is the `_id`: every read
and write goes by `_id` (no other field is ever queried). A session names the token it
was opened with, so revoking the token (or disabling the user) ends it at the next
request. It ends after `idle` without a request and `longest` after login, whichever
comes first; logout deletes it. Sessions nobody uses again are deleted once past their
absolute end, by a login at most once an hour per process (the one query not by `_id`,
over a collection of one document per login of the last 12 hours).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pymongo.collection import Collection
from pymongo.database import Database

from store.base import Doc, Repository, mapped

SESSIONS = "sessions"
_TOUCH_EVERY = timedelta(seconds=60)  # writes the last use at most once a minute
_PRUNE_EVERY = timedelta(hours=1)  # sessions never used again: deleted once past their end


def session_digest(session_id: str) -> str:
    """The stored form (`_id`) of a session id."""
    return hashlib.sha256(session_id.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True)
class Session:
    """A live session: its digest, its user and the digest of the token it came with."""

    digest: str
    user: str
    token_digest: str


class Sessions(Repository):
    """The `sessions` collection: session digest → user, token and times."""

    def __init__(self, db: Database[Doc], idle: timedelta, longest: timedelta) -> None:
        super().__init__(db)
        self._docs: Collection[Doc] = db[SESSIONS]
        self.idle = idle
        self.longest = longest
        self._pruned_at: datetime | None = None

    def open(self, user_id: str, token_digest: str) -> str:
        """A new session id for the cookie (shown once, stored only as its digest)."""
        session_id = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        doc = {
            "_id": session_digest(session_id),
            "user": user_id,
            "token": token_digest,
            "created_at": now,
            "seen_at": now,
            "expires_at": now + self.longest,
        }
        with mapped():
            self._docs.insert_one(doc)
        if self._pruned_at is None or now - self._pruned_at >= _PRUNE_EVERY:
            self._pruned_at = now
            self.prune(now)
        return session_id

    def prune(self, now: datetime) -> int:
        """Delete the sessions past their absolute end; return how many."""
        with mapped():
            return int(self._docs.delete_many({"expires_at": {"$lt": now}}).deleted_count)

    def get(self, session_id: str | None) -> Session | None:
        """The live session of a cookie value; an expired one is deleted and gives None."""
        if not session_id or len(session_id) > 100:
            return None
        wanted = session_digest(session_id)
        with mapped():
            doc = self._docs.find_one({"_id": wanted})
        if doc is None or not hmac.compare_digest(str(doc["_id"]), wanted):
            return None
        now = datetime.now(UTC)
        seen, ends = _aware(doc["seen_at"]), _aware(doc["expires_at"])
        if now >= ends or now >= seen + self.idle:
            self.close_digest(wanted)
            return None
        if now - seen >= _TOUCH_EVERY or self.idle <= _TOUCH_EVERY:
            with mapped():
                self._docs.update_one({"_id": wanted}, {"$set": {"seen_at": now}})
        return Session(wanted, str(doc["user"]), str(doc["token"]))

    def close(self, session_id: str | None) -> None:
        """Log out: the session stops working at once."""
        if session_id and len(session_id) <= 100:
            self.close_digest(session_digest(session_id))

    def close_digest(self, wanted: str) -> None:
        """Delete one session by its digest."""
        with mapped():
            self._docs.delete_one({"_id": wanted})


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)
