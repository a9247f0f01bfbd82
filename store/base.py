"""What every repository shares: the base class, the document type and pymongo error mapping."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pymongo.errors
from pymongo.database import Database

from store.errors import Conflict, StoreError, StoreUnavailable

Doc = dict[str, Any]


@contextmanager
def mapped() -> Iterator[None]:
    """Translate pymongo exceptions into store errors (Conflict, StoreUnavailable, ...)."""
    try:
        yield
    except pymongo.errors.DuplicateKeyError as exc:
        raise Conflict(
            str(exc.details.get("errmsg", "duplicate key")) if exc.details else "dup"
        ) from exc
    except (pymongo.errors.ConnectionFailure, pymongo.errors.ServerSelectionTimeoutError) as exc:
        raise StoreUnavailable(f"database unreachable: {type(exc).__name__}") from exc
    except pymongo.errors.PyMongoError as exc:
        raise StoreError(f"{type(exc).__name__}: {exc}") from exc


class Repository:
    """The base of every repository: the records of its collections, read and written.

    A repository owns its collections (by name) and the mapping of their documents to
    records; callers get records, never documents. The `Store` builds each one over its
    database and hands it out.
    """

    def __init__(self, db: Database[Doc]) -> None:
        self._db = db

    def ensure_indexes(self) -> None:
        """Create the indexes of this repository's reads (idempotent); none by default."""
