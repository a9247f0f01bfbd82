"""One SQLite file shared by threads and processes: the storage under the simulated package.

Handlers run in threads and several connector processes open the same file, so
each thread of each process gets its own connection (SQLite connections must
not cross a fork); the file is in WAL mode so readers never wait for the writer,
and every writer takes the lock at BEGIN so racing writers queue instead of
failing at COMMIT.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from workers.errors import PackageServerError, PackageTimeout

BUSY_TIMEOUT_S = 10.0
"""How long a writer waits for the lock before the call fails with PackageTimeout."""


@contextmanager
def translated() -> Iterator[None]:
    """Turn sqlite3 errors into the port's transient errors (the package's backend failed)."""
    try:
        yield
    except sqlite3.Error as exc:
        # The primary code sits in the low byte of the extended one (SQLITE_BUSY_SNAPSHOT...).
        if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            raise PackageTimeout("simulated package storage stayed locked") from exc
        raise PackageServerError("simulated package storage failed") from exc


class SqliteFile:
    """Per-thread, per-process connections to one SQLite file, with short transactions."""

    def __init__(self, path: str | Path, schema: str = "") -> None:
        """Remember the file and create the schema (a script of idempotent statements)."""
        self._path = str(path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._generation = 0
        self._opened: list[tuple[int, sqlite3.Connection]] = []
        if schema:
            self.connection().executescript(schema)

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use (again after a fork or `close`)."""
        key = (os.getpid(), self._generation)
        if getattr(self._local, "key", None) != key:
            # Autocommit mode: transactions are opened explicitly by `transaction`.
            conn = sqlite3.connect(
                self._path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL is crash-safe under WAL; only the last commits can be lost on power loss.
            conn.execute("PRAGMA synchronous = NORMAL")
            with self._lock:
                self._opened.append((key[0], conn))
            self._local.key, self._local.conn = key, conn
        conn_: sqlite3.Connection = self._local.conn
        return conn_

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """Run a block in one transaction on this thread's connection."""
        conn = self.connection()
        # IMMEDIATE: two writers racing on one key serialise at BEGIN instead of failing later.
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:  # some errors have already rolled back
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        """Close every connection this process opened; later use opens new ones."""
        pid = os.getpid()
        with self._lock:
            # A forked child must not close its parent's connections: SQLite forbids it.
            mine = [conn for owner, conn in self._opened if owner == pid]
            self._opened = [(owner, conn) for owner, conn in self._opened if owner != pid]
            self._generation += 1
        for conn in mine:
            conn.close()
