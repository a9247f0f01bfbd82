"""The message envelope (v1): versioned JSON, no I/O.

Every message of dossierflow is one envelope. The bytes are canonical JSON (sorted keys,
no spaces, UTF-8) so that a golden test can pin them and so that any language can read
them. The task id travels as the AMQP message id of task messages and is the idempotency
key at the accounting package.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from broker.errors import DecodeError

VERSION = 1
# Raw bytes kept from an unreadable message: enough to diagnose, bounded so a huge
# poison message cannot bloat the instruction that records it.
RAW_KEEP_BYTES = 4096
# Office and dossier ids end up in routing keys, queue names and permission patterns:
# keep them to characters that are plain in all three. Every id (office, dossier, task,
# user) is checked by `valid_id`; the pattern is exported for schemas (pydantic).
ID_FORM = "[A-Za-z0-9_-]{1,64}"
ID_PATTERN = f"^{ID_FORM}$"
_ID = re.compile(ID_FORM)


class MessageType(StrEnum):
    """What an envelope asks or tells."""

    SUBMITTED = "task.submitted"  # command: a stored task waits for the sequencer
    RUN = "task.run"  # work: a connector must run this task now
    STARTED = "task.started"  # event: a connector began an attempt
    DONE = "task.done"  # event: the attempt succeeded
    FAILED = "task.failed"  # event: the attempt failed for good (or transiently)
    RETRY_DUE = "task.retry_due"  # timer: a delayed retry's wait is over
    RESTART = "task.restart"  # command: a person restarts a failed task
    CANCEL = "task.cancel"  # command: a person cancels a task
    RESOLVE = "task.resolve"  # command: a person fixed it by hand; skip the task
    # command (the sweeper): no work message of this release is left anywhere, release again
    RELEASE_LOST = "task.release_lost"


def valid_id(value: object) -> bool:
    """Tell whether a value is an id usable in routing keys, queue names and URLs."""
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def dossier_key(office: str, dossier: str) -> str:
    """The routing key of everything about one dossier: `office.dossier`."""
    return f"{office}.{dossier}"


def utcnow() -> datetime:
    """Now, timezone-aware UTC, truncated to milliseconds as stored everywhere."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def format_ts(value: datetime) -> str:
    """ISO-8601 UTC with milliseconds and a Z, the only timestamp form on the wire."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_ts(value: str) -> datetime:
    """Inverse of `format_ts`."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class Envelope:
    """One message: what it is, which task and dossier it concerns, and its data."""

    type: MessageType
    task_id: str
    office: str
    dossier: str
    at: datetime
    data: Mapping[str, Any] = field(default_factory=dict)
    message_id: str = ""

    @property
    def routing_key(self) -> str:
        """The dossier key: every message of a dossier goes to that dossier's partition."""
        return dossier_key(self.office, self.dossier)

    @property
    def id(self) -> str:
        """The AMQP message id: the task id for task messages, else the event id given."""
        return self.message_id or self.task_id


def encode(envelope: Envelope) -> bytes:
    """Canonical bytes of an envelope."""
    body = {
        "v": VERSION,
        "type": envelope.type.value,
        "task_id": envelope.task_id,
        "office": envelope.office,
        "dossier": envelope.dossier,
        "at": format_ts(envelope.at),
        "data": dict(envelope.data),
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _require_str(body: Mapping[str, Any], name: str, kept: bytes) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise DecodeError(f"field {name!r} missing or not a string", kept)
    return value


def decode(raw: bytes, message_id: str = "") -> Envelope:
    """Parse envelope bytes; anything else raises DecodeError with the raw bytes kept."""
    kept = raw[:RAW_KEEP_BYTES]
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"not UTF-8 JSON: {type(exc).__name__}", kept) from exc
    if not isinstance(body, dict):
        raise DecodeError("envelope is not a JSON object", kept)
    if body.get("v") != VERSION:
        raise DecodeError(f"unknown envelope version {body.get('v')!r}", kept)
    try:
        kind = MessageType(str(body.get("type")))
        at = parse_ts(_require_str(body, "at", kept))
    except ValueError as exc:
        raise DecodeError(f"bad type or timestamp: {exc}", kept) from exc
    data = body.get("data", {})
    if not isinstance(data, dict):
        raise DecodeError("field 'data' is not an object", kept)
    office, dossier = _require_str(body, "office", kept), _require_str(body, "dossier", kept)
    if not (valid_id(office) and valid_id(dossier)):
        raise DecodeError("office or dossier id has characters outside [A-Za-z0-9_-]", kept)
    return Envelope(
        type=kind,
        task_id=_require_str(body, "task_id", kept),
        office=office,
        dossier=dossier,
        at=at,
        data=data,
        message_id=message_id,
    )
