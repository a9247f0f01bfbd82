"""The Python client of the platform: submit a task, answered after the publisher confirm."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from broker import topology
from broker.messages import Envelope, MessageType, utcnow, valid_id
from broker.rabbitmq import Connection
from dispatcher.errors import InvalidSubmission
from dispatcher.settings import Settings
from store import Store, TaskRecord, TaskStatus
from workers import handlers as _handlers  # noqa: F401  (registers the task kinds)
from workers.errors import InvalidSubmission as InvalidTaskInput
from workers.kinds import validate_payload


class Client:
    """Stores tasks and publishes their `submitted` command. Not thread-safe."""

    def __init__(self, store: Store, conn: Connection, topo: topology.Topology) -> None:
        self._store = store
        self._conn = conn
        self._ch = conn.channel(confirm=True)
        self._ch.declare_control(topo)

    @classmethod
    def connect(cls, settings: Settings, store: Store | None = None) -> Client:
        """Open a client on the configured broker and database."""
        store = store or Store.connect(settings.mongo_url, settings.mongo_db)
        conn = Connection.open(
            settings.amqp_url, name="dossierflow-client", heartbeat=settings.heartbeat_s
        )
        return cls(store, conn, topology.Topology(settings.partitions, settings.delivery_limit))

    def submit(self, office: str, dossier: str, kind: str, payload: Mapping[str, Any]) -> str:
        """Validate, store and announce a task; return its id once the broker confirmed.

        If the publish fails after the task was stored, the error is raised and the
        dispatcher's sweeper publishes the command later: the task is not lost.
        """
        for name, value in (("office", office), ("dossier", dossier)):
            if not isinstance(value, str) or not valid_id(value):
                raise InvalidSubmission(f"{name} must match [A-Za-z0-9_-]{{1,64}}")
        try:
            model = validate_payload(kind, payload)
        except InvalidTaskInput as exc:
            raise InvalidSubmission(str(exc)) from exc
        now = utcnow()
        task = TaskRecord(
            id=uuid.uuid4().hex,
            office=office,
            dossier=dossier,
            kind=kind,
            payload=model.model_dump(mode="json"),
            status=TaskStatus.SUBMITTED,
            submitted_at=now,
        )
        self._store.insert_task(task)
        self._ch.publish(
            topology.CONTROL_EXCHANGE,
            Envelope(MessageType.SUBMITTED, task.id, office, dossier, at=now),
        )
        return task.id

    def close(self) -> None:
        """Close the broker connection (the store belongs to the caller)."""
        self._conn.close()
