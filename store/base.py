"""What every store module shares: the document type and pymongo error mapping."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pymongo.errors

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
