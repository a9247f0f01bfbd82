"""The connection: the client, the database, its indexes, and the repositories over it.

Every collection is read and written through a repository (store/base.py `Repository`),
one per collection or, for the partition owners, retention, monitoring and the sweeper,
one per concern that spans collections. Only the `store` package imports pymongo;
callers get records, not documents (the partition owners' takeover reads, handed to
dispatcher/loading.py as documents, excepted), and only tests and tools seeding or
inspecting the database reach a raw collection, through `Store.collection`.

The sequencer's hot path reads and writes single documents by `_id`; the few queries on
other fields (sweeper, monitoring) have indexes on MongoDB and stay within what the
FerretDB test server evaluates.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from pymongo import MongoClient
from pymongo.collection import Collection
from pymongo.database import Database

from store.actions import Actions
from store.base import Doc, mapped
from store.directory import Offices, Users
from store.dossiers import Dossiers
from store.instructions import Instructions
from store.load import OfficeLoad
from store.monitoring import Monitoring
from store.outbox import Outbox
from store.outstanding import Outstanding
from store.profiles import Profiles
from store.retention import Retention
from store.sequencing import Sequencing
from store.sessions import Sessions
from store.tasks import Tasks
from store.tokens import IdempotencyKeys, Tokens

__all__ = ["Doc", "Store"]


class Store:
    """One database of dossierflow: its connection and the repositories over it."""

    def __init__(self, client: MongoClient[Doc], database: str) -> None:
        self._client = client
        self._db: Database[Doc] = client[database]
        self.tasks = Tasks(self._db)
        self.dossiers = Dossiers(self._db)
        self.instructions = Instructions(self._db)
        self.actions = Actions(self._db)
        self.offices = Offices(self._db)
        self.users = Users(self._db)
        self.profiles = Profiles(self._db)
        self.tokens = Tokens(self._db)
        self.idempotency = IdempotencyKeys(self._db)
        self.outbox = Outbox(self._db)
        self.monitoring = Monitoring(self._db)
        self.outstanding = Outstanding(self._db)
        self.sequencing = Sequencing(self._db)
        self.load = OfficeLoad(self._db)

    @classmethod
    def connect(
        cls,
        url: str,
        database: str,
        timeout_ms: int = 10_000,
        listeners: Sequence[object] = (),
    ) -> Store:
        """Open a client (lazy: the first operation connects) with UTC-aware datetimes."""
        client: MongoClient[Doc] = MongoClient(
            url,
            tz_aware=True,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            retryWrites=True,
            appname="dossierflow",
            event_listeners=list(listeners),  # pymongo monitoring, e.g. store.counting
        )
        return cls(client, database)

    def sessions(self, idle: timedelta, longest: timedelta) -> Sessions:
        """The page's logins, ending after `idle` without a request or `longest` after login."""
        return Sessions(self._db, idle, longest)

    def retention(self, batch: int = 500, scan: int = 10_000) -> Retention:
        """A pruner deleting `batch` ids per command, reading at most `scan` per pass."""
        return Retention(self._db, batch=batch, scan=scan)

    def collection(self, name: str) -> Collection[Doc]:
        """A raw collection, for tests and tools that seed or inspect documents."""
        return self._db[name]

    def ping(self) -> None:
        """Fail with StoreUnavailable unless the server answers."""
        with mapped():
            self._client.admin.command("ping")

    def ensure_indexes(self) -> None:
        """Create the indexes (idempotent); called by every process at start-up.

        The outbox's and retention's are created by the processes that read them.
        """
        for repository in (
            self.tasks,
            self.dossiers,
            self.users,
            self.profiles,
            self.instructions,
            self.outstanding,
        ):
            repository.ensure_indexes()
        # Once per database: outstanding work stored before `submissions` and `retry_timers`.
        self.outstanding.adopt()

    def drop(self) -> None:
        """Drop the whole database (tests and the demo)."""
        with mapped():
            self._client.drop_database(self._db.name)

    def close(self) -> None:
        """Close the client."""
        self._client.close()
